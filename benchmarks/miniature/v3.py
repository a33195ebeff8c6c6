"""Miniature v3's measures, computed from the runs' JSON: reads `DIR/pretrain-seed-*/results.json` (one folder per
base), writes `DIR/analysis.json` and prints the README's tables.

    python -m benchmarks.miniature.v3 benchmarks/miniature/results/cpu-v3
    python -m benchmarks.miniature.v3 benchmarks/miniature/results/cpu-v3 --first 7   # the first call's 7 runs

Per base and pooled over both (a run is "base/seed", paired with GRPO of the same base and seed): DSRL - GRPO at the
last step (the decisive test: 95% Student-t, sample std ddof=1; and a bootstrap over runs and problems), DSRL at t
against GRPO at t - switch (equal GRPO updates), each method's change over the last third (the convergence
criterion), and the steps to 50% and 90% of GRPO's final gain on the seed-mean curves.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from .stats import bootstrap_paired, equal_updates, paired_differences, steps_to_gain

METHODS = ("grpo", "dsrl")
TARGET = 0.02  # the decisive test's resolution: the paper's gain is +1.75 points


def load(root: Path) -> dict[str, dict]:
    """{pretraining seed: results.json} for every `pretrain-seed-N` folder under `root`."""
    found = sorted(root.glob("pretrain-seed-*/results.json"), key=lambda p: int(p.parent.name.rsplit("-", 1)[1]))
    return {p.parent.name.rsplit("-", 1)[1]: json.loads(p.read_text()) for p in found}


def first_runs(bases: dict[str, dict], n: int) -> dict[str, dict]:
    """The bases' results restricted to the first `n` runs of the protocol's fixed order (base 0 seed 1, base 1 seed 1,
    base 0 seed 2, ...) that finished both arms: the analysis as it stood after those runs."""
    finished = [(int(seed), b) for b, r in bases.items() for seed in r["runs"].get("grpo", {})
                if seed in r["runs"].get("dsrl", {})]
    keep = {(b, str(seed)) for seed, b in sorted(finished, key=lambda sb: (sb[0], int(sb[1])))[:n]}
    return {b: {**r, "runs": {m: {sd: run for sd, run in by_seed.items() if (b, sd) in keep}
                              for m, by_seed in r["runs"].items()}}
            for b, r in bases.items()}


def _runs(bases: dict[str, dict], method: str) -> dict[str, list[dict]]:
    """{"base/seed": evaluation points} for one method over the given bases."""
    return {f"{b}/{seed}": run["eval"] for b, results in bases.items()
            for seed, run in results["runs"].get(method, {}).items()}


def verdict(p: dict | None) -> str:
    if not p or p.get("low") is None:
        return "no interval"
    if p["low"] > 0:
        return "DSRL better"
    if p["high"] < 0:
        return "DSRL worse"
    if -TARGET < p["low"] and p["high"] < TARGET:
        return f"no difference as large as {TARGET}"
    return "undecided"


def analyse_scope(bases: dict[str, dict]) -> dict:
    """Every measure over the runs of `bases` (one base, or several pooled)."""
    settings = next(iter(bases.values()))["settings"]["rl"]
    acc, end, switch = f"avg@{settings['eval_k']}", settings["steps"], settings["dsrl_switch_step"]
    third = end - end // 3
    runs = {m: _runs(bases, m) for m in METHODS}
    curve = {m: {run: {p["step"]: p[acc] for p in points} for run, points in runs[m].items()} for m in METHODS}
    ids = sorted(set(curve["grpo"]) & set(curve["dsrl"]))
    complete = [i for i in ids if end in curve["grpo"][i] and end in curve["dsrl"][i]]
    at = lambda m, t, among: {i: curve[m][i][t] for i in among if t in curve[m][i]}  # noqa: E731
    correct = {m: {i: next(p["correct"] for p in runs[m][i] if p["step"] == end) for i in complete} for m in METHODS}
    out: dict = {"runs": complete, "end_step": end, "switch_step": switch, "last_third_from": third}
    out["end"] = {m: _mean_sd(list(at(m, end, complete).values())) for m in METHODS}
    out["decisive"] = paired_differences(at("dsrl", end, complete), at("grpo", end, complete))
    if out["decisive"]:
        out["decisive"]["verdict"] = verdict(out["decisive"])
        g, d = (_within_base(at(m, end, complete)) for m in ("grpo", "dsrl"))
        out["decisive"]["arm_correlation"] = _correlation(g, d)
        out["bootstrap"] = bootstrap_paired(correct["dsrl"], correct["grpo"], {i: i.split("/")[0] for i in complete},
                                            scale=settings["eval_k"])
        out["bootstrap"]["verdict"] = verdict(out["bootstrap"])
    out["equal_updates"] = equal_updates({i: curve["dsrl"][i] for i in complete},
                                         {i: curve["grpo"][i] for i in complete}, switch)
    out["last_third"] = {m: paired_differences(at(m, end, complete), at(m, third, complete)) for m in METHODS}
    steps = sorted({t for i in complete for t in curve["grpo"][i]})
    out["mean_curve"] = {m: {str(t): statistics.fmean(curve[m][i][t] for i in complete) for t in steps}
                         for m in METHODS} if complete else {}
    if complete:
        base = statistics.fmean(curve["grpo"][i][0] for i in complete)
        gain = out["mean_curve"]["grpo"][str(end)] - base
        out["base"], out["grpo_final_gain"] = base, gain
        out["speed"] = {m: steps_to_gain(steps, [out["mean_curve"][m][str(t)] for t in steps], base, gain)
                        for m in METHODS}
    return out


def analyse(bases: dict[str, dict]) -> dict:
    scopes = {f"base {b}": analyse_scope({b: r}) for b, r in bases.items()}
    if len(bases) > 1:
        scopes["pooled"] = analyse_scope(bases)
    complete = all(r.get("complete", False) for r in bases.values())
    keys = ("num_pairs", "cosine_mean", "negative_frac", "logp_conditional_per_token", "logp_marginal_per_token")
    base_models = {b: {"avg@16": analyse_scope({b: r}).get("base"),
                       **{k: r["gradient_alignment_base"].get(k) for k in keys},
                       "pretrain_final_loss": r["pretrain"]["final_loss"]}
                   for b, r in bases.items()}
    return {"bases": list(bases), "complete": complete, "base_models": base_models, "scopes": scopes}


def _within_base(by_run: dict[str, float]) -> list[float]:
    """Each run's value minus its base's mean, in run order: the correlation of the two arms within bases (pooled
    over bases, the gap between the bases' levels would make any two arms correlate)."""
    means = {b: statistics.fmean(v for i, v in by_run.items() if i.split("/")[0] == b)
             for b in {i.split("/")[0] for i in by_run}}
    return [v - means[i.split("/")[0]] for i, v in sorted(by_run.items())]


def _correlation(x: list[float], y: list[float]) -> float | None:
    """Pearson's r; None with fewer than 3 values or a constant arm."""
    try:
        return statistics.correlation(x, y) if len(x) > 2 else None
    except statistics.StatisticsError:
        return None


def _mean_sd(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values) if values else None,
            "sd": statistics.stdev(values) if len(values) > 1 else None, "n": len(values)}


