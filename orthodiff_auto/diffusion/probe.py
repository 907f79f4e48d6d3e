"""Choose, per view, the timestep and block whose frozen diffusion features predict the findings best.

OrthoDiffusion reads features of the frozen denoiser at a fixed timestep from a named block, both picked by
hand. ``orthodiff probe`` picks them by cross-validated linear probing instead: for every training case of
the view (its classification input, whole field of view, no augmentation), the input noised at each
candidate timestep with one fixed seeded noise goes through the frozen EMA denoiser once; hooks collect every
candidate block's output, globally average-pooled (``diffusion.features``). Per (timestep, block), an
L2-regularised multi-label logistic regression (full batch, L-BFGS, features standardised on the training
folds) is fitted on each of the project's 5 folds (``splits.json``) and predicts its held-out cases; the score
is the macro AUROC over the findings of the pooled out-of-fold predictions. The best pair, with the whole
table, goes to ``probe.json`` beside the view's pretraining outputs, and every case's pooled features to
``probe_features.npz``.

``probe.json``'s choice uses every fold's labels, so it is a description of the pretrained model, never a
model selection: a classifier of fold k chooses its own timestep and block with ``fold_choice``, scoring the
same table by inner cross-validation over fold k's training cases only (the project's other folds), so fold
k's validation labels play no part in what fold k is validated with.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from orthodiff_auto.data.preprocessed import load_findings
from orthodiff_auto.diffusion.features import (
    DEFAULT_NOISE_SEED,
    candidate_blocks,
    load_frozen_denoiser,
    noised,
    pooled_block_outputs,
)
from orthodiff_auto.diffusion.run import output_dir_for
from orthodiff_auto.errors import UserInputError
from orthodiff_auto.plans.schema import Plans
from orthodiff_auto.preprocessing.classification_input import InputLoader, ViewInput
from orthodiff_auto.preprocessing.storage import PreprocessedDataset
from orthodiff_auto.training.classification_metrics import auroc_scores
from orthodiff_auto.training.device import autocast_for, resolve_device
from orthodiff_auto.training.fold import SPLITS_JSON, training_cases_and_findings
from orthodiff_auto.training.splits import load_or_create_splits
from orthodiff_auto.utils.atomic import atomic_path, write_json_atomic

PROBE_JSON = "probe.json"
PROBE_FEATURES = "probe_features.npz"
PROBE_FORMAT = "orthodiff_auto.probe/1"
DEFAULT_TIMESTEPS = (50, 100, 200, 400)
# inverse regularisation strength C = 1 / l2 as in the usual logistic regression (0.5 |w|^2 + C * sum of losses)
DEFAULT_L2 = 1.0

Fold = tuple[np.ndarray, np.ndarray]  # (training rows, held-out rows)


# ---------------------------------------------------------------- probe.json

@dataclass(frozen=True)
class ProbeRow:
    timestep: int
    block: str
    channels: int
    macro_auroc: float | None  # None: no finding has both classes
    per_finding_auroc: dict[str, float | None]


@dataclass(frozen=True)
class ProbeChoice:
    timestep: int
    block: str
    macro_auroc: float


@dataclass(frozen=True)
class ProbeResult:
    view: str
    findings: list[str]
    timesteps: list[int]
    blocks: list[str]
    rows: list[ProbeRow]
    choice: ProbeChoice
    num_cases: int
    num_folds: int
    l2: float
    noise_seed: int
    input: dict[str, Any]  # ViewInput.to_dict(): spacing and size of the classification input
    denoiser_checkpoint: str
    encoder_checkpoint: str
    encoder_sha256: str
    pretrain_iterations: int
    seconds: dict[str, float] = field(default_factory=dict)
    format: str = PROBE_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ProbeResult":
        d = dict(d)
        d["rows"] = [ProbeRow(**r) for r in d["rows"]]
        d["choice"] = ProbeChoice(**d["choice"])
        return cls(**d)


def read_probe(path: Path | str) -> ProbeResult:
    """probe.json; UserInputError naming the file when it is missing or not a probe result."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: not found — run `orthodiff probe PREPROCESSED_DIR VIEW` first")
    try:
        d = json.loads(path.read_text())
        if d.get("format") != PROBE_FORMAT:
            raise ValueError(f"format {d.get('format')!r}, expected {PROBE_FORMAT!r}")
        return ProbeResult.from_dict(d)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise UserInputError(f"{path}: invalid probe result ({e})") from None


# ---------------------------------------------------------------- linear probe

