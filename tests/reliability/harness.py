"""Kill-and-resume trials over the command line, shared by ``tests/reliability`` (a few kill points) and
``benchmarks/fault_injection.py`` (many).

A scenario is one CLI command on small inputs. Its reference is an uninterrupted run: the digest of its output
(``artifacts.digest_tree``) and the renames by which it published its files (``killer --record``). A trial
starts a fresh run, kills its process group with SIGKILL at a seeded point -- just before or just after one of
the reference's renames (``RenameKill``), or some seconds after the start (``TimeKill``) -- checks that every
final-named file in the output is complete, re-runs the command (with ``--continue`` where the command needs
it) and compares the output's digest with the reference's.

To save time, ``plan_and_preprocess``, ``pretrain`` and ``train_fold`` are compared with the same stage of the
reference ``auto`` run (same budget, preset, overrides and inputs) instead of a run of their own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tests.reliability.artifacts import check_complete, differences, digest_tree

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 600
# every training run of the suite: the smoke preset (2 epochs, a checkpoint after each) with 1 step an epoch
FAST = ("iterations_per_epoch=1",)
VIEW = "sag"


def cli_env() -> dict[str, str]:
    """The environment of every command: this checkout first on the path, one thread per process (identical
    float reductions in every run, and fair to a shared machine)."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": str(REPO) + (os.pathsep + path if path else ""), "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    # a session of its own: a kill takes the command's worker processes along, and nothing else
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=timeout, env=cli_env(),
                          cwd=REPO, start_new_session=True)


