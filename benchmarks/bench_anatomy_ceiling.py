"""The anatomy reader's ceiling: its features read from the REFERENCE label maps (no segmentation error), its own
logistic regression, pooled out-of-fold AUROC per finding with bootstrap CIs; the feature sets (basic, + where in
the structure, + sectors), each with every feature or screened per finding.

    python benchmarks/bench_anatomy_ceiling.py --raw RAW --work WORK [--views sag,cor,ax] [--folds 5]
        [--sets basic,where,sectors] [--screen 0,10,20,40] [--bootstrap 1000] [--limit N]

1. per view and labelled training case of RAW (``generate_synthetic`` output or any raw dataset): the image and
   its reference label map are brought to the canonical orientation (as preprocessing does, at their native
   spacing, no resampling), the image z-scored, and ``anatomy.basic_features`` and
   ``anatomy_features.where_features`` with its sectors (left-right axis from the geometry, as the reader)
   computed (cached in WORK/features_<view>.npz with the seconds per scan: an interrupted run goes on where it
   stopped);
2. per feature set (``anatomy_feature_set``: basic; where = basic + where; sectors = where + sectors) and view
   combination (each view, and all views concatenated as the fused reader does): the
   project's stratified 5-fold split of the cases (``training.splits.make_splits``, seed 0); per fold the
   reader's own fit (``anatomy.fit_logistic``: standardisation, L2 logistic regression per finding with C chosen
   by inner cross-validation on the fold's training cases among ``anatomy_strengths``; with ``--screen`` K > 0
   each finding reads only its K features of strongest univariate AUROC on the fold's training cases, the
   ``anatomy_screen_features`` setting) and its logits on the held-out cases;
3. the pooled out-of-fold predictions of the cases give per-finding AUROC with a percentile bootstrap 95% CI
   (``bench_diagnosis.table_row``); WORK/bench_anatomy_ceiling.json and a Markdown table (stdout and .md).

Nothing here knows the generator: labels, findings and views come from dataset.json and the findings table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--raw", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--views", default=None, help="comma list (default: every view of the dataset)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--sets", default="basic,where,sectors", help="comma list of anatomy_feature_set values")
    p.add_argument("--screen", default="0,10,20,40",
                   help="comma list of anatomy_screen_features values to compare (0: every feature)")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--limit", type=int, default=0, help="only the first N cases (a quick check)")
    return p.parse_args(argv)


def scan_features(image_path: Path, label_path: Path, label_values: list[int]) -> tuple[np.ndarray, np.ndarray,
                                                                                         np.ndarray, dict]:
    """(basic, where, sectors, seconds) of one scan read at its native spacing in the canonical orientation."""
    from orthodiff_auto.classification.anatomy import basic_features
    from orthodiff_auto.classification.anatomy_features import left_right_axis, where_feature_names, where_features
    from orthodiff_auto.data.image_io import read_image
    from orthodiff_auto.data.label_values import to_class_indices
    from orthodiff_auto.data.orientation import canonical_orientation

    image, geometry = read_image(image_path)
    label, _ = read_image(label_path, dtype=np.int16)
    orient = canonical_orientation(geometry)
    image = orient.to_canonical(image).astype(np.float32)
    label = to_class_indices(orient.to_canonical(label), label_values, None)
    spacing = orient.spacing_to_canonical(geometry.spacing)
    image = (image - image.mean()) / max(float(image.std()), 1e-6)
    indices = list(range(1, len(label_values)))
    t0 = time.perf_counter()
    basic = basic_features(image, label, spacing, indices)
    t1 = time.perf_counter()
    where = where_features(image, label, spacing, indices, left_right_axis(geometry, orient), sectors=True)
    t2 = time.perf_counter()
    n_where = len(where_feature_names(indices))
    return basic, where[:n_where], where[n_where:], {"basic_s": t1 - t0, "where_s": t2 - t1, "voxels": int(image.size)}


def view_features(raw: Path, work: Path, view: str, limit: int) -> dict:
    """{cases, basic (N, Db), where (N, Dw), sectors (N, Ds), timing} of the view's labelled training scans
    (cached; a cache without sectors, from before they existed, is computed again)."""
    from orthodiff_auto.data.dataset import load_raw_dataset

    cache = work / f"features_{view}.npz"
    if cache.is_file():
        data = np.load(cache, allow_pickle=False)
        if "sectors" in data.files:
            # the cache holds every case in case order: --limit keeps the first N, as a fresh computation would
            return {k: data[k][:limit] if limit else data[k] for k in data.files}
    ds = load_raw_dataset(raw)
    label_values = sorted(ds.description.labels.values())
    scans = sorted(ds.select("train", view, labelled=True), key=lambda s: s.case_id)
    scans = scans[:limit] if limit else scans
    rows = []
    for i, scan in enumerate(scans):
        rows.append((scan.case_id, *scan_features(scan.image, scan.label, label_values)))
        if (i + 1) % 20 == 0:
            print(f"  {view}: {i + 1}/{len(scans)} scans", flush=True)
    out = {"cases": np.array([r[0] for r in rows]), "basic": np.stack([r[1] for r in rows]),
           "where": np.stack([r[2] for r in rows]), "sectors": np.stack([r[3] for r in rows]),
           "basic_s": np.array([r[4]["basic_s"] for r in rows]), "where_s": np.array([r[4]["where_s"] for r in rows]),
           "voxels": np.array([r[4]["voxels"] for r in rows])}
    work.mkdir(parents=True, exist_ok=True)
    tmp = work / f".features_{view}.tmp.npz"
    np.savez(tmp, **out)
    tmp.replace(cache)
    return out


def out_of_fold(x: np.ndarray, y: np.ndarray, cases: list[str], splits, views, screen: int = 0,
                families=None) -> np.ndarray:
    """(N, F) pooled out-of-fold probabilities of the reader's own fit."""
    from orthodiff_auto.classification.anatomy import fit_logistic
    from orthodiff_auto.classification.config import ClassificationConfig

    strengths = [float(c) for c in ClassificationConfig().anatomy_strengths]
    position = {c: i for i, c in enumerate(cases)}
    probs = np.full(y.shape, np.nan)
    for split in splits:
        train = [position[c] for c in split["train"]]
        val = [position[c] for c in split["val"]]
        model = fit_logistic(x[train], y[train], views, strengths, seed=0, screen=screen, families=families)
        probs[val] = 1.0 / (1.0 + np.exp(-model.decision(x[val])))
    return probs


