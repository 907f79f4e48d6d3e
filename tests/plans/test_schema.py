import json
from dataclasses import replace

import pytest

from orthodiff_auto.errors import UserInputError
from orthodiff_auto.plans.budget import parse_budget
from orthodiff_auto.plans.planner import plan_view
from orthodiff_auto.plans.schema import SCHEMA_VERSION, Budget, Plans
from tests.plans.fake_fingerprint import fake_fingerprint
from tests.plans.plans_files import assert_load_rejects


@pytest.fixture(scope="module")
def plans() -> Plans:
    fp = fake_fingerprint({"sag": [((3.0, 0.4, 0.4), (24, 96, 80))] * 4, "ax": [((1.0, 1.0, 1.0), (40, 40, 40))] * 3})
    budget = Budget("gpu", 2.0, "user")
    views = {v: plan_view(vf, fp, budget) for v, vf in fp.views.items()}
    return Plans(fp.dataset_name, fp.modality, budget, dict(fp.labels), 9, ("tear", "effusion"), views)


def test_round_trip_dict_and_file(plans, tmp_path):
    assert Plans.from_dict(plans.to_dict()) == plans
    # JSON turns tuples into lists: the loaded object must still compare equal, field by field.
    path = tmp_path / "plans.json"
    plans.save(path)
    loaded = Plans.load(path)
    assert loaded == plans
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION
    assert loaded.views["sag"].segmentation.architecture.strides == plans.views["sag"].segmentation.architecture.strides
    assert not list(tmp_path.glob(".*"))  # atomic write left no temporary behind


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(schema_version=SCHEMA_VERSION + 1), "schema_version"),
    (lambda d: d.pop("schema_version"), "schema_version"),
    (lambda d: d["views"]["sag"]["segmentation"].update(patch_size=[23, 96, 80]), "patch_size"),
    (lambda d: d["views"]["sag"]["segmentation"]["architecture"].update(n_stages=2), "n_stages"),
    (lambda d: d["views"]["sag"]["resampling"].update(image_order=2), "image_order"),
    (lambda d: d["views"]["sag"].pop("target_spacing"), "target_spacing"),
    (lambda d: d["views"]["sag"]["normalization"].update(scheme="minmax"), "scheme"),
    (lambda d: d.update(surprise=1), "surprise"),
])
def test_invalid_plans_raise_user_error_naming_file(plans, tmp_path, mutate, message):
    d = plans.to_dict()
    mutate(d)
    assert_load_rejects(d, tmp_path, message)


def test_malformed_or_missing_file(tmp_path):
    bad = tmp_path / "plans.json"
    bad.write_text("{not json")
    with pytest.raises(UserInputError, match="not valid JSON") as e:
        Plans.load(bad)
    assert str(bad) in str(e.value)
    with pytest.raises(UserInputError, match="not found"):
        Plans.load(tmp_path / "missing.json")


def test_edited_plan_loads_with_new_values(plans, tmp_path):
    d = plans.to_dict()
    d["views"]["sag"]["segmentation"]["batch_size"] = 7
    d["views"]["sag"]["target_spacing"] = [2.5, 0.5, 0.5]
    path = tmp_path / "plans.json"
    path.write_text(json.dumps(d))
    loaded = Plans.load(path)
    assert loaded.views["sag"].segmentation.batch_size == 7
    assert loaded.views["sag"].target_spacing == (2.5, 0.5, 0.5)
    assert loaded.views["sag"].preprocessing_key != plans.views["sag"].preprocessing_key
    assert replace(loaded.views["ax"]) == plans.views["ax"]


def test_parse_budget(monkeypatch):
    assert parse_budget("gpu:12") == Budget("gpu", 12.0, "user")
    assert parse_budget("GPU:10.5GB").memory_gb == 10.5
    assert parse_budget("cpu").kind == "cpu"
    monkeypatch.setattr("orthodiff_auto.plans.budget.detected_gpu_memory_gb", lambda: None)
    assert parse_budget(None) == Budget("gpu", 8.0, "default")
    monkeypatch.setattr("orthodiff_auto.plans.budget.detected_gpu_memory_gb", lambda: 79.6)
    assert parse_budget("gpu") == Budget("gpu", 79.6, "detected")
    for bad in ("gpu:0", "tpu:8", "gpu:-1", "8"):
        with pytest.raises(UserInputError):
            parse_budget(bad)
