"""How long the command line takes to answer, beside the import of TRL's GRPO trainer, in the same process.

    python benchmarks/cli_startup.py                # best of 7 runs each; JSON to benchmarks/results/cli_startup.json

Each command runs as a fresh subprocess (`python -m prerl_trl ...`, as the console script does), so that every run pays
Python's start-up and imports from a warm file cache; the commands alternate, and the best (least disturbed) wall time
of each is kept. The reference is `python -c "import trl.trainer.grpo_trainer"`: what `--help` cost while importing
the package imported the training stack. Target: `--help` in under half its time.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REFERENCE = "import trl.trainer.grpo_trainer"
COMMANDS = {
    "prerl-trl --help": ["-m", "prerl_trl", "--help"],
    "prerl-trl --version": ["-m", "prerl_trl", "--version"],
    "prerl-trl configs": ["-m", "prerl_trl", "configs"],
    "prerl-trl configs --recipe NAME": ["-m", "prerl_trl", "configs", "--recipe", "dsrl_qwen3_4b_math"],
    REFERENCE: ["-c", REFERENCE],
}


def wall_time(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="runs of each command (best kept; default 7)")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "cli_startup.json")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be >= 1 (got {args.runs})")
    for command in COMMANDS.values():  # warm the file cache (and byte-compile) once, untimed
        wall_time(command)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for round_ in range(args.runs):
        names = list(COMMANDS)
        names = names[round_ % len(names):] + names[:round_ % len(names)]  # rotate the order every round
        for name in names:
            times[name].append(wall_time(COMMANDS[name]))
    best = {name: min(values) for name, values in times.items()}
    reference = best[REFERENCE]
    print(f"{'command':<34} {'best s':>7} {'x import':>9}")
    for name, seconds in best.items():
        print(f"{name:<34} {seconds:7.3f} {seconds / reference:9.3f}")
    ratio = best["prerl-trl --help"] / reference
    print(f"--help takes {ratio:.3f}x the time of `{REFERENCE}` (target < 0.5): {'met' if ratio < 0.5 else 'NOT met'}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "reference": REFERENCE, "runs": args.runs, "best_seconds": best, "all_seconds": times,
        "ratio_to_reference": {name: seconds / reference for name, seconds in best.items()},
        "help_ratio": ratio, "target": 0.5, "met": ratio < 0.5,
        "python": platform.python_version(), "machine": platform.machine(), "processor": platform.processor(),
    }, indent=1))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
