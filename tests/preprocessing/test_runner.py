import json
import os
from dataclasses import replace

import numpy as np
import pytest

from orthodiff_auto.data.dataset import load_raw_dataset
from orthodiff_auto.fingerprint import extract_fingerprint
from orthodiff_auto.plans.planner import plan_experiment
from orthodiff_auto.plans.schema import Budget
from orthodiff_auto.preprocessing import PreprocessedDataset, preprocess_dataset, storage
from orthodiff_auto.preprocessing.storage import chunks_and_blocks
from tests.preprocessing.synth import simple_scans, write_dataset


@pytest.fixture
def dataset(tmp_path):
    scans = simple_scans(3, views=("sag", "ax"), shape=(8, 30, 26), spacing=(3.0, 0.5, 0.5), jitter=0.08)
    scans[0]["labelled"] = False  # c000 sag: training scan without label
    scans.append({"case": "u000", "view": "sag", "shape": (8, 30, 26), "spacing": (3.0, 0.5, 0.5),
                  "subset": "unlabeled"})
    scans.append({"case": "t000", "view": "sag", "shape": (8, 30, 26), "spacing": (3.0, 0.5, 0.5),
                  "subset": "test"})
    root = write_dataset(tmp_path / "raw", scans)
    ds = load_raw_dataset(root)
    plans = plan_experiment(extract_fingerprint(ds, num_workers=1, progress=False), Budget("cpu", 0.25))
    return ds, plans


def _all_files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_preprocess_dataset_layout_and_loader(dataset, tmp_path):
    ds, plans = dataset
    out = tmp_path / "pp"
    summary = preprocess_dataset(ds, plans, out, num_workers=1, progress=False)
    assert len(summary.processed) == 3 + 1 + 3 and not summary.skipped
    files = _all_files(out / "sag")
    assert "t000.json" not in files  # test scans are preprocessed at prediction time
    assert {"c000.b2nd", "c000.json", "c001_seg.b2nd", "u000.b2nd"} <= set(files)
    assert "c000_seg.b2nd" not in files and "u000_seg.b2nd" not in files
    pds = PreprocessedDataset(out, "sag")
    assert pds.case_ids() == ["c000", "c001", "c002", "u000"]
    assert pds.case_ids(subset="unlabeled") == ["u000"]
    assert pds.case_ids(subset="train", labelled=True) == ["c001", "c002"]
    data, seg, props = pds.load("c001")
    assert data.shape[0] == 1 and data.dtype == np.float32 and seg.dtype == np.uint8
    assert data.shape == seg.shape == (1,) + props.shape_after_resampling
    full = data[...]
    patch = data[:, 1:5, 3:20, 2:9]
    assert np.array_equal(patch, full[:, 1:5, 3:20, 2:9])
    assert props.subset == "train" and props.source["image"]["name"] == "c001_sag.nii.gz"
    assert set(props.class_locations) <= {1, 2} and props.class_locations
    assert pds.load("u000")[1] is None
    # Chunks follow the patch size; blocks stay small.
    chunks, blocks = chunks_and_blocks((1, 40, 300, 300), (16, 80, 80), 4)
    assert chunks == (1, 16, 80, 80) and np.prod(blocks) * 4 <= storage.BLOCK_BYTES
    patch = plans.views["sag"].segmentation.patch_size
    assert data.chunks[1:] == tuple(min(s, p) for s, p in zip(data.shape[1:], patch))


