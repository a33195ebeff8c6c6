"""Figures from results.json: held-out accuracy, response length and behaviour counts against step (seed mean, band
= min..max over seeds), and pass@k at the end."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .rl import label as method_label  # noqa: E402

COLORS = {"grpo": "black", "prerl_all": "tab:blue", "psr_prerl": "tab:orange", "nsr_prerl": "tab:red",
          "dsrl": "tab:green"}


def _curve(runs_by_seed: dict, key: str) -> tuple[list[int], list[float], list[float], list[float]]:
    curves = [r["eval"] for r in runs_by_seed.values()]
    steps = [p["step"] for p in curves[0]]
    values = [[c[i][key] for c in curves] for i in range(len(steps))]
    return steps, [sum(v) / len(v) for v in values], [min(v) for v in values], [max(v) for v in values]


def plot_all(results: dict, out_dir: Path) -> list[Path]:
    k = results["settings"]["rl"]["eval_k"]
    panels = [(f"avg@{k}", f"held-out avg@{k}"), ("response_length", "response length (tokens)"),
              ("transition", "transition thoughts / response"), ("reflection", "reflection thoughts / response")]
    rates = results.get("learning_rates", {})
    per_method = len(set(rates.values())) > 1
    fig, axes = plt.subplots(1, 5, figsize=(22, 4.2))
    for ax, (key, title) in zip(axes, panels, strict=False):
        for method, by_seed in results["runs"].items():
            if method not in COLORS:  # ablations are in the tables, not the figure
                continue
            steps, mean, lo, hi = _curve(by_seed, key)
            label = method_label(method) + (f", lr {rates[method]:g}" if per_method else "")
            ax.plot(steps, mean, marker="o", ms=3, color=COLORS.get(method), label=label)
            ax.fill_between(steps, lo, hi, color=COLORS.get(method), alpha=0.12)
        ax.set_title(title)
        ax.set_xlabel("RL step")
        ax.grid(alpha=0.3)
    switch = results["settings"]["rl"]["dsrl_switch_step"]
    if "dsrl" in results["runs"]:
        axes[0].axvline(switch, color=COLORS["dsrl"], ls=":", lw=1)
    axes[0].legend(fontsize=8)
    _pass_at_k(axes[4], results)
    counts = sorted({len(by_seed) for m, by_seed in results["runs"].items() if m in COLORS})
    n_seeds = str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    rule = "each method at its own learning rate" if per_method else "one learning rate for all"
    fig.suptitle(f"Miniature ({results['preset']} preset, {results['pretrain']['num_params'] / 1e6:.1f}M-parameter "
                 f"model trained from scratch, {rule}): mean of {n_seeds} seed(s), band = min..max", fontsize=11)
    fig.tight_layout()
    path = Path(out_dir) / "miniature.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [path]


def _pass_at_k(ax, results: dict) -> None:
    summary = results["summary"]
    for method in ["base", *(m for m in results["runs"] if m in COLORS)]:
        pk = summary[method]["pass@k"]
        ks = [int(j) for j in pk]
        ax.plot(ks, [pk[str(j)]["mean"] for j in ks], marker="o", ms=3, color=COLORS.get(method, "gray"),
                ls="--" if method == "base" else "-", label="base" if method == "base" else method_label(method))
    ax.set_xscale("log", base=2)
    ax.set_title("held-out pass@k at the end")
    ax.set_xlabel("k")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