def standardize(train: torch.Tensor, other: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both standardised with the training rows' mean and standard deviation per feature."""
    mean, std = train.mean(0), train.std(0, unbiased=False).clamp_min(1e-8)
    return (train - mean) / std, (other - mean) / std


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float = DEFAULT_L2,
                 max_iter: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """(w (D, F), b (F,)) of one L2-regularised logistic regression per label column of ``y`` (N, F), fitted
    together (the objective is a sum of independent ones) by full-batch L-BFGS in float64:
    mean BCE + l2 / (2 N) * |w|^2, i.e. 0.5 |w|^2 + C * sum of BCE with C = 1 / l2."""
    x, y = x.double(), y.double()
    n = x.shape[0]
    w = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(y.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20, tolerance_grad=1e-9,
                            tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ w + b, y, reduction="sum") / n + 0.5 * l2 / n * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


def cross_validated_probabilities(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, folds: Sequence[Fold],
                                  l2: float = DEFAULT_L2) -> np.ndarray:
    """Out-of-fold probabilities (N, F): each fold's held-out rows predicted by a probe fitted on its training
    rows (standardised with their statistics). Every row must be held out by exactly one fold."""
    x, y = torch.tensor(np.asarray(x), dtype=torch.float64), torch.tensor(np.asarray(y), dtype=torch.float64)
    out = np.full(tuple(y.shape), np.nan)
    for train, held_out in folds:
        if len(held_out) == 0:
            continue
        if len(train) == 0:
            raise ValueError("a fold with held-out rows has no training rows")
        tr, ho = torch.as_tensor(train, dtype=torch.long), torch.as_tensor(held_out, dtype=torch.long)
        z_train, z_held = standardize(x[tr], x[ho])
        w, b = fit_logistic(z_train, y[tr], l2)
        out[held_out] = torch.sigmoid(z_held @ w + b).numpy()
    if np.isnan(out).any():
        raise ValueError("some rows are held out by no fold")
    return out


# ---------------------------------------------------------------- the probe

def probe_folds(splits: Sequence[dict[str, list[str]]], case_ids: Sequence[str]) -> list[Fold]:
    """The project's folds as row indices into ``case_ids`` (cases of other views left out)."""
    row = {c: i for i, c in enumerate(case_ids)}
    folds = []
    for s in splits:
        train = np.array([row[c] for c in s["train"] if c in row], dtype=np.int64)
        held_out = np.array([row[c] for c in s["val"] if c in row], dtype=np.int64)
        if len(held_out):
            folds.append((train, held_out))
    return folds


def extract_probe_features(frozen, inputs: Callable[[str], np.ndarray], case_ids: Sequence[str],
                           timesteps: Sequence[int], blocks: Sequence[str], device: torch.device,
                           noise_seed: int, log: Callable[[str], None] = print) -> dict[tuple[int, str], np.ndarray]:
    """{(t, block): (N, C)} pooled features of every case; one forward pass per case and timestep reads all
    blocks. ``inputs(case_id)`` gives the case's (1, *size) classification input."""
    model = frozen.model.to(device)
    ab = frozen.alphas_cumprod.to(device)
    divisor = frozen.architecture.shape_divisor
    rows: dict[tuple[int, str], list[torch.Tensor]] = {(t, b): [] for t in timesteps for b in blocks}
    start = time.perf_counter()
    for i, case in enumerate(case_ids):
        x0 = torch.from_numpy(np.asarray(inputs(case), dtype=np.float32))[None].to(device)
        for t in timesteps:
            x_t, tt = noised(x0, t, noise_seed, ab, divisor)
            with autocast_for(device):
                pooled = pooled_block_outputs(model, x_t, tt, blocks)
            for b, v in pooled.items():
                rows[(t, b)].append(v[0].double().cpu())
        if (i + 1) % 25 == 0 or i + 1 == len(case_ids):
            log(f"features of {i + 1}/{len(case_ids)} cases ({time.perf_counter() - start:.1f} s)")
    return {k: torch.stack(v).numpy() for k, v in rows.items()}


def score_table(features: dict[tuple[int, str], np.ndarray], labels: np.ndarray, folds: Sequence[Fold],
                findings: Sequence[str], l2: float = DEFAULT_L2) -> list[ProbeRow]:
    """One row per (timestep, block): out-of-fold macro and per-finding AUROC of the linear probe."""
    rows = []
    for (t, block), x in features.items():
        macro, per = auroc_scores(labels, cross_validated_probabilities(x, labels, folds, l2), findings)
        rows.append(ProbeRow(int(t), block, int(x.shape[1]), _or_none(macro), {f: _or_none(v) for f, v in per.items()}))
    return rows


def choose(rows: Sequence[ProbeRow]) -> ProbeChoice:
    """The row with the highest macro AUROC; ties go to the earlier row (smaller timestep: less noise)."""
    scored = [r for r in rows if r.macro_auroc is not None]
    if not scored:
        raise ValueError("no row has a defined macro AUROC")
    best = max(scored, key=lambda r: r.macro_auroc)  # max keeps the first of equal values
    return ProbeChoice(best.timestep, best.block, best.macro_auroc)


def format_table(result: ProbeResult) -> str:
    """The probe table as text, the chosen row marked with '*'."""
    header = ["t", "block", "channels", "macro AUROC", *result.findings]
    lines = [header]
    for r in result.rows:
        mark = "*" if (r.timestep, r.block) == (result.choice.timestep, result.choice.block) else " "
        lines.append([f"{mark}{r.timestep}", r.block, str(r.channels), _fmt(r.macro_auroc),
                      *[_fmt(r.per_finding_auroc[f]) for f in result.findings]])
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.rjust(w) if i != 1 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
                     for row in lines)


