"""Single-view vs fused abnormality classification on the synthetic knee dataset, end to end.

    python benchmarks/bench_classification_fusion.py --work WORK [--cases 60] [--size demo] [--config demo]
        [--folds 0] [--fusion gate,stacked,concat] [--budget cpu] [--set KEY=VALUE ...] [--fused-set KEY=VALUE ...]
        [--fused-init auto|scratch] [--results-suffix _NAME]

Steps (each skipped when its output already exists, so an interrupted run continues):
  1. ``orthodiff generate_synthetic WORK/raw --cases N --size SIZE``
  2. ``orthodiff plan_and_preprocess WORK/raw --out WORK/pp --budget BUDGET``
  3. ``orthodiff train_fold WORK/pp cls VIEW FOLD`` for every planned view and fold, then per fold
     ``orthodiff train_fold WORK/pp cls fused FOLD`` per fusion mode (gate/concat: branches start from the
     single-view models, or from scratch with ``--fused-init scratch``; stacked: the single-view models are the
     branches and the gate is fitted on the other folds' out-of-fold predictions, so it needs all five folds)
  4. AUROC per finding and macro, per model, on the validation predictions of all the folds run (pooled), the
     gate weights per finding (mean over folds) of the gate and stacked modes, and whether each finding's
     largest gate weight is on the view the generator renders it best in
     (``orthodiff_auto.synthetic.BEST_VIEW``; findings without one, e.g. effusion, are visible in every view).

Writes WORK/bench_classification_fusion.json and prints a markdown table. Each fusion mode trains under its
own results folder (WORK/results_<mode>, holding copies of the single-view checkpoints it starts from, and for
stacked also of their validation predictions).

    python benchmarks/bench_classification_fusion.py --work WORK --base reference-anatomy --clinical-signal
        [--cases 150] [--size demo] [--bootstrap 1000]

The fusion heads on out-of-fold logits (``classification.mpae``, ``oof_fusion``), with cheap base classifiers
instead of CNNs: per view, an L2 logistic regression per finding (scikit-learn, standardised features, C =
``--base-c``) on features of the reference label maps (benchmarks/reference_anatomy_features.py), fitted
out of fold on the project's five case-level stratified splits. On those OOF view logits, each row is scored
out of fold too: single views (and each with the clinical branch), the stacked gate, MPAE, each with and
without clinical data, clinical data alone, and the fusion chosen inside each fold (``nested_choice``).
Pooled AUROC per finding, and the macro AUROC's difference from the best single view with a paired
bootstrap 95% interval (cases resampled, ``--bootstrap`` times). Writes WORK/bench_fusion_heads.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def sh(*args: str) -> None:
    print("$", " ".join(args), flush=True)
    subprocess.run(list(args), check=True)


def orthodiff(*args: str) -> None:
    sh(sys.executable, "-m", "orthodiff_auto", *args)


def train_fused(pp: Path, results: Path, fold: int, preset: str, overrides: list[str], fused_init: str) -> None:
    """``train_fold cls fused``; ``fused_init`` through --set when the training config has that field, else
    through the Python API."""
    from orthodiff_auto.training.config import TrainingConfig

    if fused_init == "auto" or "fused_init" in TrainingConfig.__dataclass_fields__:
        extra = [] if fused_init == "auto" else [f"fused_init={fused_init}"]
        orthodiff("train_fold", str(pp), "cls", "fused", str(fold), "--config", preset, "--results", str(results),
                  *sum((["--set", o] for o in overrides + extra), []))
        return
    code = (
        "import sys; from pathlib import Path\n"
        "from orthodiff_auto.classification.config import ClassificationConfig\n"
        "from orthodiff_auto.classification.run import train_classification_fold\n"
        "from orthodiff_auto.plans.schema import Plans\n"
        "from orthodiff_auto.training.config import make_config\n"
        "from orthodiff_auto.training.fold import FoldRequest\n"
        "pp, results, fold, init, preset = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]\n"
        "config = make_config(preset, sys.argv[6:])\n"
        "request = FoldRequest(pp, 'cls', 'fused', fold, config, results_dir=results)\n"
        "train_classification_fold(request, Plans.load(pp / 'plans.json'),"
        " cls_config=ClassificationConfig.from_training(config, fused_init=init))\n"
    )
    sh(sys.executable, "-c", code, str(pp), str(results), str(fold), fused_init, preset, *overrides)


def pooled_auroc(folds_dirs: list[Path], findings: list[str]) -> dict:
    from orthodiff_auto.classification.metrics_io import read_validation_predictions
    from orthodiff_auto.training.classification_metrics import auroc

    probs, labels = [], []
    for d in folds_dirs:
        _, p, y = read_validation_predictions(d / "validation_predictions.csv", findings)
        probs.append(p)
        labels.append(y)
    p, y = np.concatenate(probs), np.concatenate(labels)
    per = {f: auroc(y[:, i], p[:, i]) for i, f in enumerate(findings)}
    values = [v for v in per.values() if not np.isnan(v)]
    return {"n_cases": int(len(y)), "per_finding": per, "macro": float(np.mean(values)) if values else float("nan")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--cases", type=int, default=60)
    ap.add_argument("--size", default="demo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", default="cpu")
    ap.add_argument("--config", default="demo")
    ap.add_argument("--folds", nargs="+", default=["0"], help="folds (0-4), space- or comma-separated")
    ap.add_argument("--fusion", default="gate,concat")
    ap.add_argument("--set", action="append", default=[], help="override for every training run")
    ap.add_argument("--fused-set", action="append", default=[], help="extra override for the fused runs only")
    ap.add_argument("--fused-init", default="auto", choices=("auto", "scratch"),
                    help="fused branches from the single-view models (auto) or from scratch")
    ap.add_argument("--results-suffix", default="", help="suffix of the fused results folders (compare settings)")
    ap.add_argument("-np", "--num-processes", default="2")
    ap.add_argument("--base", default="cnn", choices=("cnn", "reference-anatomy"),
                    help="base classifiers: the CNN single-view folds (default) or logistic regressions on "
                         "reference-label features, for the fusion heads on out-of-fold logits")
    ap.add_argument("--clinical-signal", action="store_true", help="generate the dataset with --clinical-signal")
    ap.add_argument("--base-c", type=float, default=0.05, help="inverse L2 strength of the base regressions")
    ap.add_argument("--bootstrap", type=int, default=1000, help="paired bootstrap resamples")
    args = ap.parse_args()

    work = args.work.resolve()
    raw, pp = work / "raw", work / "pp"
    if args.base == "reference-anatomy":
        return heads_benchmark(args, work, raw)
    timing: dict[str, float] = {}
    if not (raw / "dataset.json").is_file():
        t = time.perf_counter()
        orthodiff("generate_synthetic", str(raw), "--cases", str(args.cases), "--size", args.size, "--seed",
                  str(args.seed), "-np", args.num_processes)
        timing["generate_s"] = time.perf_counter() - t
    if not (pp / "plans.json").is_file() or not (pp / "dataset.json").is_file():
        t = time.perf_counter()
        orthodiff("plan_and_preprocess", str(raw), "--out", str(pp), "--budget", args.budget, "-np",
                  args.num_processes, "--no-progress")
        timing["plan_and_preprocess_s"] = time.perf_counter() - t
    if not (pp / "findings.csv").is_file():  # preprocessing copies it in newer versions
        shutil.copy(raw / "findings.csv", pp / "findings.csv")

    from orthodiff_auto.plans.schema import Plans

    plans = Plans.load(pp / "plans.json")
    findings = list(plans.findings)
    views = list(plans.views)
    folds = [int(f) for f in ",".join(args.folds).split(",") if f]
    fusions = [f for f in args.fusion.split(",") if f]
    results = {"single": work / "results"}
    for fusion in fusions:
        results[fusion] = work / f"results_{fusion}{args.results_suffix}"

    from orthodiff_auto.classification import readers  # noqa: F401  (names the cls run folders)
    from orthodiff_auto.training.config import make_config
    from orthodiff_auto.training.fold import FoldRequest

    def fold_dir(root: Path, name: str, fold: int, fusion: str = "gate") -> Path:
        config = make_config(args.config, [f"fusion={fusion}"])
        return FoldRequest(pp, "cls", name, fold, config, results_dir=root).output_dir()

    for fold in folds:  # every single-view fold first: the stacked gate of a fold reads the other folds'
        for view in views:
            if not (fold_dir(results["single"], view, fold) / "summary.json").is_file():
                t = time.perf_counter()
                orthodiff("train_fold", str(pp), "cls", view, str(fold), "--config", args.config, "--results",
                          str(results["single"]), *sum((["--set", o] for o in args.set), []))
                timing[f"{view}_fold{fold}_s"] = time.perf_counter() - t
    for fold in folds:
        for fusion in fusions:
            if (fold_dir(results[fusion], "fused", fold, fusion) / "summary.json").is_file():
                continue
            # with --fused-init auto the branches start from this fold's single-view models; stacked also reads
            # the other folds' validation predictions
            for view in views:
                for j in (folds if fusion == "stacked" else [fold]):
                    names = ("checkpoint_final.pt", "validation_predictions.csv") if fusion == "stacked" else (
                        "checkpoint_final.pt",)
                    for name in names:
                        src, dst = fold_dir(results["single"], view, j) / name, fold_dir(results[fusion], view, j) / name
                        dst.parent.mkdir(parents=True, exist_ok=True)
                        if not dst.is_file():
                            shutil.copy(src, dst)
            t = time.perf_counter()
            train_fused(pp, results[fusion], fold, args.config, args.set + args.fused_set + [f"fusion={fusion}"],
                        "auto" if fusion == "stacked" else args.fused_init)
            timing[f"fused_{fusion}_fold{fold}_s"] = time.perf_counter() - t

    report: dict = {"dataset": {"cases": args.cases, "size": args.size, "seed": args.seed, "budget": args.budget},
                    "config": args.config, "fused_init": args.fused_init, "overrides": args.set, "fused_overrides": args.fused_set, "folds": folds,
                    "findings": findings, "views": views, "models": {}, "timing_s": timing}
    for view in views:
        report["models"][view] = pooled_auroc([fold_dir(results["single"], view, f) for f in folds], findings)
    for fusion in fusions:
        dirs = [fold_dir(results[fusion], "fused", f, fusion) for f in folds]
        entry = pooled_auroc(dirs, findings)
        summaries = [json.loads((d / "summary.json").read_text()) for d in dirs]
        if fusion in ("gate", "stacked"):
            gates = {f: {v: float(np.mean([s["gate_weights"][f][v] for s in summaries])) for v in views} for f in findings}
            entry["gate_weights"] = gates
        if fusion == "stacked":  # AUROC of the other folds' OOF single-view logits on each fold's fitting cases
            entry["oof_auroc_fold_mean"] = {
                k: {f: float(np.nanmean([np.nan if s["stacked_gate"]["oof_auroc"][k][f] is None
                                         else s["stacked_gate"]["oof_auroc"][k][f] for s in summaries]))
                    for f in findings + ["macro"]} for k in views + ["stacked"]}
        entry["branch_auroc_fold_mean"] = {
            v: {f: float(np.nanmean([np.nan if s["branch_auroc"][v][f] is None else s["branch_auroc"][v][f]
                                     for s in summaries])) for f in findings} for v in views}
        report["models"][f"fused_{fusion}"] = entry

    try:
        from orthodiff_auto.synthetic import BEST_VIEW
    except ImportError:  # pragma: no cover
        BEST_VIEW = {}
    best_single = max(views, key=lambda v: report["models"][v]["macro"])
    report["best_single_view"] = {"view": best_single, "macro_auroc": report["models"][best_single]["macro"]}
    for fusion in fusions:
        m = report["models"][f"fused_{fusion}"]
        m["beats_best_single_view"] = bool(m["macro"] > report["best_single_view"]["macro_auroc"])
    gated = [f for f in fusions if f in ("gate", "stacked")]
    for fusion in gated:
        agree = {}
        for f, ws in report["models"][f"fused_{fusion}"]["gate_weights"].items():
            if f in BEST_VIEW:
                agree[f] = {"best_view": BEST_VIEW[f], "gate_argmax": max(ws, key=ws.get),
                            "agrees": max(ws, key=ws.get) == BEST_VIEW[f]}
        report["gate_vs_best_view" if fusion == "gate" else f"{fusion}_vs_best_view"] = agree
    out = work / f"bench_classification_fusion{args.results_suffix}.json"
    out.write_text(json.dumps(report, indent=2, default=lambda o: None if o != o else o) + "\n")

    models = list(report["models"])
    print(f"\nvalidation AUROC, folds {folds} pooled ({report['models'][views[0]]['n_cases']} cases), config {args.config}")
    print("| finding | " + " | ".join(models) + " |")
    print("|---|" + "---|" * len(models))
    for f in findings + ["macro"]:
        cells = [report["models"][m]["macro"] if f == "macro" else report["models"][m]["per_finding"][f] for m in models]
        print(f"| {f} | " + " | ".join("n/a" if c != c else f"{c:.3f}" for c in cells) + " |")
    for fusion in gated:
        print(f"\n{fusion} gate weights (mean over folds)")
        print("| finding | " + " | ".join(views) + " | generator's best view |")
        print("|---|" + "---|" * (len(views) + 1))
        for f, ws in report["models"][f"fused_{fusion}"]["gate_weights"].items():
            print(f"| {f} | " + " | ".join(f"{ws[v]:.2f}" for v in views) + f" | {BEST_VIEW.get(f, 'all')} |")
    if "stacked" in fusions:
        oof = report["models"]["fused_stacked"]["oof_auroc_fold_mean"]
        print("\nout-of-fold AUROC on the stacked gates' fitting cases (mean over folds)")
        print("| finding | " + " | ".join(oof) + " |")
        print("|---|" + "---|" * len(oof))
        for f in findings + ["macro"]:
            print(f"| {f} | " + " | ".join("n/a" if oof[k][f] != oof[k][f] else f"{oof[k][f]:.3f}" for k in oof) + " |")
    print(f"\nwrote {out}")
    return 0


def view_oof_logits(features: dict[str, np.ndarray], labels: np.ndarray, fold: np.ndarray, c: float) -> np.ndarray:
    """(N, F, V) out-of-fold logits of a per-view, per-finding logistic regression (0 where a view is absent)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    views = list(features)
    out = np.zeros((labels.shape[0], labels.shape[1], len(views)))
    for v, view in enumerate(views):
        x = features[view]
        has = np.isfinite(x).all(1)
        for k in np.unique(fold):
            train, test = has & (fold != k), has & (fold == k)
            for f in range(labels.shape[1]):
                y = labels[train, f]
                if y.min() == y.max():  # one class only: a constant logit
                    out[test, f, v] = 0.0
                    continue
                model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
                model.fit(x[train], y)
                out[test, f, v] = model.decision_function(x[test])
    return out


