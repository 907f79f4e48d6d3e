import json

import numpy as np
import pytest

from orthodiff_auto.cli import main
from orthodiff_auto.data.image_io import read_image, write_image
from orthodiff_auto.plans.schema import Plans
from orthodiff_auto.preprocessing import PreprocessedDataset
from tests.preprocessing.synth import simple_scans, write_dataset


@pytest.fixture
def raw(tmp_path):
    scans = simple_scans(3, views=("sag", "cor"), shape=(8, 28, 24), spacing=(3.0, 0.5, 0.5), jitter=0.05)
    scans.append({"case": "u1", "view": "sag", "shape": (8, 28, 24), "spacing": (3.0, 0.5, 0.5),
                  "subset": "unlabeled"})
    return write_dataset(tmp_path / "raw", scans)


def test_plan_and_preprocess_end_to_end(raw, tmp_path, capsys):
    out = tmp_path / "pp"
    assert main(["plan_and_preprocess", str(raw), "--out", str(out), "--budget", "cpu", "-np", "1",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "sagittal" in printed and "coronal" in printed and "preprocessed 7 scans" in printed
    for name in ("dataset.json", "fingerprint.json", "plans.json"):
        assert (out / name).is_file()
    description = json.loads((out / "dataset.json").read_text())
    assert description["labels"] == {"background": 0, "ball": 1, "slab": 2}
    assert description["raw_dataset"] == str(raw.resolve())
    from orthodiff_auto.data.findings import read_findings_table

    table, problems = read_findings_table(out / "findings.csv", ["tear"], ["c000", "c001", "c002"])
    assert not problems and table["tear"].tolist() == [0, 1, 0]
    assert table["site"].tolist() == ["site0", "site1", "site0"]
    plans = Plans.load(out / "plans.json")
    assert plans.budget.kind == "cpu" and set(plans.views) == {"sag", "cor"}
    assert PreprocessedDataset(out, "sag").case_ids() == ["c000", "c001", "c002", "u1"]

    # show_plans: one row per view with spacing, patch, batch, stages, pooling, features, memory.
    assert main(["show_plans", str(out)]) == 0
    table = capsys.readouterr().out
    seg = plans.views["sag"].segmentation
    row = next(ln for ln in table.splitlines() if ln.startswith("sagittal"))
    for cell in ("x".join(map(str, seg.patch_size)), "x".join(map(str, seg.architecture.pooling_per_axis)),
                 "-".join(map(str, seg.architecture.features_per_stage)), f"{seg.memory_estimate_gb:.2f}"):
        assert cell in row
    # A re-run is a no-op for the cases.
    assert main(["plan_and_preprocess", str(raw), "--out", str(out), "--budget", "cpu", "-np", "1",
                 "--no-progress"]) == 0
    assert "preprocessed 0 scans, 7 already up to date" in capsys.readouterr().out


def test_stages_one_by_one_with_an_edited_plan(raw, tmp_path, capsys):
    out = tmp_path / "pp"
    assert main(["fingerprint", str(raw), "--out", str(out), "-np", "1", "--no-progress"]) == 0
    assert (out / "fingerprint.json").is_file() and not (out / "plans.json").exists()
    assert main(["plan", str(out), "--budget", "gpu:4"]) == 0
    plans = json.loads((out / "plans.json").read_text())
    assert plans["budget"] == {"kind": "gpu", "memory_gb": 4.0, "source": "user"}
    plans["views"]["sag"]["target_spacing"] = [2.0, 1.0, 1.0]  # the user edits the plan...
    (out / "plans.json").write_text(json.dumps(plans, indent=2))
    capsys.readouterr()
    assert main(["preprocess", str(raw), "--out", str(out), "-np", "1", "--no-progress"]) == 0
    _, _, props = PreprocessedDataset(out, "sag").load("c000")
    assert props.spacing_after_resampling == (2.0, 1.0, 1.0)
    assert props.shape_after_resampling[1] == 14  # 28 voxels of 0.5 mm at 1 mm
    # A broken edit is reported with the file name, exit code 2.
    plans["views"]["sag"]["segmentation"]["patch_size"] = [3, 3, 3]
    (out / "plans.json").write_text(json.dumps(plans))
    assert main(["preprocess", str(raw), "--out", str(out), "-np", "1", "--no-progress"]) == 2
    assert "plans.json" in capsys.readouterr().err
    assert main(["show_plans", str(out)]) == 2


def test_invalid_dataset_exits_2_and_writes_nothing(raw, tmp_path, capsys):
    label_path = raw / "labelsTr" / "c001_sag.nii.gz"
    label, g = read_image(label_path, dtype=None)
    label[0, 0, 0] = 9  # undeclared label value
    write_image(label_path, label.astype(np.uint8), g)
    out = tmp_path / "pp"
    for argv in (["plan_and_preprocess", str(raw), "--out", str(out), "-np", "1"],
                 ["fingerprint", str(raw), "--out", str(out), "-np", "1"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "c001_sag.nii.gz" in err and "9" in err
        assert not out.exists()
    assert main(["plan_and_preprocess", str(raw), "--out", str(out), "--budget", "tpu"]) == 2
    assert not out.exists()
    assert main(["plan", str(out)]) == 2  # no fingerprint yet
    assert "fingerprint" in capsys.readouterr().err
