#!/usr/bin/env python
"""Fault injection, the long version of ``tests/reliability``: many seeded kill points, the bad-input corpus, a
full disk, two runs on one folder and pickled checkpoints, each against the command line (``python -m
orthodiff_auto`` in a subprocess) on the suite's tiny one-view synthetic dataset with the smoke training preset.

Usage::

    nice -n 10 python benchmarks/fault_injection.py [--work DIR] [--seed 0] [--renames 10] [--moments 4]
        [--double 2] [--disk 3] [--races 3] [--json results.json]

What counts as passed, per fault:
- kill -9 (``--renames`` points drawn from the reference run's renames, just before or just after one;
  ``--moments`` points drawn in seconds; ``--double`` runs killed, re-run and killed again): every final-named
  file in the output is complete after each kill, the re-run (``--continue`` where the command needs it) exits 0
  and its output's digest equals the uninterrupted run's (``tests/reliability/artifacts.py`` says what the
  digest leaves out: the content of training_log.txt and progress.png, timing fields, the run's own paths);
- control: pretrain, train_fold and plan_and_preprocess uninterrupted, against the reference auto run's same
  stage (which the kill trials of these three are compared with);
- bad input (``tests/data/test_validation.py``'s CORRUPTIONS and ``tests/reliability/corpus.py``): exit 2, the
  file and its problem on stderr, no traceback, nothing written anywhere (plan_and_preprocess); for
  predict_folder one broken file per kind beside a good scan: exit 1, each broken file named, the good case
  written, nothing written outside the output folder;
- full disk (a real write failure: RLIMIT_FSIZE with SIGXFSZ ignored, so every write past a seeded size fails
  with EFBIG, as on a full disk): exit 2 naming a file in the output folder (predict_folder: 1 with each failed
  case named) or 0 when no file reached the limit, no traceback, no incomplete final-named file, nothing written
  outside the output folder; then the same command without the limit finishes with the reference's output;
- two runs on one folder (predict_folder, auto): with the first stopped mid-way, the second exits 2 naming the
  folder and the first's PID and changes nothing, and the first then finishes with the reference's output;
  started at the same moment (``--races``), each exits 0 or 2 (the lock's message) and the output equals the
  reference's once one has finished;
- pickled checkpoints (predict_folder's model with ``--checkpoint final`` and ``best``, each poisoning the
  checkpoint that command loads as the model folder's description names it; train_fold --pretrained, pretrain
  --continue): exit 2 naming the file, and the payload never runs.

Every choice is the seed's and what the runs and the model folder say, never a directory listing's order
(``choose``; the list is printed before the trials): the same trials on every machine, except that the kill
moments in seconds are drawn within this machine's reference wall time.

Prints a table (fault, tries, passed, failed) and each failure; exits 1 when any trial failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the suite's helpers live under tests/

from tests.conftest import write_native_dataset  # noqa: E402
from tests.data.test_validation import CORRUPTIONS  # noqa: E402
from tests.reliability.artifacts import check_complete, differences  # noqa: E402
from tests.reliability.corpus import NEW_CORRUPTIONS, broken_nifti  # noqa: E402
from tests.reliability.harness import (REPO, VIEW, KillPoint, RenameKill, Suite, TimeKill, cli, cli_env,  # noqa: E402
                                       draw_points, loaded_checkpoints, output_digest, start_stopped)
from tests.reliability.test_bad_input import snapshot  # noqa: E402
from tests.reliability.test_untrusted_checkpoint import write_payload  # noqa: E402

COMMANDS = ["plan_and_preprocess", "pretrain", "train_fold", "predict_folder", "auto"]


class Table:
    def __init__(self):
        self.rows: dict[str, list[bool]] = defaultdict(list)
        self.failures: list[str] = []

    def add(self, fault: str, passed: bool, detail: str = "") -> None:
        self.rows[fault].append(passed)
        print(f"{'pass' if passed else 'FAIL'}  {fault}: {detail.splitlines()[0] if detail else ''}", flush=True)
        if not passed:
            self.failures.append(f"{fault}: {detail}")

    def text(self) -> str:
        width = max(len(k) for k in self.rows)
        lines = [f"{'fault':<{width}}  tries  passed  failed"]
        for fault, results in self.rows.items():
            lines.append(f"{fault:<{width}}  {len(results):>5}  {sum(results):>6}  {len(results) - sum(results):>6}")
        total = [r for results in self.rows.values() for r in results]
        lines.append(f"{'total':<{width}}  {len(total):>5}  {sum(total):>6}  {len(total) - sum(total):>6}")
        return "\n".join(lines)


# ---------------------------------------------------------------- what is tried

POISONED = {  # what predict_folder is asked to load -> its extra arguments
    "model checkpoint (--checkpoint final)": ("final", []),
    "model checkpoint (--checkpoint best)": ("best", ["--checkpoint", "best"]),
}


@dataclass(frozen=True)
class Choices:
    """Every trial the seed picks, drawn from what the runs and the model folder say, never from a directory
    listing's order: the same on every machine, except the kill moments (seconds drawn within this machine's
    reference wall time)."""

    kills: dict[str, list[list[KillPoint]]]  # per command: a list of kill points per trial (two: killed twice)
    disk_limits: dict[str, list[int]]  # per command: file size limits in bytes
    good_scan: str  # the good scan beside the broken files, a name in imagesTs
    poisoned: dict[str, tuple[str, list[str]]]  # what -> (checkpoint the command loads, relative to the model
    # folder; predict_folder's extra arguments)

    def lines(self) -> list[str]:
        out = [f"kill {name}: {', then '.join(p.describe() for p in points)}"
               for name, trials in self.kills.items() for points in trials]
        out += [f"full disk {name}: {limit} B" for name, limits in self.disk_limits.items() for limit in limits]
        out.append(f"good scan: {self.good_scan}")
        out += [f"poison {what}: {path} {' '.join(extra)}" for what, (path, extra) in self.poisoned.items()]
        return out


def choose(suite: Suite, args) -> Choices:
    """The trials of ``args.seed`` (the references' wall times must be known: after the control runs)."""
    rng = np.random.default_rng(args.seed)
    kills: dict[str, list[list[KillPoint]]] = {}
    for name in COMMANDS:
        reference = suite.reference(name)
        kills[name] = [[p] for p in draw_points(rng, reference, args.renames, args.moments)]
        for _ in range(args.double):
            pair = draw_points(rng, reference, 2, 0)
            rng.shuffle(pair)
            kills[name].append(pair)
    disk = {name: sorted(int(x) for x in np.exp(rng.uniform(np.log(2e3), np.log(3e6), size=args.disk)))
            for name in COMMANDS}
    good = sorted(p.name for p in (suite.inputs.raw / "imagesTs").glob("*.nii.gz"))[0]
    model = suite.inputs.work / "model"
    poisoned = {what: (str(loaded_checkpoints(model, which)[0].relative_to(model)), extra)
                for what, (which, extra) in POISONED.items()}
    return Choices(kills, disk, good, poisoned)


# ---------------------------------------------------------------- kill -9

def controls(suite: Suite, table: Table, trials: Path) -> None:
    """The commands compared with the reference auto run's stage, uninterrupted; their wall time is the one
    the kill moments are drawn within."""
    for name in COMMANDS:
        scenario, reference = suite.scenarios[name], suite.reference(name)
        if scenario.in_auto is None:
            continue
        run = trials / f"control_{name}"
        run.mkdir(parents=True)
        scenario.prepare(run)
        start = time.perf_counter()
        p = cli(scenario.args(run))
        reference.wall_s = time.perf_counter() - start
        diff = differences(reference.digest, output_digest(scenario.output(run), suite.inputs.root))
        table.add(f"control: {name} uninterrupted", p.returncode == 0 and not diff,
                  p.stderr[-500:] if p.returncode else "\n".join(diff))


MOMENT_RETRIES = 3  # a moment the run outlived is halved, at most this many times


def kill_at_moment(suite: Suite, name: str, point: TimeKill, run: Path):
    """The trial at ``point``; when the run ended before it (this run was faster than the control run the
    moment was drawn within: the machine's load varies), again in a fresh folder at half the moment, so that
    every moment trial kills something. Returns the last trial and the moments tried."""
    tried = [point]
    trial = suite.trial(name, point, run)
    while not trial.killed and len(tried) <= MOMENT_RETRIES:
        tried.append(TimeKill(round(tried[-1].seconds / 2, 2)))
        trial = suite.trial(name, tried[-1], run.parent / f"{run.name}_retry{len(tried) - 1}")
    return trial, tried


def kills(suite: Suite, table: Table, choices: Choices, trials: Path) -> None:
    for name, chosen in choices.kills.items():
        for points in chosen:
            if len(points) == 1 and isinstance(points[0], TimeKill):
                trial, tried = kill_at_moment(suite, name, points[0], trials / name)
                note = "" if len(tried) == 1 else \
                    f"\n  (moments tried: {', '.join(p.describe() for p in tried)}; the run ended before the earlier ones)"
                table.add(f"kill -9 {name} at a moment", trial.passed and trial.killed, trial.explain() + note)
                continue
            kind = "twice" if len(points) > 1 else "at a rename"
            trial = suite.trial(name, points if len(points) > 1 else points[0], trials / name)
            table.add(f"kill -9 {name} {kind}", trial.passed and trial.killed, trial.explain())


# ---------------------------------------------------------------- bad input

def bad_input(suite: Suite, table: Table, good_name: str, trials: Path) -> None:
    for corrupt in CORRUPTIONS + NEW_CORRUPTIONS:
        folder = trials / "bad" / corrupt.__name__
        shutil.rmtree(folder, ignore_errors=True)
        raw = write_native_dataset(folder / "raw", file_ending=".mha" if "voxels" in corrupt.__name__ else ".nii.gz")
        relpath, message = corrupt(raw)
        before = snapshot(folder)
        p = cli(["plan_and_preprocess", raw, "--out", folder / "out", "-np", "1", "--no-progress"])
        named = [ln for ln in p.stderr.splitlines() if relpath in ln]
        ok = (p.returncode == 2 and any(re.search(message, ln) for ln in named) and "Traceback" not in p.stderr
              and snapshot(folder) == before)
        shown = next((ln for ln in named if re.search(message, ln)), p.stderr[-600:])
        table.add("bad input: plan_and_preprocess", ok, f"{corrupt.__name__}: exit {p.returncode}: {shown}")

    folder = trials / "bad" / "predict_folder"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "in").mkdir(parents=True)
    good = suite.inputs.raw / "imagesTs" / good_name
    shutil.copy(good, folder / "in" / good.name)
    expected = broken_nifti(folder / "in", good, VIEW)
    before = snapshot(folder)
    p = cli(["predict_folder", folder / "in", folder / "out", "--model", suite.inputs.work / "model"])
    for name, message in expected.items():
        named = [ln for ln in p.stderr.splitlines() if name in ln]
        ok = p.returncode == 1 and any(re.search(message, ln) for ln in named) and not (folder / "out" / name).exists()
        shown = next((ln.strip() for ln in named if re.search(message, ln)), p.stderr[-600:])
        table.add("bad input: predict_folder (one broken file)", ok, f"exit {p.returncode}: {shown}")
    ok = ((folder / "out" / good.name).is_file() and not check_complete(folder / "out")
          and snapshot(folder, skip=folder / "out") == before and "Traceback" not in p.stderr)
    table.add("bad input: predict_folder (one broken file)", ok,
              f"{good.name} predicted beside them; {p.stdout.strip()}" if ok else p.stderr[-600:])


