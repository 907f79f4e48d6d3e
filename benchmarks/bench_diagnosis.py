"""Diagnosis by cross-validation: per-finding pooled out-of-fold AUROC (95% bootstrap CIs) of each way to read
the findings, on a demo-size synthetic dataset.

    python benchmarks/bench_diagnosis.py --work /tmp/bench_diag --make-data 120 [--folds 0,1,2,3,4]
        [--views sag,cor,ax] [--modes anatomy,finetune,noised,diffusion] [--fov] [--predicted-region]
        [--seg-epochs 24] [--cls-epochs 12] [--pretrain-epochs 10]

1. data: ``orthodiff generate_synthetic WORK/raw --cases N --size demo`` (``--make-data N``), or ``--raw RAW``;
   ``plan_and_preprocess`` with the cpu budget into WORK/pp;
2. per view ``pretrain`` (demo preset, ``--pretrain-epochs``) and ``probe`` when a mode reads diffusion features;
3. per fold and view the segmentation (demo preset, ``--seg-epochs``, from the pretrained encoder), then the
   classifiers of every requested mode: ``anatomy`` (fused: every view combination from the fold's predicted
   segmentations), ``finetune`` (clean region, pretrained encoder), ``noised`` (region noised at t=100, the
   pretraining run's conditioned encoder) and ``diffusion`` (frozen denoiser, attention-pooled, timestep and
   block chosen inside the fold), each per view (``--cls-epochs``);
4. ``--fov``: the finetune classifiers again with the whole field of view instead of the region of interest
   (a copy of the plans with ``roi_source: field_of_view``, same spacing rule);
5. ``--predicted-region``: the finetune classifiers' validation cases predicted again with the region centred on
   the fold's predicted segmentation (the cascade of ``predict_folder``) instead of the reference labels;
6. pools every fold's validation predictions per (mode, view) and writes ``WORK/bench_diagnosis.json`` and a
   Markdown table (per finding AUROC [95% CI], macro) to stdout and ``WORK/bench_diagnosis.md``.

Runs whose summary.json exists are reused: an interrupted benchmark goes on where it stopped. Everything goes
through the ``orthodiff`` command line in this process (``orthodiff_auto.cli.main``) and its library.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

MODES = ("anatomy", "finetune", "noised", "diffusion")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--make-data", type=int, default=0, metavar="N", help="generate N labelled demo-size cases")
    p.add_argument("--seed", type=int, default=11, help="generator seed (not the demo's 7)")
    p.add_argument("--size", default="demo", help="generator preset (tiny for a quick check of the script)")
    p.add_argument("--raw", type=Path, default=None, help="an existing raw dataset instead of --make-data")
    p.add_argument("--folds", default="0,1,2,3,4")
    p.add_argument("--views", default="sag,cor,ax")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--fov", action="store_true", help="also the whole field of view (finetune)")
    p.add_argument("--predicted-region", action="store_true", help="also finetune with the predicted region")
    p.add_argument("--seg-epochs", type=int, default=24, help="segmentation epochs of 25 steps (demo preset)")
    p.add_argument("--cls-epochs", type=int, default=12, help="classifier epochs of 25 steps (demo preset)")
    p.add_argument("--pretrain-epochs", type=int, default=10, help="pretraining epochs of 25 steps")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("-np", "--num-processes", type=int, default=2)
    return p.parse_args(argv)


def run(cli_args: list[str]) -> None:
    from orthodiff_auto.cli import main

    print("$ orthodiff " + " ".join(cli_args), flush=True)
    rc = main(cli_args)
    if rc != 0:
        raise SystemExit(f"orthodiff {cli_args[0]} failed with exit code {rc}")


def train(pp: Path, results: Path, task: str, view: str, fold: int, epochs: int, extra=(), pretrained=None,
          variant_dir: str | None = None) -> None:
    from orthodiff_auto.classification import readers  # noqa: F401  (names the cls run folders)
    from orthodiff_auto.training.config import make_config
    from orthodiff_auto.training.fold import FoldRequest

    sets = [f"num_epochs={epochs}", *extra]
    request = FoldRequest(pp, task, view, fold, make_config("demo", sets), results_dir=results,
                          pretrained=pretrained)
    if (request.output_dir() / "summary.json").is_file():
        return
    args = ["train_fold", str(pp), task, view, str(fold), "--config", "demo", "--results", str(results)]
    for s in sets:
        args += ["--set", s]
    if pretrained is not None:
        args += ["--pretrained", str(pretrained)]
    if (request.output_dir() / "checkpoint_latest.pt").is_file():
        args.append("--continue")
    run(args)


def fov_copy(pp: Path) -> Path:
    """A preprocessed folder sharing pp's data whose plans read the whole field of view."""
    from orthodiff_auto.plans.planner import preset_for
    from orthodiff_auto.plans.schema import Plans

    out = pp.parent / "pp_fov"
    if (out / "plans.json").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for item in pp.iterdir():
        if item.name not in ("plans.json",) and not (out / item.name).exists():
            (out / item.name).symlink_to(item.resolve())
    plans = json.loads((pp / "plans.json").read_text())
    loaded = Plans.from_dict(plans)
    for view, vp in plans["views"].items():
        c = vp["classification"]
        fp = json.loads((pp / "fingerprint.json").read_text())["views"][view]
        fov = np.percentile([[n * s for n, s in zip(sh, sp)] for sh, sp in zip(fp["shapes_after_crop"], fp["spacings"])],
                            95, axis=0)
        div = loaded.view(view).classification.architecture.shape_divisor
        spacing = np.asarray(c["spacing"], float)
        limit = preset_for(loaded.budget).max_classification_voxels
        while limit and np.prod(np.round(fov / spacing)) > limit:  # the planner's rule: coarsen to fit
            coarsest = spacing.max()
            spacing = np.where(coarsest / spacing > 2, spacing * 1.03, spacing) if (coarsest / spacing > 2).any() \
                else spacing * 1.03
        voxels = np.maximum(1, np.round(fov / spacing)).astype(int)
        c.update(roi_source="field_of_view", roi_size_mm=[round(float(v), 3) for v in fov], roi_margin_mm=0.0,
                 spacing=[round(float(v), 6) for v in spacing],
                 input_size=[int(-(-v // d) * d) for v, d in zip(voxels, div)])
    Plans.from_dict(plans).save(out / "plans.json")
    return out


def pooled(fold_dirs: list[Path], findings: list[str], name: str = "validation_predictions.csv"):
    from orthodiff_auto.classification.metrics_io import read_validation_predictions

    ids, probs, labels = [], [], []
    for d in fold_dirs:
        c, p, y = read_validation_predictions(d / name, findings)
        ids += c
        probs.append(p)
        labels.append(y)
    return ids, np.concatenate(probs), np.concatenate(labels)


def predicted_region_predictions(pp: Path, results: Path, view: str, fold: int, run_dir: Path,
                                 findings: list[str]) -> Path:
    """The run's validation cases predicted with the region centred on the fold's predicted segmentation."""
    import torch

    from orthodiff_auto.classification.anatomy_fold import fold_segmenter, predicted_labels
    from orthodiff_auto.classification.inference import FindingsEnsemble, PreparedScan
    from orthodiff_auto.classification.metrics_io import read_validation_predictions, write_validation_predictions
    from orthodiff_auto.plans.schema import Plans
    from orthodiff_auto.preprocessing.storage import PreprocessedDataset
    from orthodiff_auto.training.config import make_config
    from orthodiff_auto.training.fold import FoldRequest

    out = run_dir / "validation_predictions_predicted_region.csv"
    if out.is_file():
        return out
    plans = Plans.load(pp / "plans.json")
    device = torch.device("cpu")
    net, patch, _ = fold_segmenter(FoldRequest(pp, "seg", view, fold, make_config("demo"), results_dir=results),
                                   view, plans, device)
    ensemble = FindingsEnsemble.load([run_dir / "checkpoint_final.pt"], device)
    cases, _, labels = read_validation_predictions(run_dir / "validation_predictions.csv", findings)
    data_source = PreprocessedDataset(pp, view)
    probs = []
    for case in cases:
        data, _, props = data_source.load(case)
        data = np.asarray(data[...], dtype=np.float32)
        seg = predicted_labels(net, patch, data, plans.num_classes, device)
        scan = PreparedScan(data, tuple(props.spacing_after_resampling), props, seg)
        found = ensemble.predict_prepared({view: scan})
        probs.append([found[f]["probability"] for f in findings])
    write_validation_predictions(out, cases, findings, np.asarray(probs), labels)
    return out


def table_row(name: str, ids, p, y, findings, bootstrap: int) -> dict:
    from orthodiff_auto.training.classification_metrics import evaluate_findings

    result = evaluate_findings(y, p, findings, thresholds=np.full(len(findings), 0.5), bootstrap=bootstrap, seed=0)
    per = {f: [result["per_finding"][f]["auroc"], result["per_finding"][f].get("auroc_ci_low"),
               result["per_finding"][f].get("auroc_ci_high")] for f in findings}
    macro = [result["macro"]["auroc"], result["macro"].get("auroc_ci_low"), result["macro"].get("auroc_ci_high")]
    return {"name": name, "n_cases": len(ids), "per_finding": per, "macro": macro}


def markdown(rows: list[dict], findings: list[str]) -> str:
    fmt = lambda v: f"{v[0]:.2f} [{v[1]:.2f}-{v[2]:.2f}]" if v[1] is not None else f"{v[0]:.2f}"  # noqa: E731
    lines = ["| classifier | cases | " + " | ".join(findings) + " | macro |",
             "|---|---|" + "---|" * (len(findings) + 1)]
    for r in rows:
        lines.append(f"| {r['name']} | {r['n_cases']} | " + " | ".join(fmt(r["per_finding"][f]) for f in findings)
                     + f" | {fmt(r['macro'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    work = args.work
    raw = args.raw or work / "raw"
    if args.make_data and not (raw / "dataset.json").is_file():
        run(["generate_synthetic", str(raw), "--cases", str(args.make_data), "--size", args.size, "--seed", str(args.seed),
             "-np", str(args.num_processes)])
    pp, results = work / "pp", work / "results"
    if not (pp / "plans.json").is_file():
        run(["plan_and_preprocess", str(raw), "--out", str(pp), "--budget", "cpu", "-np", str(args.num_processes)])
    folds = [int(f) for f in args.folds.split(",")]
    views = args.views.split(",")
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        raise SystemExit(f"unknown modes {sorted(unknown)}; choose from {MODES}")
    findings = json.loads((pp / "dataset.json").read_text())["findings"]

    encoders = {}
    for view in views:  # every segmentation and classifier below starts from the view's pretraining
        enc = results / "pretrain" / view / f"encoder_{view}.pt"
        if not enc.is_file():
            run(["pretrain", str(pp), view, "--config", "demo", "--results", str(results),
                 "--set", f"num_epochs={args.pretrain_epochs}"])
        if "diffusion" in modes and not (results / "pretrain" / view / "probe_features.npz").is_file():
            run(["probe", str(pp), view, "--results", str(results)])
        encoders[view] = enc
    for fold in folds:
        for view in views:
            train(pp, results, "seg", view, fold, args.seg_epochs, pretrained=encoders[view])
        if "anatomy" in modes:
            train(pp, results, "cls", "fused" if len(views) > 1 else views[0], fold, args.cls_epochs,
                  ["classifier_features=anatomy"])
        for view in views:
            if "finetune" in modes:
                train(pp, results, "cls", view, fold, args.cls_epochs, pretrained=encoders[view])
            if "noised" in modes:
                train(pp, results, "cls", view, fold, args.cls_epochs, ["classifier_features=noised"])
            if "diffusion" in modes:
                train(pp, results, "cls", view, fold, args.cls_epochs, ["classifier_features=diffusion"])
            if args.fov:
                train(fov_copy(pp), work / "results_fov", "cls", view, fold, args.cls_epochs,
                      pretrained=encoders[view])

    rows = []
    cls = results / "cls"
    variants = {"anatomy": "anatomy", "finetune": "pretrained", "noised": "noised_t100", "diffusion": "diffusion"}
    if "anatomy" in modes and len(views) > 1:
        for combo in ([views] + [[v] for v in views]):
            name = "validation_predictions.csv" if combo == views else f"validation_predictions@{'+'.join(combo)}.csv"
            dirs = [cls / "fused" / "anatomy" / f"fold_{k}" for k in folds]
            rows.append(table_row(f"anatomy features, {'+'.join(combo)}", *pooled(dirs, findings, name), findings,
                                  args.bootstrap))
    for mode in [m for m in modes if m != "anatomy" or len(views) == 1]:
        for view in views:
            dirs = [cls / view / variants[mode] / f"fold_{k}" for k in folds]
            label = {"finetune": "clean fine-tuned, region", "noised": "noised fine-tuned (t=100), region",
                     "diffusion": "frozen diffusion, attention-pooled, region", "anatomy": "anatomy features"}[mode]
            rows.append(table_row(f"{label}, {view}", *pooled(dirs, findings), findings, args.bootstrap))
            if mode == "finetune" and args.predicted_region:
                for k, d in zip(folds, dirs):
                    predicted_region_predictions(pp, results, view, k, d, findings)
                rows.append(table_row(f"{label} (predicted region), {view}",
                                      *pooled(dirs, findings, "validation_predictions_predicted_region.csv"),
                                      findings, args.bootstrap))
    if args.fov:
        for view in views:
            dirs = [work / "results_fov" / "cls" / view / "pretrained" / f"fold_{k}" for k in folds]
            rows.append(table_row(f"clean fine-tuned, whole field of view, {view}", *pooled(dirs, findings), findings,
                                  args.bootstrap))
    report = {"command": " ".join(sys.argv), "folds": folds, "views": views, "modes": modes,
              "seconds": time.perf_counter() - start, "rows": rows}
    (work / "bench_diagnosis.json").write_text(json.dumps(report, indent=1))
    text = markdown(rows, findings)
    (work / "bench_diagnosis.md").write_text(text + "\n")
    print(text)
    print(f"bench_diagnosis: {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