def _ci(p: dict | None, digits: int = 3) -> str:
    if not p:
        return "-"
    if p.get("half_width") is None:
        return f"{p['mean']:+.{digits}f} (n={p['n']})"
    return f"{p['mean']:+.{digits}f} ± {p['half_width']:.{digits}f}"


def _step(x: float | None) -> str:
    return "not reached" if x is None else f"{x:.1f}"


def tables(analysis: dict) -> str:
    scopes = analysis["scopes"]
    lines = ["The bases (pretraining seeds; gradient alignment of log P(y) and log P(y|x) on 100 of each base's own "
             "held-out rollouts):", "", "| pretraining seed | final pretraining loss | avg@16, step 0 | "
             "log P(y\\|x) per token | log P(y) per token | cosine mean | negative pairs |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for b, m in analysis["base_models"].items():
        lines.append(f"| {b} | {m['pretrain_final_loss']:.3f} | {_num(m['avg@16'])} | "
                     f"{m['logp_conditional_per_token']:.3f} | {m['logp_marginal_per_token']:.3f} | "
                     f"{m['cosine_mean']:.3f} | {100 * m['negative_frac']:.0f}% |")
    lines += ["", "Seed-mean avg@16 per step (`mean_curve`):", "",
             "| step | " + " | ".join(f"{name} {m.upper()}" for name in scopes for m in METHODS) + " |",
             "| --- |" + " --- |" * (len(METHODS) * len(scopes))]
    steps = next(iter(scopes.values()))["mean_curve"].get("grpo", {})
    for t in steps:
        lines.append(f"| {t} | " + " | ".join(f"{s['mean_curve'][m][t]:.3f}" for s in scopes.values()
                                              for m in METHODS) + " |")
    lines += ["", "The decisive test: DSRL - GRPO at the last step, paired by run (95% t, sample sd ddof=1; bootstrap "
              "over runs within each base and over the 128 problems, 20,000 resamples, percentile 95%):", "",
              "| scope | runs | GRPO | DSRL | DSRL - GRPO (t) | t interval | sd of differences | r (GRPO, DSRL), within base "
              "| bootstrap interval | verdict (t) |", "| --- |" + " --- |" * 9]
    for name, s in scopes.items():
        d, b = s.get("decisive"), s.get("bootstrap")
        if not d:
            continue
        r = "-" if d["arm_correlation"] is None else f"{d['arm_correlation']:.2f}"
        lines.append(f"| {name} | {d['n']} | {s['end']['grpo']['mean']:.3f} | {s['end']['dsrl']['mean']:.3f} | "
                     f"{_ci(d)} | {_lo_hi(d)} | {_num(d['sd'])} | {r} | {_lo_hi(b)} | {d['verdict']} |")
    shifted = list(next(iter(scopes.values()))["equal_updates"])
    lines += ["", "At equal numbers of GRPO updates: DSRL at step t - GRPO at step t - switch, paired by run:", "",
              "| scope | " + " | ".join(f"DSRL@{t} - GRPO@{scopes[next(iter(scopes))]['equal_updates'][t]['control_step']}"
                                       for t in shifted) + " |", "| --- |" + " --- |" * len(shifted)]
    for name, s in scopes.items():
        lines.append(f"| {name} | " + " | ".join(_ci(s["equal_updates"].get(t)) for t in shifted) + " |")
    s0 = next(iter(scopes.values()))
    lines += ["", f"Convergence: each method's change over the last third (step {s0['end_step']} - step "
              f"{s0['last_third_from']}, paired by run, 95% t):", "", "| scope | GRPO | DSRL |", "| --- | --- | --- |"]
    lines += [f"| {name} | {_ci(s['last_third'].get('grpo'))} | {_ci(s['last_third'].get('dsrl'))} |"
              for name, s in scopes.items()]
    lines += ["", "Speed: steps to 50% and 90% of GRPO's final gain on the seed-mean curves (interpolated between "
              "evaluations; the first evaluated step at or above the level in brackets):", "",
              "| scope | base | GRPO's final gain | level 50% | GRPO | DSRL | level 90% | GRPO | DSRL |",
              "| --- |" + " --- |" * 8]
    for name, s in scopes.items():
        if "speed" not in s:
            continue
        cells = [name, f"{s['base']:.3f}", f"{s['grpo_final_gain']:+.3f}"]
        for f in ("0.5", "0.9"):
            cells.append(f"{s['speed']['grpo'][f]['level']:.3f}")
            cells += [f"{_step(s['speed'][m][f]['interpolated_step'])} ({s['speed'][m][f]['first_evaluated_step']})"
                      for m in METHODS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _lo_hi(p: dict | None) -> str:
    return "-" if not p or p.get("low") is None else f"{p['low']:+.3f} to {p['high']:+.3f}"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.miniature.v3", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="The folder holding pretrain-seed-N/results.json.")
    parser.add_argument("--first", type=int, help="Only the first N runs of the protocol's order (analysis-first-N.json).")
    args = parser.parse_args(argv)
    bases = load(args.root)
    if not bases:
        raise SystemExit(f"no {args.root}/pretrain-seed-*/results.json")
    if args.first:
        bases = first_runs(bases, args.first)
    analysis = analyse(bases)
    name = f"analysis-first-{args.first}.json" if args.first else "analysis.json"
    (args.root / name).write_text(json.dumps(analysis, indent=1))
    print(tables(analysis))
    return 0


if __name__ == "__main__":
    sys.exit(main())
