"""Markdown tables from a results.json: `python -m benchmarks.miniature.report benchmarks/miniature/results/cpu`
(`--plot` also redraws the figure, for results written where matplotlib was missing). With measures.json in the
folder, the log-prob and alignment table per corpus share too."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .rl import label


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
        lines.append(f"| {'base model' if method == 'base' else label(method)} | " + " | ".join(cells) + " |")
    if "levels" in summary:
        lines += ["", "| method | " + " | ".join(f"first step at {name} ({v:.3f})"
                                                 for name, v in summary["levels"].items()) + " |",
                  "| --- |" + " --- |" * len(summary["levels"])]
        for method in results["runs"]:
            steps = summary[method]["steps_to_level"]
            lines.append(f"| {label(method)} | " + " | ".join(str(steps[n]) for n in summary["levels"]) + " |")
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
        lines += [f"| {label(r['method'])} | {r['learning_rate']:g} | {r['final'][acc]:.3f} |"
                  for r in sweep["rows"]]
    if "learning_rates" in results:
        lines += ["", "Learning rate per method: " + ", ".join(
            f"{label(m)} {lr:g}" for m, lr in results["learning_rates"].items())]
    lines += paired_table(results)
    lines += optimizer_table(results)
    return "\n".join(lines)


def _ci(p: dict | None) -> str:
    if not p:
        return "-"
    if p["half_width"] is None:
        return f"{p['mean']:+.3f} (n=1)"
    return f"{p['mean']:+.3f} ± {p['half_width']:.3f}"


def paired_table(results: dict) -> list[str]:
    """Method - GRPO in avg@k, seed by seed, at every evaluation step: mean ± half-width of the 95% t interval."""
    summary = results["summary"]
    methods = [m for m in results["runs"] if "paired_vs_grpo" in summary.get(m, {})]
    if not methods:
        return []
    steps = list(summary[methods[0]]["paired_vs_grpo"])
    n = max(p["n"] for m in methods for p in summary[m]["paired_vs_grpo"].values() if p)
    lines = ["", f"Paired difference against GRPO (method - GRPO, avg@{results['settings']['rl']['eval_k']}, same seed; "
             f"mean ± 95% t interval, sample std ddof=1; up to {n} seeds):", "",
             "| method | sd of difference at the last step | " + " | ".join(f"step {t}" for t in steps) + " |",
             "| --- | --- |" + " --- |" * len(steps)]
    for method in methods:
        paired = summary[method]["paired_vs_grpo"]
        last = paired[steps[-1]]
        sd = "-" if not last or last["sd"] is None else f"{last['sd']:.3f} (n={last['n']})"
        lines.append(f"| {label(method)} | {sd} | " + " | ".join(_ci(paired.get(t)) for t in steps) + " |")
    return lines


def optimizer_table(results: dict) -> list[str]:
    """AdamW around the switch: gradient norm, update RMS and sqrt of the second moment, seed means, for GRPO and
    every DSRL run, at the steps just before and after each run's switch."""
    runs = results["runs"]
    dsrl = [m for m in runs if m.startswith("dsrl")]
    if not dsrl or "grpo" not in runs:
        return []
    switch = results["settings"]["rl"]["dsrl_switch_step"]
    steps = sorted({max(1, switch - 1), switch, switch + 1, switch + 2, switch + 5})
    keys = (("grad_norm", "grad norm"), ("update_rms", "update RMS"), ("adam_sqrt_v", "mean sqrt(v)"))

    def mean_at(method: str, step: int, key: str) -> str:
        vals = [e[key] for r in runs[method].values() for e in r["train"] if e["step"] == step and key in e]
        return f"{sum(vals) / len(vals):.3g}" if vals else "-"

    lines = ["", f"AdamW around DSRL's switch at step {switch} (the step's own update; seed means; steps "
             f"{', '.join(map(str, steps))}):", "", "| method | measure | " + " | ".join(f"step {t}" for t in steps) + " |",
             "| --- | --- |" + " --- |" * len(steps)]
    for method in ["grpo", *dsrl]:
        for key, name in keys:
            lines.append(f"| {label(method)} | {name} | " + " | ".join(mean_at(method, t, key) for t in steps) + " |")
    return lines


def measures_table(measures: dict) -> str:
    lines = ["| corpus share of standalone solutions | base accuracy (1 sample) | log P(y\\|x) per token | "
             "log P(y) per token | cosine mean | negative pairs | cosine right / wrong |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for share, m in measures["shares"].items():
        lines.append(f"| {share} | {m['accuracy']:.2f} | {m['logp_conditional_per_token']:.3f} | "
                     f"{m['logp_marginal_per_token']:.3f} | {m['cosine_mean']:.3f} | {100 * m['negative_frac']:.0f}% | "
                     f"{_num(m['mean_cosine_correct'])} / {_num(m['mean_cosine_wrong'])} |")
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.miniature.report", description=__doc__)
    parser.add_argument("results_dir", type=Path, help="A folder with results.json (and sweep.json).")
    parser.add_argument("--plot", action="store_true", help="Also (re)draw miniature.png there (needs matplotlib).")
    args = parser.parse_args(argv)
    if (args.results_dir / "measures.json").is_file():
        print(measures_table(json.loads((args.results_dir / "measures.json").read_text())) + "\n")
    if not (args.results_dir / "results.json").is_file():
        return 0
    results = json.loads((args.results_dir / "results.json").read_text())
    print(tables(results))
    if args.plot:
        from .plots import plot_all

        print(f"wrote {plot_all(results, args.results_dir)[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