def cli(args: list, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    """``python -m orthodiff_auto ARGS`` to the end."""
    return _run(["-m", "orthodiff_auto", *map(str, args)], timeout)


@dataclass(frozen=True)
class RenameKill:
    path: str  # destination, relative to the output folder
    k: int  # its k-th rename (a checkpoint is renamed onto once per epoch)
    when: str  # "before" or "after"

    def describe(self) -> str:
        return f"{self.when} rename #{self.k} onto {self.path}"


@dataclass(frozen=True)
class TimeKill:
    seconds: float

    def describe(self) -> str:
        return f"at {self.seconds:.1f} s"


KillPoint = RenameKill | TimeKill


def run_killed(args: list, point: KillPoint, timeout: float = RUN_TIMEOUT_S) -> bool:
    """Run the command and kill its process group with SIGKILL at ``point``; True when it was killed (False: it
    ended before the point)."""
    if isinstance(point, RenameKill):
        p = _run(["-m", "tests.reliability.killer", "--die", f"{point.path}:{point.k}:{point.when}", "--",
                  *map(str, args)], timeout)
        return p.returncode == -signal.SIGKILL
    proc = subprocess.Popen([sys.executable, "-m", "orthodiff_auto", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=cli_env(), cwd=REPO, start_new_session=True)
    try:
        proc.wait(timeout=point.seconds)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def start_stopped(args: list, point: RenameKill, timeout: float = 120) -> subprocess.Popen:
    """Start the command and let it run up to ``point``, where it stops itself (SIGSTOP) holding whatever it
    holds; SIGCONT lets it go on. A RuntimeError when it ends or does not reach the point in time."""
    log = tempfile.TemporaryFile()  # not a pipe: nobody reads it while the command runs
    proc = subprocess.Popen([sys.executable, "-m", "tests.reliability.killer", "--stop",
                             f"{point.path}:{point.k}:{point.when}", "--", *map(str, args)], stdout=log, stderr=log,
                            env=cli_env(), cwd=REPO, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"ended ({proc.returncode}) before {point.describe()}: {log.read()[-2000:]!r}")
        if Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T":
            return proc
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError(f"did not reach {point.describe()} in {timeout} s")


@dataclass
class Reference:
    digest: dict[str, str]
    renames: list[str]  # destinations under the output folder, relative to it, in order
    wall_s: float

    def rename_points(self) -> list[RenameKill]:
        """Every rename as two kill points (just before, just after)."""
        seen: Counter = Counter()
        points = []
        for path in self.renames:
            seen[path] += 1
            points += [RenameKill(path, seen[path], "before"), RenameKill(path, seen[path], "after")]
        return points


def output_digest(output: Path, inputs_root: Path) -> dict[str, str]:
    """The output's digest with its own path and the shared inputs' path replaced by placeholders."""
    return digest_tree(output, {str(output): "<OUT>", str(inputs_root): "<INPUTS>"})


def renames_under(recorded: list[str], output: Path) -> list[str]:
    """The recorded destinations under ``output``, relative to it, without renames onto temporary names (a
    writer that itself writes atomically, inside an atomic write: random names no other run repeats)."""
    prefix = str(output) + "/"
    return [d[len(prefix):] for d in recorded if d.startswith(prefix) and not _temporary(d)]


def _temporary(path: str) -> bool:
    name = os.path.basename(path)
    return name.startswith(".") and ".tmp" in name


def run_recording(args: list, record: Path) -> tuple[subprocess.CompletedProcess, list[str], float]:
    """An uninterrupted run that records its renames; returns (process, destinations, wall seconds)."""
    start = time.perf_counter()
    p = _run(["-m", "tests.reliability.killer", "--record", str(record), "--", *map(str, args)], RUN_TIMEOUT_S)
    wall = time.perf_counter() - start
    return p, record.read_text().splitlines() if record.is_file() else [], wall


@dataclass(frozen=True)
class Scenario:
    """One command. ``args(run)``: its arguments for a run folder; ``resume(run)``: those of the re-run after a
    kill; ``output(run)``: the folder it writes; ``prepare(run)``: what the run folder needs first;
    ``in_auto``: where the reference auto run wrote the same output (None: the scenario has its own
    reference run), ``later_stages``: files there that auto's later stages wrote; ``writes(run)``: the folder
    the command may write into (its --results root: ``output`` and the folders above it), default ``output``."""

    name: str
    args: Callable[[Path], list]
    resume: Callable[[Path], list]
    output: Callable[[Path], Path]
    prepare: Callable[[Path], None] = lambda run: None
    in_auto: Path | None = None
    later_stages: tuple[str, ...] = ()
    writes: Callable[[Path], Path] | None = None

    def written(self, run: Path) -> Path:
        return (self.writes or self.output)(run)


@dataclass
class Trial:
    scenario: str
    point: str
    killed: bool
    partial: list[str] = field(default_factory=list)  # incomplete final-named files
    resume_rc: int = 0
    resume_error: str = ""
    differences: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.partial and self.resume_rc == 0 and not self.differences

    def explain(self) -> str:
        parts = [f"{self.scenario} killed {self.point}" + ("" if self.killed else " (ended before the point)")]
        parts += [f"incomplete file: {p}" for p in self.partial]
        if self.resume_rc != 0:
            parts.append(f"re-run exit {self.resume_rc}: {self.resume_error}")
        parts += self.differences
        return "\n  ".join(parts)


def reference_run(scenario: Scenario, run: Path, inputs_root: Path) -> Reference:
    """The uninterrupted run in ``run``: its output's digest, its renames and its wall time."""
    run.mkdir(parents=True, exist_ok=True)
    scenario.prepare(run)
    output = scenario.output(run)
    p, recorded, wall = run_recording(scenario.args(run), run.parent / f".{run.name}.renames")
    if p.returncode != 0:
        raise RuntimeError(f"reference {scenario.name} failed ({p.returncode}): {p.stderr[-2000:]}")
    return Reference(output_digest(output, inputs_root), renames_under(recorded, output), wall)


def reference_in_auto(scenario: Scenario, auto_work: Path, auto_reference_renames: list[str], inputs_root: Path,
                      wall_s: float) -> Reference:
    """The reference of a stage from the reference auto run (``scenario.in_auto`` under its work folder)."""
    output = auto_work / scenario.in_auto
    prefix = str(scenario.in_auto) + "/"
    renames = [r[len(prefix):] for r in auto_reference_renames if r.startswith(prefix) and not _temporary(r)
               and r[len(prefix):] not in scenario.later_stages]
    digest = {k: v for k, v in output_digest(output, inputs_root).items() if k not in scenario.later_stages}
    return Reference(digest, renames, wall_s)


def rerun_subprocess(args: list) -> tuple[int, str]:
    """Run the command to the end in a new process; (exit code, last line of stderr)."""
    p = cli(args)
    return p.returncode, (p.stderr.strip().splitlines() or [""])[-1]


def kill_and_resume(scenario: Scenario, run: Path, point: KillPoint | list[KillPoint], reference: Reference,
                    inputs_root: Path, rerun: Callable[[list], tuple[int, str]] = rerun_subprocess) -> Trial:
    """Kill a fresh run at ``point``, check the output, re-run (``rerun``: in a new process unless the caller
    runs it in its own), check again and compare with the reference. A list of points kills the re-runs too,
    one point each, before the last re-run."""
    points = point if isinstance(point, list) else [point]
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    scenario.prepare(run)
    output = scenario.output(run)
    trial = Trial(scenario.name, ", then ".join(p.describe() for p in points), killed=False)
    for i, p in enumerate(points):
        killed = run_killed(scenario.resume(run) if trial.killed else scenario.args(run), p)
        trial.killed = trial.killed or killed
        if output.exists():
            trial.partial += [f"after kill {i + 1}: {x}" for x in check_complete(output)]
    trial.resume_rc, trial.resume_error = rerun(scenario.resume(run) if trial.killed else scenario.args(run))
    if trial.resume_rc != 0:
        return trial
    trial.partial += [f"after the re-run: {x}" for x in check_complete(output)]
    trial.differences = differences(reference.digest, output_digest(output, inputs_root))
    return trial


def draw_points(rng: np.random.Generator, reference: Reference, renames: int, moments: int = 0) -> list[KillPoint]:
    """``renames`` rename kill points (without replacement) and ``moments`` moments within the reference's
    wall time."""
    # sorted: the recorded order is the run's, which may follow a directory listing; the choice must not
    candidates = sorted(reference.rename_points(), key=lambda p: (p.path, p.k, p.when))
    chosen = sorted(rng.choice(len(candidates), size=min(renames, len(candidates)), replace=False))
    points: list[KillPoint] = [candidates[i] for i in chosen]
    points += [TimeKill(round(float(s), 2)) for s in sorted(rng.uniform(0.3, reference.wall_s, size=moments))]
    return points


def loaded_checkpoints(model: Path, checkpoint: str = "final") -> list[Path]:
    """The segmentation checkpoints ``predict_folder --model MODEL --checkpoint CHECKPOINT`` loads, in the order
    it loads them: asked of the model folder's description as the predictor asks it (``ModelDescription``,
    ``best_checkpoint_path``), never of a directory listing."""
    from orthodiff_auto.inference.model_dir import ModelDescription, best_checkpoint_path

    finals = [model / c for choice in ModelDescription.load(model).segmentation.values() for c in choice.checkpoints]
    return [best_checkpoint_path(p) for p in finals] if checkpoint == "best" else finals


# ---------------------------------------------------------------- the inputs and the five commands

@dataclass(frozen=True)
class Inputs:
    """A tiny raw dataset and an uninterrupted ``auto`` run on it, all under ``root`` (read only for trials)."""

    root: Path

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def auto_run(self) -> Path:
        return self.root / "auto"

    @property
    def work(self) -> Path:
        return self.auto_run / "work"

    @property
    def encoder(self) -> Path:
        return self.work / "results" / "pretrain" / VIEW / f"encoder_{VIEW}.pt"


def make_raw(root: Path, cases: int = 6, views: tuple[str, ...] = (VIEW,), seed: int = 3) -> Path:
    """A tiny synthetic dataset restricted to ``views`` (the suite needs one; nothing else assumes which)."""
    p = cli(["generate_synthetic", root, "--cases", cases, "--test", 2, "--unlabeled", 2, "--size", "tiny",
             "--seed", seed, "--complete", "-np", 1])
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-2000:])
    description = json.loads((root / "dataset.json").read_text())
    for folder in ("imagesTr", "labelsTr", "imagesTs", "labelsTs", "unlabeled"):
        for f in (root / folder).glob("*"):
            if not any(f.name.endswith(f"_{v}{description['file_ending']}") for v in views):
                f.unlink()
    description["views"] = list(views)
    (root / "dataset.json").write_text(json.dumps(description, indent=2))
    return root