def _or_none(v: float) -> float | None:
    return None if v is None or math.isnan(v) else float(v)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def parse_timesteps(text: str, num_timesteps: int) -> list[int]:
    """"50,100,200" -> sorted unique ints, each in [0, T)."""
    try:
        values = sorted({int(s) for s in str(text).split(",") if s.strip()})
    except ValueError:
        raise UserInputError(f"--timesteps {text!r}: expected comma-separated integers") from None
    bad = [t for t in values if not 0 <= t < num_timesteps]
    if not values or bad:
        raise UserInputError(f"--timesteps {text!r}: need at least one timestep, each in [0, {num_timesteps}) "
                             f"(the pretraining's T)")
    return values


def parse_blocks(text: str | None, known: Sequence[str]) -> list[str]:
    """Comma-separated module paths (default: every candidate block), each one of ``known``."""
    if not text:
        return list(known)
    blocks = list(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    unknown = [b for b in blocks if b not in known]
    if not blocks or unknown:
        raise UserInputError(f"--blocks: unknown {unknown or text!r}; choose from {list(known)}")
    return blocks


def run_probe(preprocessed_dir: Path | str, view: str, results: Path | str | None = None,
              timesteps: str | Sequence[int] = DEFAULT_TIMESTEPS, blocks: str | None = None, device: str | None = None,
              l2: float = DEFAULT_L2, noise_seed: int | None = None, log: Callable[[str], None] = print) -> ProbeResult:
    """Probe one view and write ``RESULTS/pretrain/VIEW/probe.json``; returns the result."""
    pp = Path(preprocessed_dir)
    if not pp.is_dir():
        raise UserInputError(f"{pp}: preprocessed folder not found")
    if l2 <= 0:
        raise UserInputError(f"--l2 must be > 0, got {l2}")
    plans = Plans.load(pp / "plans.json")
    cls_plan = plans.view(view).classification
    dataset = PreprocessedDataset(pp, view)
    cases = dataset.case_ids(subset="train")
    if not cases:
        raise UserInputError(f"{dataset.folder}: no preprocessed training scans of view {view!r} to probe on")
    findings, table = load_findings(pp, plans.findings, cases)
    out_dir = output_dir_for(pp, view, results)
    frozen = load_frozen_denoiser(out_dir, view)
    ts = parse_timesteps(",".join(map(str, timesteps)) if not isinstance(timesteps, str) else timesteps,
                         frozen.timesteps)
    names = parse_blocks(blocks, candidate_blocks(frozen.model))
    noise_seed = DEFAULT_NOISE_SEED if noise_seed is None else int(noise_seed)
    dev = resolve_device(device)

    all_cases, split_table = training_cases_and_findings(pp, plans)
    splits = load_or_create_splits(pp / SPLITS_JSON, all_cases, split_table, plans.findings)
    folds = probe_folds(splits, cases)
    if any(len(train) == 0 for train, _ in folds):
        raise UserInputError(f"{pp / SPLITS_JSON}: a fold holds out {view} cases but trains on none of them")
    labels = table.loc[cases, findings].to_numpy(dtype=np.float64)

    spec = ViewInput.from_plan(view, cls_plan)
    loader = InputLoader(pp, {view: spec}, cache_bytes=0, ignore_label=plans.ignore_label)  # each case is read once
    log(f"probe {view}: {len(cases)} cases, findings {findings}, timesteps {ts}, {len(names)} blocks, "
        f"input {list(spec.input_size)} at {list(spec.spacing)} mm, denoiser {frozen.checkpoint} "
        f"({frozen.iterations} iterations), device {dev}")
    start = time.perf_counter()
    features = extract_probe_features(frozen, lambda c: loader.load(view, c), cases, ts, names, dev, noise_seed, log)
    extracted = time.perf_counter()
    rows = score_table(features, labels, folds, findings, l2)
    try:
        choice = choose(rows)
    except ValueError:
        raise UserInputError(f"{pp / 'findings.csv'}: no finding has both positive and negative cases among the "
                             f"{len(cases)} {view} training cases; the probe cannot rank anything") from None
    result = ProbeResult(
        view=view, findings=list(findings), timesteps=ts, blocks=names, rows=rows, choice=choice,
        num_cases=len(cases), num_folds=len(folds), l2=float(l2), noise_seed=noise_seed, input=spec.to_dict(),
        denoiser_checkpoint=str(frozen.checkpoint.resolve()), encoder_checkpoint=str(frozen.encoder_checkpoint.resolve()),
        encoder_sha256=frozen.encoder_sha256, pretrain_iterations=frozen.iterations,
        seconds={"features": extracted - start, "probes": time.perf_counter() - extracted},
    )
    write_probe_features(out_dir / PROBE_FEATURES, cases, features, labels)
    write_json_atomic(out_dir / PROBE_JSON, result.to_dict())
    log(format_table(result))
    log(f"chosen: t={choice.timestep}, {choice.block} (out-of-fold macro AUROC {choice.macro_auroc:.3f}); "
        f"wrote {out_dir / PROBE_JSON}")
    return result


def write_probe_features(path: Path, cases: Sequence[str], features: dict[tuple[int, str], np.ndarray],
                         labels: np.ndarray) -> None:
    """Every case's pooled features per (timestep, block), with the labels they were scored against."""
    arrays = {f"t{t}|{block}": np.asarray(x, dtype=np.float64) for (t, block), x in features.items()}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, case_ids=np.asarray(list(cases)), labels=np.asarray(labels), **arrays)


