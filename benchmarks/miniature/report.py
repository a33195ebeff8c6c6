"""Markdown tables from a results.json: `python -m benchmarks.miniature.report benchmarks/miniature/results/cpu`
(`--plot` also redraws the figure, for results written where matplotlib was missing)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .rl import LABELS


def _pm(spread: dict, digits: int = 3) -> str:
    return f"{spread['mean']:.{digits}f} ± {spread['std']:.{digits}f}"


def tables(results: dict) -> str:
    k = results["settings"]["rl"]["eval_k"]
    acc = f"avg@{k}"
    summary = results["summary"]
    ks = list(summary["base"]["pass@k"])
    head = f"| method | {acc} | " + " | ".join(f"pass@{j}" for j in ks) + " | length | transition | reflection |"
    lines = [head, "|" + " --- |" * (6 + len(ks) - 1)]
    for method in ["base", *results["runs"]]:
        s = summary[method]
        cells = [_pm(s[acc]), *(_pm(s["pass@k"][j]) for j in ks), _pm(s["response_length"], 1),
                 _pm(s["transition"]), _pm(s["reflection"])]
        lines.append(f"| {LABELS.get(method, 'base model')} | " + " | ".join(cells) + " |")
    if "levels" in summary:
        lines += ["", "| method | " + " | ".join(f"first step at {name} ({v:.3f})"
                                                 for name, v in summary["levels"].items()) + " |",
                  "| --- |" + " --- |" * len(summary["levels"])]
        for method in results["runs"]:
            steps = summary[method]["steps_to_level"]
            lines.append(f"| {LABELS[method]} | " + " | ".join(str(steps[n]) for n in summary["levels"]) + " |")
    ga = results["gradient_alignment_base"]
    lines += ["", "| pairs | inner product mean (min, max) | negative | cosine mean | cosine right / wrong |",
              "| --- | --- | --- | --- | --- |",
              f"| {ga['num_pairs']} | {ga['inner_product_mean']:+.3g} ({ga['inner_product_min']:+.3g}, "
              f"{ga['inner_product_max']:+.3g}) | {100 * ga['negative_frac']:.0f}% | {ga['cosine_mean']:.3f} | "
              f"{_num(ga['mean_cosine_correct'])} / {_num(ga['mean_cosine_wrong'])} |"]
    sweep = results.get("sweep")
    if sweep:
        lines += ["", f"Learning-rate sweep ({sweep['rule']}):", "",
                  "| method | learning rate | final " + acc + " |", "| --- | --- | --- |"]
        if sweep.get("base"):
            lines.append(f"| base model (step 0) | - | {sweep['base'][acc]:.3f} |")
        lines += [f"| {LABELS[r['method']]} | {r['learning_rate']:g} | {r['final'][acc]:.3f} |"
                  for r in sweep["rows"]]
    if "learning_rates" in results:
        lines += ["", "Learning rate per method: " + ", ".join(
            f"{LABELS[m]} {lr:g}" for m, lr in results["learning_rates"].items())]
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.miniature.report", description=__doc__)
    parser.add_argument("results_dir", type=Path, help="A folder with results.json (and sweep.json).")
    parser.add_argument("--plot", action="store_true", help="Also (re)draw miniature.png there (needs matplotlib).")
    args = parser.parse_args(argv)
    results = json.loads((args.results_dir / "results.json").read_text())
    print(tables(results))
    if args.plot:
        from .plots import plot_all

        print(f"wrote {plot_all(results, args.results_dir)[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