def scenarios(inputs: Inputs) -> dict[str, Scenario]:
    sets = [a for s in FAST for a in ("--set", s)]

    def copy_preprocessed(run: Path) -> None:
        shutil.copytree(inputs.work / "preprocessed", run / "pp")

    plan = ["plan_and_preprocess", inputs.raw, "--budget", "cpu", "-np", "1", "--no-progress"]

    def pretrain(run: Path) -> list:
        return ["pretrain", run / "pp", VIEW, "--config", "smoke", "--results", run / "res", *sets]

    def train(run: Path) -> list:
        return ["train_fold", run / "pp", "seg", VIEW, "0", "--config", "smoke", "--results", run / "res",
                "--pretrained", inputs.encoder, *sets]

    def predict(run: Path) -> list:
        return ["predict_folder", inputs.raw / "imagesTs", run / "out", "--model", inputs.work / "model"]

    def auto(run: Path) -> list:
        return ["auto", inputs.raw, "--work", run / "work", "--budget", "cpu", "--config", "smoke", "--folds", "0",
                "-np", "1", "--no-frozen-features", "--no-scratch", "--all-classifiers", "-c", "3d_fullres", *sets,
                *[a for s in FAST for a in ("--pretrain-set", s)]]

    return {
        "plan_and_preprocess": Scenario("plan_and_preprocess", lambda run: [*plan, "--out", run / "pp"],
                                        lambda run: [*plan, "--out", run / "pp"], lambda run: run / "pp",
                                        in_auto=Path("preprocessed"), later_stages=("splits.json",)),
        "pretrain": Scenario("pretrain", pretrain, lambda run: [*pretrain(run), "--continue"],
                             lambda run: run / "res" / "pretrain" / VIEW, copy_preprocessed,
                             in_auto=Path("results", "pretrain", VIEW), writes=lambda run: run / "res"),
        "train_fold": Scenario("train_fold", train, lambda run: [*train(run), "--continue"],
                               lambda run: run / "res" / "seg" / VIEW / "pretrained" / "fold_0", copy_preprocessed,
                               in_auto=Path("results", "seg", VIEW, "pretrained", "fold_0"),
                               writes=lambda run: run / "res"),
        "predict_folder": Scenario("predict_folder", predict, predict, lambda run: run / "out"),
        "auto": Scenario("auto", auto, auto, lambda run: run / "work"),
    }