def test_interrupted_run_leaves_no_partial_case_and_resumes(dataset, tmp_path, monkeypatch):
    ds, plans = dataset
    out = tmp_path / "pp"
    real_write = storage._write_b2nd
    seen = {"seg_writes": 0, "case": None, "dir": None}

    def failing_write(path, array, patch):
        if "_seg.b2nd" in path.name:
            seen["seg_writes"] += 1
            if seen["seg_writes"] == 2:  # a labelled case, while writing its segmentation (after its image)
                seen["case"] = path.name[1:].split("_seg")[0]
                seen["dir"] = path.parent
                real_write(path, array[:, :2], patch)  # a half-written file on disk...
                raise KeyboardInterrupt
        return real_write(path, array, patch)

    monkeypatch.setattr(storage, "_write_b2nd", failing_write)
    with pytest.raises(KeyboardInterrupt):
        preprocess_dataset(ds, plans, out, num_workers=1, progress=False)
    monkeypatch.setattr(storage, "_write_b2nd", real_write)
    finished = {(v, p.stem) for v in ("sag", "ax") if (out / v).is_dir() for p in (out / v).glob("*.json")}
    assert 1 <= len(finished) < 7
    assert (seen["dir"].name, seen["case"]) not in finished
    for v in ("sag", "ax"):
        if not (out / v).is_dir():
            continue
        names = _all_files(out / v)
        assert not [n for n in names if n.startswith(".")]  # no temporary left behind
        stems = {n.split(".")[0].removesuffix("_seg") for n in names}
        assert stems <= {c for vv, c in finished if vv == v}  # the interrupted case has no file under a final name

    summary = preprocess_dataset(ds, plans, out, num_workers=1, progress=False)
    assert len(summary.skipped) == len(finished) and len(summary.processed) == 7 - len(finished)
    # Same result as an uninterrupted run.
    ref = tmp_path / "ref"
    preprocess_dataset(ds, plans, ref, num_workers=1, progress=False)
    for v in ("sag", "ax"):
        a, b = PreprocessedDataset(out, v), PreprocessedDataset(ref, v)
        assert a.case_ids() == b.case_ids()
        for cid in a.case_ids():
            da, sa, _ = a.load_numpy(cid)
            db, sb, _ = b.load_numpy(cid)
            assert np.array_equal(da, db) and (sa is None and sb is None or np.array_equal(sa, sb))


def test_up_to_date_rules(dataset, tmp_path):
    ds, plans = dataset
    out = tmp_path / "pp"
    preprocess_dataset(ds, plans, out, num_workers=1, progress=False)
    again = preprocess_dataset(ds, plans, out, num_workers=1, progress=False)
    assert not again.processed and len(again.skipped) == 7
    # A changed source file is redone.
    src = ds.root / "imagesTr" / "c001_ax.nii.gz"
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert preprocess_dataset(ds, plans, out, num_workers=1, progress=False).processed == ["ax/c001"]
    # A changed plan (target spacing) redoes that view only; a changed batch size changes nothing.
    sag = plans.views["sag"]
    edited = plans.replace_view(replace(sag, target_spacing=(2.5,) + tuple(sag.target_spacing[1:])))
    redo = preprocess_dataset(ds, edited, out, num_workers=1, progress=False)
    assert sorted(redo.processed) == ["sag/c000", "sag/c001", "sag/c002", "sag/u000"]
    props = json.loads((out / "sag" / "c001.json").read_text())
    assert props["spacing_after_resampling"][0] == 2.5
    bs = edited.replace_view(replace(edited.views["ax"], segmentation=replace(edited.views["ax"].segmentation,
                                                                               batch_size=5)))
    assert not preprocess_dataset(ds, bs, out, num_workers=1, progress=False).processed
    # A case that left the dataset is removed, temporaries of a killed run are cleaned up.
    (out / "ax" / ".c001.b2nd.abc.tmp.b2nd").write_text("junk")
    (ds.root / "imagesTr" / "c002_ax.nii.gz").unlink()
    (ds.root / "labelsTr" / "c002_ax.nii.gz").unlink()
    summary = preprocess_dataset(load_raw_dataset(ds.root), bs, out, num_workers=1, progress=False)
    assert summary.removed == ["ax/c002"]
    assert not [n for n in _all_files(out / "ax") if n.startswith("c002") or n.startswith(".")]


def test_cases_of_earlier_resampling_code_are_redone(dataset, tmp_path, monkeypatch):
    from orthodiff_auto.preprocessing import properties

    ds, plans = dataset
    out = tmp_path / "pp"
    monkeypatch.setattr(properties, "RESAMPLING_NUMERICS", "keys-cubic")  # what the code before issue 26 wrote
    preprocess_dataset(ds, plans, out, num_workers=1, progress=False)
    monkeypatch.undo()
    again = preprocess_dataset(ds, plans, out, num_workers=1, progress=False)
    assert len(again.processed) == 7 and not again.skipped


