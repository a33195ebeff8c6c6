"""The real model's README tables, rendered from its JSON results (`python -m benchmarks.real_model.report`), so that
every figure in benchmarks/real_model/README.md comes from `results/` and `tests/test_readme_figures.py` can check it.

    python -m benchmarks.real_model.report                              # the alignment table (gpu-v2)
    python -m benchmarks.real_model.report benchmarks/real_model/results/gpu-v3   # the comparison; writes analysis.json

The comparison's measures are miniature v3's (`benchmarks.miniature.v3.analyse_scope`, one base): DSRL - GRPO at the
last step over the seeds that finished both arms (95% t, and a bootstrap over seeds and problems), at equal numbers of
GRPO updates, each method's change over the last third, and the steps to 50% / 90% of GRPO's final gain. Beside them:
DSRL - GRPO at every evaluated step, and the learning-rate rule of the protocol, read at the last step the edge runs
reached.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from benchmarks.miniature.stats import paired_differences
from benchmarks.miniature.v3 import _ci, _lo_hi, _step, analyse_scope

HERE = Path(__file__).resolve().parent
LABELS = {
    "token": "`token`: `<\\|im_start\\|>` (the paper's)",
    "chat_frame": "`chat_frame`: system turn, empty user turn, assistant header",
    "chat_frame_history": "`chat_frame_history`: the same with the 3 worked examples",
}


def alignment_table(path: Path = HERE / "results" / "gpu-v2" / "alignment.json") -> str:
    """One row per pre-train-space context: context tokens, mean cosine, negative share, per-token log-probs."""
    contexts = json.loads(Path(path).read_text())["contexts"]
    lines = [
        "| context before y | context tokens | mean cosine | negative pairs | log P(y\\|context) per token "
        "| log P(y\\|x) per token |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, label in LABELS.items():
        c = contexts[name]
        lines.append(f"| {label} | {c['context_tokens']} | {c['cosine_mean']:.3f} | {c['negative_frac']:.0%} | "
                     f"{c['logp_marginal_per_token']:.2f} | {c['logp_conditional_per_token']:.2f} |")
    return "\n".join(lines)


def analyse_comparison(results: dict) -> dict:
    """analyse_scope over the finished runs; DSRL - GRPO at every evaluated step (`by_step`); and the learning-rate
    rule: GRPO at each edge rate (finished or stopped) against GRPO at the base rate, at the last step the edge run
    reached. `keeps_rate` when no edge run is above the base rate's seed mean there by more than the seeds' sd."""
    out = analyse_scope({"model": results})
    acc = f"avg@{results['settings']['rl']['eval_k']}"
    grpo = {sd: {p["step"]: p[acc] for p in r["eval"]} for sd, r in results["runs"]["grpo"].items()}
    edges = {}
    for key in sorted({*results["runs"], *results.get("partial", {})} - {"grpo", "dsrl"}):
        run = results["runs"].get(key) or results["partial"][key]
        points = next(iter(run.values()))
        points = points["eval"] if isinstance(points, dict) else points
        step = max(p["step"] for p in points)
        at = [c[step] for c in grpo.values() if step in c]
        value = next(p[acc] for p in points if p["step"] == step)
        edges[key] = {"step": step, "finished": key in results["runs"], "value": value,
                      "grpo_mean": statistics.fmean(at), "grpo_sd": statistics.stdev(at), "grpo_n": len(at)}
        edges[key]["above_by_more_than_sd"] = value - edges[key]["grpo_mean"] > edges[key]["grpo_sd"]
    out["edge_rates"] = edges
    out["keeps_rate"] = not any(e["above_by_more_than_sd"] for e in edges.values())
    out["unfinished"] = {m: sorted(r) for m, r in results.get("partial", {}).items()}
    # A call stopped by its time limit: DSRL - GRPO over more seeds, the stopped ones included, at the last step
    # where more seeds than the decisive test's have both arms (the protocol's report of a stopped call).
    wider = {t: p for t, p in (results.get("paired_partial") or {}).items() if p and p["n"] > out["decisive"]["n"]}
    if wider:
        last = max(wider, key=int)
        out["every_seed"] = {"step": int(last), **wider[last]}
    finished = {i.split("/")[1] for i in out["runs"]}
    curves = {m: {sd: {p["step"]: p[acc] for p in r["eval"]} for sd, r in results["runs"][m].items()
                  if sd in finished} for m in ("grpo", "dsrl")}
    out["by_step"] = {str(t): paired_differences({sd: c[t] for sd, c in curves["dsrl"].items()},
                                                 {sd: c[t] for sd, c in curves["grpo"].items()})
                      for t in sorted(next(iter(curves["grpo"].values())))}
    return out


def comparison_tables(a: dict) -> str:
    """The README's tables for one comparison: the seed-mean curves and DSRL - GRPO per step; the decisive test with
    the warm-up and equal-updates comparisons beside it; convergence and speed; the learning-rate rule."""
    curve = a["mean_curve"]
    lines = ["| step | " + " | ".join(curve["grpo"]) + " |", "| --- |" + " --- |" * len(curve["grpo"])]
    for m, label in (("grpo", "GRPO"), ("dsrl", "DSRL")):
        lines.append(f"| {label} | " + " | ".join(f"{v:.3f}" for v in curve[m].values()) + " |")
    lines.append("| DSRL - GRPO | " + " | ".join(_ci(a["by_step"][t]) for t in curve["grpo"]) + " |")
    d, b = a["decisive"], a["bootstrap"]
    end, switch = a["end_step"], a["switch_step"]
    lines += ["", f"| measure (DSRL - GRPO, paired by seed, n = {d['n']}, sd {d['sd']:.3f}) | mean ± 95% t | t interval "
              "| bootstrap (seeds and problems) |", "| --- | --- | --- | --- |",
              f"| **at step {end} (decisive)** | **{_ci(d)}** | {_lo_hi(d)} | {_lo_hi(b)} |"]
    if "every_seed" in a:
        e = a["every_seed"]
        lines.append(f"| every seed, stopped runs included, at step {e['step']} (n = {e['n']}) | {_ci(e)} | {_lo_hi(e)} "
                     "| - |")
    for t, p in a["equal_updates"].items():
        if int(t) in (end, switch, 2 * switch):
            label = (f"the warm-up alone: DSRL@{t} - base" if p["control_step"] == 0
                     else f"equal GRPO updates: DSRL@{t} - GRPO@{p['control_step']}")
            lines.append(f"| {label} | {_ci(p)} | {_lo_hi(p)} | - |")
    grpo_third, dsrl_third = a["last_third"]["grpo"], a["last_third"]["dsrl"]
    lines += ["", "| | GRPO | DSRL |", "| --- | --- | --- |",
              f"| held-out avg@k at step {end}, mean (sd) | {a['end']['grpo']['mean']:.3f} ({a['end']['grpo']['sd']:.3f}) "
              f"| {a['end']['dsrl']['mean']:.3f} ({a['end']['dsrl']['sd']:.3f}) |",
              f"| change over the last third (step {a['last_third_from']} to {end}) | {_ci(grpo_third)} "
              f"| {_ci(dsrl_third)} |"]
    for f, label in (("0.5", "50%"), ("0.9", "90%")):
        s = a["speed"]
        lines.append(f"| steps to {label} of GRPO's final gain ({s['grpo'][f]['level']:.3f}) | "
                     f"{_step(s['grpo'][f]['interpolated_step'])} | {_step(s['dsrl'][f]['interpolated_step'])} |")
    lines += ["", "| GRPO at | step reached | avg@k there | GRPO at the base rate, mean (sd, n) | above by more "
              "than the sd |", "| --- | --- | --- | --- | --- |"]
    for key, e in a["edge_rates"].items():
        reached = f"{e['step']}" + ("" if e["finished"] else " (stopped)")
        lines.append(f"| {key.split('@')[1]} | {reached} | {e['value']:.3f} | {e['grpo_mean']:.3f} "
                     f"({e['grpo_sd']:.3f}, {e['grpo_n']}) | {'yes' if e['above_by_more_than_sd'] else 'no'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(alignment_table())
        return 0
    folder = Path(argv[0])
    analysis = analyse_comparison(json.loads((folder / "results.json").read_text()))
    (folder / "analysis.json").write_text(json.dumps(analysis, indent=1))
    print(comparison_tables(analysis))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