def main(argv=None) -> int:
    from bench_diagnosis import markdown, table_row
    from orthodiff_auto.data.dataset import load_raw_dataset
    from orthodiff_auto.training.splits import make_splits

    args = parse_args(argv)
    start = time.perf_counter()
    ds = load_raw_dataset(args.raw)
    findings = list(ds.description.findings)
    views = args.views.split(",") if args.views else list(ds.views_present())
    feats = {v: view_features(args.raw, args.work, v, args.limit) for v in views}
    cases = sorted(set.intersection(*(set(feats[v]["cases"].tolist()) for v in views)))
    table = ds.findings
    y = table.loc[cases, findings].to_numpy(dtype=int)
    splits = make_splits(cases, table, findings, args.folds, seed=0)
    rows, timing = [], {}
    for v in views:
        timing[v] = {"basic_s_median": float(np.median(feats[v]["basic_s"])),
                     "where_s_median": float(np.median(feats[v]["where_s"])),
                     "voxels_median": int(np.median(feats[v]["voxels"]))}
    screens = [int(k) for k in args.screen.split(",")]
    sets = {"basic": ("basic",), "where": ("basic", "where"), "sectors": ("basic", "where", "sectors")}
    for name, parts in ((n, sets[n]) for n in args.sets.split(",")):
        for combo in [[v] for v in views] + ([views] if len(views) > 1 else []):
            x = np.concatenate([feats[v][p][[list(feats[v]["cases"]).index(c) for c in cases]]
                                for v in combo for p in parts], axis=1)
            # the "sectors" set: per finding the columns without sectors or all of them, as the reader
            # (anatomy.feature_families)
            sector = np.concatenate([np.full(feats[v][p].shape[1], p == "sectors") for v in combo for p in parts])
            families = [np.flatnonzero(~sector), np.arange(x.shape[1])] if "sectors" in parts else None
            for screen in screens:
                t0 = time.perf_counter()
                probs = out_of_fold(x, y, cases, splits, combo, screen, families)
                label = f"{name}, {'+'.join(combo)}" + (f", screen {screen}" if screen else "")
                row = table_row(label, cases, probs, y, findings, args.bootstrap)
                row.update(features=int(x.shape[1]), screen=screen, fit_seconds=time.perf_counter() - t0)
                rows.append(row)
                print(markdown([row], findings).splitlines()[-1], flush=True)
    report = {"command": " ".join(sys.argv), "raw": str(args.raw), "views": views, "n_cases": len(cases),
              "timing_per_scan": timing, "seconds": time.perf_counter() - start, "rows": rows}
    (args.work / "bench_anatomy_ceiling.json").write_text(json.dumps(report, indent=1))
    text = markdown(rows, findings)
    (args.work / "bench_anatomy_ceiling.md").write_text(text + "\n")
    print(text)
    print("seconds per scan (median): " + ", ".join(f"{v}: basic {t['basic_s_median']:.2f}, where with sectors "
                                                    f"{t['where_s_median']:.2f} ({t['voxels_median']} voxels)"
                                                    for v, t in timing.items()))
    print(f"bench_anatomy_ceiling: {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