def with_lowres(plans, view="sag"):
    """``plans`` with a 3d_lowres (half the in-plane resolution) and its cascade planned by hand for ``view``."""
    from orthodiff_auto.plans.planner import CPU_PRESET, new_shape, plan_segmentation
    from orthodiff_auto.plans.schema import ConfigurationPlan

    vp = plans.views[view]
    low = (vp.target_spacing[0], 2 * vp.target_spacing[1], 2 * vp.target_spacing[2])
    shape = new_shape(vp.median_shape_after_resampling, vp.target_spacing, low)
    seg = plan_segmentation(low, shape, plans.num_classes, 2, plans.budget, CPU_PRESET)
    configurations = {**vp.configurations, "3d_lowres": ConfigurationPlan(low, shape, seg, f"{view}_3d_lowres"),
                      "3d_cascade_fullres": ConfigurationPlan(vp.target_spacing, vp.median_shape_after_resampling,
                                                              vp.segmentation, view, previous_stage="3d_lowres")}
    return plans.replace_view(replace(vp, configurations=configurations))


def test_lowres_cases_are_preprocessed_into_their_own_folder(dataset, tmp_path):
    from orthodiff_auto.preprocessing.resampling import compute_new_shape

    ds, plans = dataset
    plans = with_lowres(plans)
    low = plans.views["sag"].configuration("3d_lowres")
    out = tmp_path / "pp"
    summary = preprocess_dataset(ds, plans, out, num_workers=1, progress=False)
    # the labelled training scans only: not c000 (no label), u000 (unlabeled), t000 (test)
    assert sorted(s for s in summary.processed if s.startswith("sag_3d_lowres/")) == [
        "sag_3d_lowres/c001", "sag_3d_lowres/c002"]
    assert len(summary.processed) == 7 + 2
    # 2d and the cascade read the view's own folder; ax has no lowres stage
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["ax", "sag", "sag_3d_lowres"]
    lowres, full = PreprocessedDataset(out, "sag_3d_lowres"), PreprocessedDataset(out, "sag")
    assert lowres.case_ids() == lowres.case_ids(subset="train", labelled=True) == ["c001", "c002"]
    assert full.case_ids() == ["c000", "c001", "c002", "u000"]
    for cid in lowres.case_ids():
        data, seg, props = lowres.load(cid)
        full_props = full.properties(cid)
        assert props.spacing_after_resampling == low.target_spacing
        assert props.shape_after_cropping == full_props.shape_after_cropping
        shape = compute_new_shape(props.shape_after_cropping, props.spacing, low.target_spacing)
        assert props.shape_after_resampling == shape and data.shape == seg.shape == (1, *shape)
        assert shape[0] == full_props.shape_after_resampling[0] and shape[1] < full_props.shape_after_resampling[1]
        assert set(np.unique(seg[...]).tolist()) == {0, 1, 2}
    # resumable: a second run skips them; a changed lowres spacing redoes those cases only
    again = preprocess_dataset(ds, plans, out, num_workers=1, progress=False)
    assert not again.processed and len(again.skipped) == 9
    assert {"sag_3d_lowres/c001", "sag_3d_lowres/c002"} <= set(again.skipped)
    vp = plans.views["sag"]
    coarser = replace(low, target_spacing=(low.target_spacing[0], 1.5, 1.5))
    edited = plans.replace_view(replace(vp, configurations={**vp.configurations, "3d_lowres": coarser}))
    redo = preprocess_dataset(ds, edited, out, num_workers=1, progress=False)
    assert sorted(redo.processed) == ["sag_3d_lowres/c001", "sag_3d_lowres/c002"]
    assert PreprocessedDataset(out, "sag_3d_lowres").properties("c001").spacing_after_resampling[1:] == (1.5, 1.5)
    # a scan that left the dataset leaves the lowres folder too
    for folder in ("imagesTr", "labelsTr"):
        (ds.root / folder / "c002_sag.nii.gz").unlink()
    gone = preprocess_dataset(load_raw_dataset(ds.root), edited, out, num_workers=1, progress=False)
    assert sorted(gone.removed) == ["sag/c002", "sag_3d_lowres/c002"]
    assert PreprocessedDataset(out, "sag_3d_lowres").case_ids() == ["c001"]