def read_probe_features(path: Path) -> tuple[list[str], np.ndarray, dict[tuple[int, str], np.ndarray]]:
    if not Path(path).is_file():
        raise UserInputError(f"{path}: not found — run `orthodiff probe` for this view first")
    with np.load(path, allow_pickle=False) as z:
        features = {(int(k.split("|", 1)[0][1:]), k.split("|", 1)[1]): z[k] for k in z.files if "|" in k}
        return [str(c) for c in z["case_ids"]], z["labels"], features


def fold_choice(pretrain_dir: Path | str, train_cases: Sequence[str], splits: Sequence[dict[str, list[str]]],
                findings: Sequence[str], l2: float = DEFAULT_L2) -> tuple[ProbeChoice, list[ProbeRow]]:
    """The (timestep, block) whose pooled features predict the findings best by inner cross-validation over
    ``train_cases`` alone: each project fold's validation cases among them held out in turn (a fold's outer
    validation cases are not in ``train_cases``, so they play no part). Reads the probe's stored features."""
    pretrain_dir = Path(pretrain_dir)
    cases, labels, features = read_probe_features(pretrain_dir / PROBE_FEATURES)
    row = {c: i for i, c in enumerate(cases)}
    missing = [c for c in train_cases if c not in row]
    if missing:
        raise UserInputError(f"{pretrain_dir / PROBE_FEATURES}: no features of training cases {missing[:5]} (the "
                             "probe ran on other cases); run `orthodiff probe` again")
    keep = np.array([row[c] for c in train_cases], dtype=np.int64)
    inner = [f for f in probe_folds(splits, list(train_cases)) if len(f[0])]
    if not inner:
        raise UserInputError("no inner folds to choose the timestep and block with")
    rows = score_table({k: x[keep] for k, x in features.items()}, labels[keep], inner, findings, l2)
    try:
        return choose(rows), rows
    except ValueError:
        raise UserInputError("no finding has both classes among the fold's training cases: the timestep and block "
                             "cannot be chosen") from None


__all__ = [
    "DEFAULT_L2", "DEFAULT_TIMESTEPS", "PROBE_FEATURES", "fold_choice", "read_probe_features", "write_probe_features", "PROBE_FORMAT", "PROBE_JSON", "ProbeChoice", "ProbeResult", "ProbeRow",
    "choose", "cross_validated_probabilities", "extract_probe_features", "fit_logistic",
    "format_table", "parse_blocks", "parse_timesteps", "probe_folds", "read_probe", "run_probe", "score_table",
    "standardize",
]
