"""Issue #24's GRPO check from `bench/grpo_ablation.py` rows: each variant's held-out pass@1
gain over the untrained control, paired over the same problems, with its standard error.

    python3 bench/grpo_paired.py out/gpu*/ablation.jsonl --control cold_start \\
        --runs seed0,seed1,seed2 --nulls permuted_seed0,permuted_seed1,permuted_seed2

Every row must come from one store (the same held-out subset, in the same order, with the same
k samples a problem: `--eval-k`). Acceptance, per #24: every run in --runs gains >= --min-gain
points with the gain >= --min-se standard errors (`stages.r1.evaluate.paired_pass_difference`),
every null control in --nulls (the permuted-reward update) moves pass@1 by at most
--null-band points, and no run's pass@k at the largest k falls below the control's. Prints a
markdown table and one PASS/FAIL line per check; exits 0 either way (the numbers go to
BENCHMARKS.md).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from deeprecipe.stages.r1.evaluate import paired_pass_difference  # noqa: E402


def read_rows(paths: list[str]) -> dict[str, dict]:
    """variant name -> its newest row over the files (a variant run again replaces the old)."""
    rows: dict[str, dict] = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[row["variant"]] = row
    return rows


def paired_table(rows: dict[str, dict], control: str) -> list[dict]:
    """One dict per variant other than the control: pass@1, gain and s.e. (points), gain / s.e.,
    pass@k at the largest k of the variant and of the control."""
    base = rows[control]
    out = []
    for name, row in rows.items():
        if name == control:
            continue
        if row["k"] != base["k"] or len(row["correct_per_problem"]) != len(
                base["correct_per_problem"]):
            raise ValueError(f"{name}: k {row['k']} on {len(row['correct_per_problem'])} "
                             f"problems, control k {base['k']} on "
                             f"{len(base['correct_per_problem'])}: not paired")
        gain, se = paired_pass_difference(row["correct_per_problem"],
                                          base["correct_per_problem"], row["k"])
        out.append({"variant": name, "steps": row.get("steps", 0), "pass@1": row["pass@1"],
                    "gain_points": 100 * gain, "se_points": 100 * se,
                    "z": gain / se if se > 0 else float("inf") if gain > 0 else 0.0,
                    "pass_at_max_k": row["pass_at_max_k"],
                    "control_pass_at_max_k": base["pass_at_max_k"]})
    return out


def acceptance(table: list[dict], runs: list[str], nulls: list[str], min_gain: float,
               min_se: float, null_band: float) -> list[tuple[bool, str]]:
    """(passed, line) for the three #24 GRPO checks over the named runs and null controls."""
    by = {r["variant"]: r for r in table}
    missing = [n for n in runs + nulls if n not in by]
    if missing:
        return [(False, f"rows missing: {', '.join(missing)}")]
    gains = [by[n] for n in runs]
    lines = [(all(r["gain_points"] >= min_gain and r["z"] >= min_se for r in gains),
              f"GRPO >= +{min_gain:g} points and >= {min_se:g} s.e. in each run: " + ", ".join(
                  f"{r['variant']} {r['gain_points']:+.1f} ({r['se_points']:.1f})" for r in gains)),
             (all(abs(by[n]["gain_points"]) <= null_band for n in nulls),
              f"permuted-reward control within +-{null_band:g} points: " + ", ".join(
                  f"{n} {by[n]['gain_points']:+.1f} ({by[n]['se_points']:.1f})" for n in nulls)),
             (all(r["pass_at_max_k"] >= r["control_pass_at_max_k"] for r in gains),
              "pass@k at the largest k not below the control's: " + ", ".join(
                  f"{r['variant']} {r['pass_at_max_k']:.3f} vs {r['control_pass_at_max_k']:.3f}"
                  for r in gains))]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", help="ablation.jsonl files of one store")
    ap.add_argument("--control", default="cold_start")
    ap.add_argument("--runs", default="", help="comma-separated GRPO variants (independent seeds)")
    ap.add_argument("--nulls", default="", help="comma-separated permuted-reward variants")
    ap.add_argument("--min-gain", type=float, default=5.0, help="points")
    ap.add_argument("--min-se", type=float, default=3.0, help="standard errors")
    ap.add_argument("--null-band", type=float, default=1.0, help="points")
    args = ap.parse_args(argv)
    table = paired_table(read_rows(args.files), args.control)
    print(f"| variant | steps | pass@1 | gain vs {args.control} (points) | s.e. | gain / s.e. "
          f"| pass@max k | {args.control} pass@max k |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in table:
        print(f"| {r['variant']} | {r['steps']} | {r['pass@1']:.3f} | {r['gain_points']:+.1f} | "
              f"{r['se_points']:.1f} | {r['z']:.1f} | {r['pass_at_max_k']:.3f} | "
              f"{r['control_pass_at_max_k']:.3f} |")
    split = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    if args.runs or args.nulls:
        for ok, line in acceptance(table, split(args.runs), split(args.nulls), args.min_gain,
                                   args.min_se, args.null_band):
            print(f"{'PASS' if ok else 'FAIL'} {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