# ---------------------------------------------------------------- full disk

def limited(args: list, limit: int) -> subprocess.CompletedProcess:
    """The command with every file capped at ``limit`` bytes: a write past it fails with EFBIG (SIGXFSZ
    ignored), as a write fails on a full disk."""
    def cap():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-m", "orthodiff_auto", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=cli_env(), cwd=REPO, start_new_session=True, preexec_fn=cap)


def full_disk(suite: Suite, table: Table, disk_limits: dict[str, list[int]], trials: Path) -> None:
    for name, limits in disk_limits.items():
        scenario, reference = suite.scenarios[name], suite.reference(name)
        for limit in limits:
            run = trials / f"disk_{name}"
            shutil.rmtree(run, ignore_errors=True)
            run.mkdir(parents=True)
            scenario.prepare(run)
            output, written = scenario.output(run), scenario.written(run)
            before = snapshot(run, skip=written)
            p = limited(scenario.args(run), limit)
            named = [m for m in re.findall(r"(/[^\s':,]+)", p.stderr) if m.startswith(str(written))]
            expected_rc = p.returncode == 0 or (bool(named) and (p.returncode == 2 or (
                name == "predict_folder" and p.returncode == 1)))
            partial = check_complete(output) if output.exists() else []
            outside = snapshot(run, skip=written) != before
            ok = expected_rc and "Traceback" not in p.stderr and not partial and not outside
            table.add(f"full disk: {name}", ok,
                      f"limit {limit} B: exit {p.returncode}, {'named ' + named[0] if named else 'no file named'}"
                      + (f"; incomplete: {', '.join(partial)}" if partial else "")
                      + ("; wrote outside" if outside else "") + f"\n{p.stderr[-800:]}")
            again = cli(scenario.resume(run))  # --continue where the command needs it (fine on a finished run too)
            diff = [] if again.returncode else differences(reference.digest, output_digest(output, suite.inputs.root))
            table.add(f"full disk: {name}, then space again", again.returncode == 0 and not diff,
                      f"limit {limit} B: exit {again.returncode}: {again.stderr[-500:]}" + "\n".join(diff))