@dataclass
class Suite:
    """The inputs, the scenarios and a reference for each (built lazily, once)."""

    inputs: Inputs
    scenarios: dict[str, Scenario] = field(init=False)
    references: dict[str, Reference] = field(default_factory=dict)

    def __post_init__(self):
        self.scenarios = scenarios(self.inputs)

    @classmethod
    def build(cls, root: Path) -> "Suite":
        """Write the raw dataset and run the reference ``auto`` (its preprocessed folder, encoder and model
        are the other scenarios' inputs)."""
        suite = cls(Inputs(root))
        make_raw(suite.inputs.raw)
        suite.references["auto"] = reference_run(suite.scenarios["auto"], suite.inputs.auto_run, root)
        return suite

    def reference(self, name: str) -> Reference:
        if name not in self.references:
            scenario = self.scenarios[name]
            auto = self.references["auto"]
            if scenario.in_auto is not None:
                self.references[name] = reference_in_auto(scenario, self.inputs.work, auto.renames, self.inputs.root,
                                                          auto.wall_s / 2)
            else:
                self.references[name] = reference_run(scenario, self.inputs.root / f"ref_{name}", self.inputs.root)
        return self.references[name]

    def trial(self, name: str, point: KillPoint, run: Path,
              rerun: Callable[[list], tuple[int, str]] = rerun_subprocess) -> Trial:
        return kill_and_resume(self.scenarios[name], run, point, self.reference(name), self.inputs.root, rerun)
