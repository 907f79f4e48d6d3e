#!/usr/bin/env python
"""How visible each synthetic finding is, per size preset and view, in units of the scan's noise.

Usage::

    python benchmarks/bench_detectability.py [--sizes tiny,standard,clinical] [--cases 8] [--seed 7]
                                             [--joint knee] [--json out.json]

For each size preset, finding and view, over CASES training cases of SEED (every case has every view): the
case rendered noise-free with the finding on and off, on crops of 20 mm around it
(``orthodiff_auto.synthetic.detectability``). Reported per row, medians over the cases: voxels with
|D| > 1 sigma and > 2 sigma (the fewest over the cases in brackets), the peak |D| / sigma, the number of cases
with at least 10 voxels above 2 sigma, and the lesion-to-anatomical-variation ratio (norm of D against the norm
of the difference to the next case of the same site, in a 20 mm box around the lesion). Then the visibility rule (every finding on its best view,
effusion and findings without one on every view, in >= 90% of cases) per preset. Prints markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orthodiff_auto.data.views import VIEWS  # noqa: E402
from orthodiff_auto.synthetic import SIZES, get_joint, sample_case  # noqa: E402
from orthodiff_auto.synthetic.detectability import MIN_VOXELS, measure_case, rule_failures, rule_views  # noqa: E402

OTHER_CASE_SEARCH = 12  # how far to look for another case of the same site


def other_case_of_same_site(seed: int, index: int, size: str, joint: str, spec):
    for step in range(1, OTHER_CASE_SEARCH + 1):
        other = sample_case(seed, index + step, "train", size, joint=joint)
        if other.site == spec.site:
            return other
    return None


def measure_preset(size: str, n_cases: int, seed: int, joint: str) -> dict:
    """{finding: [per-case {view: ViewDetectability}]} and the seconds it took."""
    findings = get_joint(joint).findings
    per_case: dict[str, list] = {f: [] for f in findings}
    t0 = time.perf_counter()
    for index in range(n_cases):
        spec = sample_case(seed, index, "train", size, joint=joint)
        other = other_case_of_same_site(seed, index, size, joint, spec)
        for finding in findings:
            per_case[finding].append(measure_case(spec, finding, other=other))
    return dict(per_case=per_case, seconds=time.perf_counter() - t0)


def summary_rows(size: str, joint: str, per_case: dict) -> list[dict]:
    rows = []
    for finding, cases in per_case.items():
        for view in VIEWS:
            got = [c[view] for c in cases if view in c]
            ratios = [g.lesion_to_anatomy for g in got if g.lesion_to_anatomy is not None]
            rows.append(dict(
                size=size, finding=finding, view=view, rule_view=view in rule_views(joint, finding),
                median_voxels_1_sigma=float(np.median([g.voxels_above_1_sigma for g in got])),
                median_voxels_2_sigma=float(np.median([g.voxels_above_2_sigma for g in got])),
                min_voxels_2_sigma=int(min(g.voxels_above_2_sigma for g in got)),
                median_peak_sigmas=float(np.median([g.peak_sigmas for g in got])),
                cases_visible=int(sum(g.visible for g in got)), cases=len(got),
                median_lesion_to_anatomy=float(np.median(ratios)) if ratios else None))
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| preset | finding | view | voxels > 1 sigma | voxels > 2 sigma (min) | peak / sigma | "
             f"cases >= {MIN_VOXELS} voxels > 2 sigma | lesion / anatomy |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        view = f"**{r['view']}**" if r["rule_view"] else r["view"]
        ratio = "-" if r["median_lesion_to_anatomy"] is None else f"{r['median_lesion_to_anatomy']:.2f}"
        lines.append(f"| {r['size']} | {r['finding']} | {view} | {r['median_voxels_1_sigma']:.0f} | "
                     f"{r['median_voxels_2_sigma']:.0f} ({r['min_voxels_2_sigma']}) | {r['median_peak_sigmas']:.1f} | "
                     f"{r['cases_visible']}/{r['cases']} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="tiny,standard,clinical", help=f"comma-separated presets ({', '.join(SIZES)})")
    ap.add_argument("--cases", type=int, default=8, help="training cases per preset (default 8)")
    ap.add_argument("--seed", type=int, default=7, help="dataset seed (default 7)")
    ap.add_argument("--joint", default="knee", help="knee, ankle or shoulder (default knee)")
    ap.add_argument("--json", type=Path, default=None, help="also write every row and the rule's verdict here")
    args = ap.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown or args.cases < 1:
        print(f"bench_detectability: unknown size {unknown} (choose from {', '.join(SIZES)}) or --cases < 1",
              file=sys.stderr)
        return 2
    load = os.getloadavg()
    print(f"# detectability: {args.joint}, seed {args.seed}, {args.cases} cases, "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n", flush=True)
    rows, verdicts = [], {}
    for size in sizes:
        got = measure_preset(size, args.cases, args.seed, args.joint)
        rows += summary_rows(size, args.joint, got["per_case"])
        verdicts[size] = rule_failures(args.joint, got["per_case"])
        print(f"{size}: measured in {got['seconds']:.0f} s", file=sys.stderr, flush=True)
    print(markdown(rows))
    print("\nBold: the view(s) the rule asks for. Rule (every finding visible on them in >= 90% of cases):")
    for size, failures in verdicts.items():
        print(f"- {size}: " + ("holds" if not failures else "fails: " + "; ".join(f"{f} ({why})"
                                                                                   for f, why in failures.items())))
    if args.json:
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(dict(joint=args.joint, seed=args.seed, cases=args.cases, rows=rows,
                                       rule_failures=verdicts), indent=1))
        tmp.replace(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
