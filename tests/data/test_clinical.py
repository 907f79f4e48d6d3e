"""Clinical columns: dataset.json declares them, findings.csv holds them, validation checks them."""

import json
import math

import numpy as np
import pytest

from orthodiff_auto.data.clinical import clinical_from_dicts, clinical_values
from orthodiff_auto.data.dataset import load_raw_dataset, read_description, scan_raw_dataset
from orthodiff_auto.errors import DatasetError

DECLARED = [{"name": "age", "type": "numeric"}, {"name": "sex", "type": "categorical", "categories": ["F", "M"]}]


def _declare(root, clinical=DECLARED):
    path = root / "dataset.json"
    desc = json.loads(path.read_text())
    desc["clinical"] = clinical
    path.write_text(json.dumps(desc))


def _add_columns(path, cells: dict[str, list[str]]):
    lines = path.read_text().splitlines()
    header = lines[0] + "".join("," + name for name in cells)
    rows = [ln + "".join("," + cells[name][i] for name in cells) for i, ln in enumerate(lines[1:])]
    path.write_text("\n".join([header, *rows]) + "\n")


def test_declared_columns_are_read_in_declaration_order_with_missing_cells(make_native_dataset):
    root = make_native_dataset(test_cases=("t001",))
    _declare(root)
    _add_columns(root / "findings.csv", {"sex": ["F", "", "M", "F"], "age": ["54", "31.5", "", "70"]})
    ds = load_raw_dataset(root)
    assert [v.name for v in ds.description.clinical] == ["age", "sex"]
    assert list(ds.findings.columns[-2:]) == ["age", "sex"]
    values = clinical_values(ds.findings, ["c002", "c003", "nobody"], ds.description.clinical)
    assert values.numeric_names == ("age",)
    assert values.numeric[0, 0] == 31.5 and math.isnan(values.numeric[1, 0]) and math.isnan(values.numeric[2, 0])
    assert values.categorical["sex"] == ["", "M", ""]
    # the test table may leave the clinical columns out: they read as missing cells
    assert list(ds.test_findings.loc["t001", ["age", "sex"]]) == ["", ""]
    # the declaration survives the description's round trip (a preprocessed folder's dataset.json)
    assert clinical_from_dicts(ds.description.to_dict()["clinical"]) == ds.description.clinical


def test_a_dataset_without_clinical_columns_keeps_its_description(make_native_dataset):
    root = make_native_dataset()
    assert "clinical" not in load_raw_dataset(root).description.to_dict()


@pytest.mark.parametrize("cells, message", [
    ({"age": ["54", "old", "", "1e400"], "sex": ["F", "M", "F", "M"]}, r"age must hold finite numbers.*c002='old'"),
    ({"age": ["54", "3", "", "7"], "sex": ["F", "X", "F", "m"]}, r"sex must hold one of \['F', 'M'\].*2 cells"),
    ({"age": ["54", "3", "", "7"]}, r"missing clinical columns \['sex'\]"),
])
def test_bad_clinical_cells_are_reported_naming_the_file(make_native_dataset, cells, message):
    root = make_native_dataset()
    _declare(root)
    _add_columns(root / "findings.csv", cells)
    with pytest.raises(DatasetError, match=message) as e:
        load_raw_dataset(root)
    assert "findings.csv" in str(e.value)


def test_undeclared_column_is_still_unknown(make_native_dataset):
    root = make_native_dataset()
    _add_columns(root / "findings.csv", {"age": ["1", "2", "3", "4"]})
    assert any("unknown columns ['age']" in p.message for p in scan_raw_dataset(root).problems)


@pytest.mark.parametrize("clinical, message", [
    ({"name": "age"}, "must be a list"),
    ([{"name": "age", "type": "integer"}], "type must be one of"),
    ([{"name": "tear", "type": "numeric"}], "already a finding"),
    ([{"name": "site", "type": "categorical"}], "already a finding, metadata"),
    ([{"name": "2x", "type": "numeric"}], "name must be a column name"),
    ([{"name": "age", "type": "numeric", "categories": ["a"]}], "categorical variables only"),
    ([{"name": "sex", "type": "categorical", "categories": ["F", "F"]}], "distinct"),
    ([{"name": "age", "type": "numeric", "unit": "y"}], "must be an object with name, type"),
])
def test_bad_declarations(make_native_dataset, clinical, message):
    root = make_native_dataset()
    _declare(root, clinical)
    with pytest.raises(DatasetError, match=message) as e:
        read_description(root)
    assert "dataset.json" in str(e.value)


def test_clinical_values_accept_a_table_read_with_nan_cells():
    import pandas as pd
    table = pd.DataFrame({"age": [np.nan, 40.0], "sex": [np.nan, "M"]}, index=pd.Index(["a", "b"], name="case_id"))
    values = clinical_values(table, ["a", "b"], clinical_from_dicts(DECLARED))
    assert math.isnan(values.numeric[0, 0]) and values.numeric[1, 0] == 40.0
    assert values.categorical["sex"] == ["", "M"]


def test_a_clinical_table_for_prediction_reads_declared_columns_and_refuses_bad_cells(tmp_path):
    from orthodiff_auto.data.clinical import read_clinical_table
    from orthodiff_auto.errors import UserInputError

    variables = clinical_from_dicts(DECLARED)
    path = tmp_path / "findingsTs.csv"
    path.write_text("case_id,tear,age\nt1,1,61\nt2,0,\n")  # a finding column is ignored, sex is absent
    assert read_clinical_table(path, variables) == {"t1": {"age": "61"}, "t2": {"age": ""}}
    path.write_text("case_id,age,sex\nt1,61,X\n")
    with pytest.raises(UserInputError, match=r"findingsTs.csv: clinical column sex must hold one of"):
        read_clinical_table(path, variables)
    path.write_text("id,age\nt1,61\n")
    with pytest.raises(UserInputError, match="missing the case_id column"):
        read_clinical_table(path, variables)


def test_validate_dataset_summarises_the_clinical_columns(make_native_dataset):
    from orthodiff_auto.data.validation import validate_dataset

    root = make_native_dataset()
    _declare(root)
    _add_columns(root / "findings.csv", {"age": ["54", "30", "", "70"], "sex": ["F", "F", "M", ""]})
    report = validate_dataset(root, num_workers=1)
    assert report.ok
    assert "clinical (train): age 30-70 (mean 51.3), 25% missing; sex F 67% M 33%, 25% missing" in report.summary_text()