# ---------------------------------------------------------------- two runs on one folder

def _lock_message(stderr: str, folder: Path) -> bool:
    return re.search(rf"error: {re.escape(str(folder))}: another orthodiff run( \(PID \d+\))? is writing", stderr) \
        is not None


def concurrency(suite: Suite, table: Table, races: int, trials: Path) -> None:
    for name, stop_at in (("predict_folder", "thresholds.json"), ("auto", "preprocessed/plans.json")):
        scenario, reference = suite.scenarios[name], suite.reference(name)
        run = trials / f"second_{name}"
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir(parents=True)
        output = scenario.output(run)
        first = start_stopped(scenario.args(run), RenameKill(stop_at, 1, "after"))
        before = snapshot(output)
        second = cli(scenario.args(run))
        unchanged = snapshot(output) == before
        os.kill(first.pid, signal.SIGCONT)
        rc = first.wait(timeout=900)
        diff = differences(reference.digest, output_digest(output, suite.inputs.root))
        ok = (second.returncode == 2 and _lock_message(second.stderr, output) and f"PID {first.pid}" in second.stderr
              and unchanged and rc == 0 and not diff)
        table.add(f"second {name} while one runs", ok, f"second: exit {second.returncode} {second.stderr[-300:]}; "
                  f"first: exit {rc}; " + "; ".join(diff))
        for _ in range(races if name == "predict_folder" else max(1, races // 2)):
            shutil.rmtree(run, ignore_errors=True)
            run.mkdir(parents=True)
            procs = [subprocess.Popen([sys.executable, "-m", "orthodiff_auto", *map(str, scenario.args(run))],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=cli_env(),
                                      cwd=REPO, start_new_session=True) for _ in range(2)]
            results = [(p.wait(timeout=900), p.stderr.read()) for p in procs]
            codes = [rc for rc, _ in results]
            refused_ok = all(rc == 0 or (rc == 2 and _lock_message(err, output)) for rc, err in results)
            diff = differences(reference.digest, output_digest(output, suite.inputs.root))
            table.add(f"two {name} at once", 0 in codes and refused_ok and not diff,
                      f"exits {codes}: " + " | ".join(err[-300:] for _, err in results) + "; ".join(diff))


# ---------------------------------------------------------------- pickled checkpoints

def untrusted(suite: Suite, table: Table, poisoned: dict[str, tuple[str, list[str]]], trials: Path) -> None:
    folder = trials / "untrusted"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    marker = folder / "ran"
    shutil.copytree(suite.inputs.work / "preprocessed", folder / "pp")
    encoder = folder / "encoder.pt"
    latest = folder / "pres" / "pretrain" / VIEW / "checkpoint_latest.pt"
    latest.parent.mkdir(parents=True)
    commands = {}
    for i, (what, (checkpoint, extra)) in enumerate(poisoned.items()):
        model = folder / f"model_{i}"  # a copy each: only the checkpoint this command loads is poisoned
        shutil.copytree(suite.inputs.work / "model", model)
        commands[what] = (model / checkpoint, ["predict_folder", suite.inputs.raw / "imagesTs", folder / f"out_{i}",
                                               "--model", model, *extra])
    commands.update({
        "--pretrained": (encoder, ["train_fold", folder / "pp", "seg", VIEW, "0", "--config", "smoke", "--results",
                                   folder / "res", "--pretrained", encoder]),
        "pretrain --continue": (latest, ["pretrain", folder / "pp", VIEW, "--config", "smoke", "--results",
                                         folder / "pres", "--continue"]),
    })
    for kind in ("torch zip", "plain pickle", "custom class"):
        for what, (path, argv) in commands.items():
            write_payload(path, kind, marker)
            p = cli(argv)
            ok = p.returncode == 2 and f"error: {path}" in p.stderr and not marker.exists()
            table.add("pickled checkpoint refused", ok, f"{what} ({kind}): exit {p.returncode}: {p.stderr[-400:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/fault_injection"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--renames", type=int, default=10, help="rename kill points per command")
    parser.add_argument("--moments", type=int, default=4, help="timed kill points per command")
    parser.add_argument("--double", type=int, default=2, help="runs killed twice per command")
    parser.add_argument("--disk", type=int, default=3, help="file size limits per command")
    parser.add_argument("--races", type=int, default=3, help="predict_folder pairs started together")
    parser.add_argument("--json", type=Path, default=None, help="also write the table and failures here")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    start = time.perf_counter()
    suite = Suite.build(args.work / "inputs")
    table = Table()
    trials = args.work / "trials"
    controls(suite, table, trials)
    choices = choose(suite, args)
    print("chosen trials:\n  " + "\n  ".join(choices.lines()), flush=True)
    kills(suite, table, choices, trials)
    bad_input(suite, table, choices.good_scan, trials)
    full_disk(suite, table, choices.disk_limits, trials)
    concurrency(suite, table, args.races, trials)
    untrusted(suite, table, choices.poisoned, trials)
    print()
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, seed {args.seed}, {time.perf_counter() - start:.0f} s")
    print(table.text())
    for failure in table.failures:
        print("\nFAILED " + failure)
    if args.json:
        args.json.write_text(json.dumps({"rows": {k: [len(v), sum(v)] for k, v in table.rows.items()},
                                         "failures": table.failures}, indent=2))
    return 1 if table.failures else 0


if __name__ == "__main__":
    sys.exit(main())
