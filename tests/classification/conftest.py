"""A tiny preprocessed dataset whose findings are visible in one view each.

dataset.json lists findings ["zeta", "alpha"]; findings.csv has them in the other order (alpha first) so that
tests can check that dataset.json's order is the one used. "zeta" is a bright blob in the sagittal scan,
"alpha" one in the coronal scan; the last case has no coronal scan.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from orthodiff_auto.data.image_io import write_image
from orthodiff_auto.plans.schema import Budget
from orthodiff_auto.preprocessing.stages import run_fingerprint, run_plan, run_preprocess, validated_dataset
from tests.conftest import view_geometry

FINDINGS = ["zeta", "alpha"]  # dataset.json order
VISIBLE_IN = {"zeta": "sag", "alpha": "cor"}
N_CASES = 12
CASES = [f"c{i:02d}" for i in range(N_CASES)]
NO_COR = CASES[-1]
SHAPE = (6, 24, 24)


def case_findings(i: int) -> dict[str, int]:
    return {"zeta": i % 2, "alpha": (i // 2) % 2}


def make_raw_dataset(root: Path) -> Path:
    rng = np.random.default_rng(0)
    (root / "imagesTr").mkdir(parents=True)
    json.dump({"name": "Cls", "labels": {"background": 0, "thing": 1}, "findings": FINDINGS, "views": ["sag", "cor"]},
              open(root / "dataset.json", "w"))
    rows = ["case_id,alpha,site,zeta"]  # not dataset.json's order
    zz, yy, xx = np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij")
    for i, case in enumerate(CASES):
        flags = case_findings(i)
        for view in ("sag", "cor"):
            if view == "cor" and case == NO_COR:
                continue
            g = view_geometry(view, shape=SHAPE, spacing=(3.0, 1.0, 1.0))
            image = rng.normal(100.0, 5.0, size=SHAPE).astype(np.float32)
            if any(flags[f] and VISIBLE_IN[f] == view for f in FINDINGS):
                cy, cx = rng.integers(7, SHAPE[1] - 7, 2)
                image[((yy - cy) / 4.0) ** 2 + ((xx - cx) / 4.0) ** 2 + ((zz - SHAPE[0] / 2) / 2.0) ** 2 < 1] += 300
            write_image(root / "imagesTr" / f"{case}_{view}.nii.gz", image, g)
        rows.append(f"{case},{flags['alpha']},s{i % 2},{flags['zeta']}")
    (root / "findings.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="session")
def cls_preprocessed(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("cls")
    raw = make_raw_dataset(base / "raw")
    out = base / "pp"
    ds = validated_dataset(raw, num_workers=1)
    run_fingerprint(ds, out, num_workers=1, progress=False)
    run_plan(out, Budget("cpu", 0.5))
    run_preprocess(ds, out, num_workers=1, progress=False)
    # preprocessing writes its copy in dataset.json's order; put the raw one (alpha first) there so the tests
    # show that the order comes from dataset.json and never from the CSV
    shutil.copy(raw / "findings.csv", out / "findings.csv")
    return out