def paired_macro_delta(y: np.ndarray, a: np.ndarray, b: np.ndarray, n: int, seed: int = 0) -> tuple[float, float, float]:
    """Macro AUROC of scores ``a`` minus that of ``b`` on the same cases, and its paired bootstrap 95% interval
    (the same case resamples for both: ``macro_auroc_bootstrap`` draws them from the number of cases and seed)."""
    from orthodiff_auto.training.classification_metrics import macro_auroc, macro_auroc_bootstrap

    delta = macro_auroc(y, a) - macro_auroc(y, b)
    draws = macro_auroc_bootstrap(y, a, n, seed) - macro_auroc_bootstrap(y, b, n, seed)
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return float(delta), float(low), float(high)


def heads_benchmark(args, work: Path, raw: Path) -> int:
    """``--base reference-anatomy``: the fusion heads on OOF logits of cheap base classifiers (module doc)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from reference_anatomy_features import dataset_features

    from orthodiff_auto.classification.oof_fusion import FUSION_HEADS, OutOfFoldTable, cross_fit, nested_choice
    from orthodiff_auto.data.clinical import clinical_values
    from orthodiff_auto.data.dataset import load_raw_dataset
    from orthodiff_auto.training.classification_metrics import auroc, macro_auroc
    from orthodiff_auto.training.splits import make_splits

    timing: dict[str, float] = {}
    if not (raw / "dataset.json").is_file():
        t = time.perf_counter()
        orthodiff("generate_synthetic", str(raw), "--cases", str(args.cases), "--size", args.size, "--seed",
                  str(args.seed), "-np", args.num_processes, *(["--clinical-signal"] if args.clinical_signal else []))
        timing["generate_s"] = time.perf_counter() - t
    ds = load_raw_dataset(raw)
    findings = list(ds.description.findings)
    t = time.perf_counter()
    cache = work / "reference_anatomy_features.npz"
    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        cases, views = [str(c) for c in z["cases"]], [str(v) for v in z["views"]]
        feats = {v: z[f"view_{v}"] for v in views}
    else:
        cases, views, feats = dataset_features(raw)
        np.savez(cache, cases=np.array(cases), views=np.array(views), **{f"view_{v}": feats[v] for v in views})
    timing["features_s"] = time.perf_counter() - t
    labels = ds.findings.loc[cases, findings].to_numpy(dtype=np.float64)
    splits = make_splits(cases, ds.findings, findings)
    fold_of = {c: k for k, s in enumerate(splits) for c in s["val"]}
    fold = np.array([fold_of[c] for c in cases])
    t = time.perf_counter()
    logits = view_oof_logits(feats, labels, fold, args.base_c)
    timing["base_classifiers_s"] = time.perf_counter() - t
    present = np.stack([np.isfinite(feats[v]).all(1) for v in views], 1)
    clinical = clinical_values(ds.findings, cases, ds.description.clinical) if ds.description.clinical else None
    table = OutOfFoldTable(cases, findings, views, logits, present, labels, fold, clinical, ds.description.clinical)

    rows: dict[str, np.ndarray] = {v: logits[:, :, i] for i, v in enumerate(views)}
    t = time.perf_counter()
    heads = [m for m in FUSION_HEADS.values() if clinical is not None or not m.clinical]
    for mode in heads:
        rows[mode.name] = cross_fit(mode, table)
    if clinical is not None:
        for i, v in enumerate(views):  # one view plus the clinical branch
            only = np.zeros_like(present)
            only[:, i] = present[:, i]
            rows[f"{v}+clinical"] = cross_fit(FUSION_HEADS["stacked+clinical"], OutOfFoldTable(
                **{**table.__dict__, "present": only}))
        nothing = np.zeros_like(present)  # no view at all: the tabular branch alone
        rows["clinical only"] = cross_fit(FUSION_HEADS["stacked+clinical"], OutOfFoldTable(
            **{**table.__dict__, "present": nothing}))
    choice = nested_choice(heads, table)
    rows["chosen in each fold"] = choice.logits
    timing["heads_s"] = time.perf_counter() - t
    np.savez(work / "bench_fusion_heads_scores.npz", labels=labels, fold=fold,
             **{name.replace(" ", "_"): v for name, v in rows.items()})
    best_view = max(views, key=lambda v: macro_auroc(labels, rows[v]))
    report: dict = {"dataset": {"cases": len(cases), "size": args.size, "seed": args.seed,
                                "clinical_signal": bool(args.clinical_signal)},
                    "base": {"features": "reference label maps", "C": args.base_c}, "findings": findings,
                    "views": views, "best_single_view": best_view, "chosen": choice.chosen,
                    "inner_scores": choice.inner_scores, "rows": {}, "timing_s": timing}
    for name, scores in rows.items():
        delta, low, high = paired_macro_delta(labels, scores, rows[best_view], args.bootstrap)
        report["rows"][name] = {"macro": macro_auroc(labels, scores),
                                "per_finding": {f: auroc(labels[:, i], scores[:, i]) for i, f in enumerate(findings)},
                                "delta_vs_best_view": delta, "delta_ci": [low, high]}
    out = work / "bench_fusion_heads.json"
    out.write_text(json.dumps(report, indent=2, default=lambda o: None if o != o else o) + "\n")
    print(f"\npooled out-of-fold AUROC, {len(cases)} cases, 5 folds; delta: macro AUROC minus the best single "
          f"view's ({best_view}), paired bootstrap 95% CI ({args.bootstrap} resamples)")
    print("| model | " + " | ".join(findings) + " | macro | delta (95% CI) |")
    print("|---|" + "---|" * (len(findings) + 2))
    for name, r in report["rows"].items():
        cells = " | ".join(f"{r['per_finding'][f]:.3f}" for f in findings)
        low, high = r["delta_ci"]
        print(f"| {name} | {cells} | {r['macro']:.3f} | {r['delta_vs_best_view']:+.3f} ({low:+.3f}, {high:+.3f}) |")
    print(f"\nchosen per fold: {choice.chosen}\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
