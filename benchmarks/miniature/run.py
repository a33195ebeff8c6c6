"""Orchestration: pretrain (cached) -> base measures -> learning-rate sweep or RL comparison -> results.json + plots.

    python -m benchmarks.miniature sweep --preset cpu    # pick the learning rate (GRPO, validation split, seed 0)
    python -m benchmarks.miniature run --preset cpu      # 5 methods x 3 seeds from the same base, on the test split
    python -m benchmarks.miniature measure --preset cpu-v2 --shares 0 0.3   # log-probs and alignment per corpus share

`run` keeps the finished runs of an earlier, interrupted or shorter call with the same settings in the same output
folder, so seeds can be added across several commands.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from .evaluate import base_alignment, evaluate
from .presets import PRESETS, Preset, get_preset
from .pretrain import pretrain
from .rl import METHODS, check_method, eval_seed, label, run
from .stats import paired_differences
from .task import SOLUTION_STYLES, splits

HERE = Path(__file__).resolve().parent
DEFAULT_CACHE = HERE / ".cache"
DEFAULT_RESULTS = HERE / "results"


def _device(preset: Preset) -> str:
    return "cuda" if preset.device == "cuda" and torch.cuda.is_available() else "cpu"


def _base(preset: Preset, cache_dir: Path, data: dict) -> tuple[Path, dict]:
    base_dir = pretrain(data["pretrain"], preset.pretrain.seed, preset.pretrain, cache_dir, _device(preset),
                        preset.standalone_share)
    return base_dir, json.loads((base_dir / "pretrain.json").read_text())


def _load(base_dir: Path, device: str):
    return AutoModelForCausalLM.from_pretrained(base_dir).to(device), AutoTokenizer.from_pretrained(base_dir)


def _final(curve: list[dict], key: str) -> float:
    return curve[-1][key]


def _spread(values: list[float]) -> dict:
    """Mean, sample std (ddof=1; 0 for one value), min, max. Results written before 2026-12 used the population std."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "ddof": 1, "min": min(values), "max": max(values),
            "values": values}


def summarize(runs: dict, base_evals: dict, k: int) -> dict:
    """Final held-out measures per method (mean and spread over seeds), and the step at which each method's
    seed-mean avg@k first reaches half and all of GRPO's final gain over the base."""
    acc = f"avg@{k}"
    base_acc = statistics.fmean(e[acc] for e in base_evals.values())
    out: dict = {"base": {acc: _spread([e[acc] for e in base_evals.values()])}}
    for key in ("response_length", "transition", "reflection"):
        out["base"][key] = _spread([e[key] for e in base_evals.values()])
    out["base"]["pass@k"] = {j: _spread([e["pass@k"][j] for e in base_evals.values()])
                             for j in next(iter(base_evals.values()))["pass@k"]}
    for method, by_seed in runs.items():
        curves = [r["eval"] for r in by_seed.values()]
        summary = {key: _spread([_final(c, key) for c in curves])
                   for key in (acc, "response_length", "transition", "reflection")}
        summary["pass@k"] = {j: _spread([c[-1]["pass@k"][j] for c in curves]) for j in curves[0][-1]["pass@k"]}
        summary["mean_curve"] = [
            {"step": points[0]["step"], acc: statistics.fmean(p[acc] for p in points)} for points in zip(*curves, strict=True)
        ]
        out[method] = summary
    if "grpo" in runs:  # paired against GRPO, seed by seed, at every evaluation step
        for method in runs:
            if method == "grpo":
                continue
            steps = [p["step"] for p in next(iter(runs[method].values()))["eval"]]
            out[method]["paired_vs_grpo"] = {
                str(step): paired_differences(_at_step(runs[method], step, acc), _at_step(runs["grpo"], step, acc))
                for step in steps
            }
    if "grpo" in out:
        gain = out["grpo"][acc]["mean"] - base_acc
        levels = {"half_grpo_gain": base_acc + gain / 2, "full_grpo_gain": base_acc + gain}
        for method in runs:
            out[method]["steps_to_level"] = {
                name: next((p["step"] for p in out[method]["mean_curve"] if p[acc] >= level and gain > 0), None)
                for name, level in levels.items()
            }
        out["levels"] = levels
    return out


def _at_step(by_seed: dict, step: int, key: str) -> dict[str, float]:
    """{seed: value of `key` at evaluation step `step`} over the seeds that reached it."""
    return {seed: p[key] for seed, r in by_seed.items() for p in r["eval"] if p["step"] == step}


def compare(preset: Preset, out_dir: Path, cache_dir: Path, methods: tuple[str, ...] = METHODS,
            learning_rates: dict[str, float] | None = None) -> dict:
    """The comparison: every method from the same base, same budget, same seeds, measured on the test split.
    `learning_rates` gives a method its own learning rate (the per-method rule); the others use the preset's."""
    rates = {method: (learning_rates or {}).get(method, preset.rl.learning_rate) for method in methods}
    start, cpu_start = time.time(), time.process_time()
    data = splits(preset.num_steps, preset.num_pretrain, preset.num_rl, preset.num_val, preset.num_test)
    base_dir, pretrain_info = _base(preset, cache_dir, data)
    device, s = _device(preset), preset.rl
    model, tokenizer = _load(base_dir, device)
    settings = _settings(preset)
    earlier = _read_json(out_dir / "results.json")
    # Runs kept from an earlier call: same settings except the seed list, and the same learning rate per method.
    # Methods of the earlier call that this one does not name are kept whole (seeds added for two methods keep the
    # others' runs in the same results.json).
    kept: dict = {method: {} for method in methods}
    if earlier and _same_settings(earlier["settings"], settings):
        earlier_rates = earlier.get("learning_rates", {})
        for method, by_seed in earlier["runs"].items():
            if method not in rates or earlier_rates.get(method) == rates[method]:
                kept[method] = dict(by_seed)
                rates.setdefault(method, earlier_rates[method])
    alignment = (earlier["gradient_alignment_base"] if any(kept.values()) else
                 base_alignment(model, tokenizer, data["test"] + data["val"], preset.alignment_pairs,
                                s.max_completion_length, seed=0))
    draws: dict[int, dict] = {}  # one evaluation per distinct draw (one in all with eval_draw="fixed")
    base_evals = {}
    for seed in sorted({*preset.seeds, *(int(k) for by_seed in kept.values() for k in by_seed)}):
        draw = eval_seed(s, seed, 0)
        if draw not in draws:
            draws[draw] = {"step": 0, **evaluate(model, tokenizer, data["test"], s.eval_k, s.max_completion_length,
                                                 seed=draw)}
        base_evals[str(seed)] = draws[draw]
    del model
    jobs = [(method, str(base_dir), data["rl"], data["test"], replace(s, learning_rate=rates[method]), seed,
             str(cache_dir / "runs" / f"{method}-{seed}"), device == "cpu")
            for seed in preset.seeds for method in methods  # seed-major: partial runs compare
            if str(seed) not in kept[method]]
    if any(kept.values()):
        print(f"[miniature] keeping {sum(map(len, kept.values()))} finished runs from {out_dir / 'results.json'}; "
              f"{len(jobs)} to run", flush=True)
    runs: dict = kept
    out_dir.mkdir(parents=True, exist_ok=True)
    earlier_wall = earlier.get("wall_seconds_all_calls", earlier.get("wall_seconds", 0.0)) if any(kept.values()) else 0.0
    if not jobs:
        jobs_done = iter(())
    else:
        jobs_done = zip(jobs, _map_runs(jobs, preset.jobs), strict=True)
    results = earlier if not jobs else {}
    for done, (job, result) in enumerate(jobs_done, start=1):
        method, seed = job[0], job[5]
        result["eval"] = [base_evals[str(seed)], *result["eval"]]
        runs[method][str(seed)] = result
        # Written after every run, so an interrupted comparison leaves a usable (partial) results.json, and a figure
        # of the seeds it finished.
        results = {
            "complete": done == len(jobs),
            "preset": preset.name,
            "settings": settings,
            "pretrain": {k: v for k, v in pretrain_info.items() if k != "loss_curve"},
            "pretrain_loss_curve": pretrain_info["loss_curve"],
            "gradient_alignment_base": alignment,
            "summary": summarize({m: r for m, r in runs.items() if r}, base_evals, s.eval_k),
            "runs": {m: r for m, r in runs.items() if r},
            "learning_rates": rates,
            "sweep": _read_json(out_dir / "sweep.json"),
            "device": device,
            "torch_threads": torch.get_num_threads(),
            "wall_seconds": time.time() - start,
            "wall_seconds_all_calls": earlier_wall + time.time() - start,
            "cpu_seconds": time.process_time() - cpu_start + sum(
                r["cpu_seconds"] for by_seed in runs.values() for r in by_seed.values()),
        }
        (out_dir / "results.json").write_text(json.dumps(results, indent=1))
        if done == len(jobs) or jobs[done][5] != seed:  # the figure once per finished seed (drawing costs seconds)
            _plot(results, out_dir)
    return results


def _same_settings(a: dict, b: dict) -> bool:
    """Settings equal but for the seed list, the parallelism and the base learning rate (recorded per method)."""
    a, b = json.loads(json.dumps(a)), json.loads(json.dumps(b))  # tuples and lists alike
    ignore = {"seeds", "jobs"}
    strip = lambda d: {k: v for k, v in d.items() if k not in ignore}  # noqa: E731
    # eval_steps and bf16 came after cpu-v2's results were written: missing and empty (False) are the same.
    rl_a, rl_b = ({k: v for k, v in d["rl"].items() if k != "learning_rate" and (k not in ("eval_steps", "bf16") or v)}
                  for d in (a, b))
    return strip({**a, "rl": rl_a}) == strip({**b, "rl": rl_b})


def _plot(results: dict, out_dir: Path) -> None:
    """The figure, when matplotlib is installed (GPU images often lack it: `python -m benchmarks.miniature.report
    DIR --plot` draws it later from results.json)."""
    try:
        from . import plots
    except ImportError:
        return
    plots.plot_all(results, out_dir)


def sweep(preset: Preset, out_dir: Path, cache_dir: Path, methods: tuple[str, ...] = ("grpo",)) -> dict:
    """Pick the learning rate once, on the validation split with `sweep_seed`: best final avg@k wins. With GRPO alone
    (the default) its choice is shared by every method; with several methods each gets its own by the same rule."""
    data = splits(preset.num_steps, preset.num_pretrain, preset.num_rl, preset.num_val, preset.num_test)
    base_dir, _ = _base(preset, cache_dir, data)
    device = _device(preset)
    grid = [(method, lr) for method in methods for lr in preset.sweep_learning_rates]
    jobs = [(method, str(base_dir), data["rl"], data["val"], replace(preset.rl, learning_rate=lr), preset.sweep_seed,
             str(cache_dir / "sweep" / f"{method}-{lr}"), device == "cpu") for method, lr in grid]
    rows = [{"method": method, "learning_rate": lr, "final": result["eval"][-1], "curve": result["eval"],
             "seconds": result["seconds"], "cpu_seconds": result.get("cpu_seconds")}
            for (method, lr), result in zip(grid, _map_runs(jobs, preset.jobs), strict=True)]
    acc = f"avg@{preset.rl.eval_k}"
    chosen = {method: max((r for r in rows if r["method"] == method), key=lambda r: r["final"][acc])["learning_rate"]
              for method in methods}
    model, tokenizer = _load(base_dir, device)
    base = evaluate(model, tokenizer, data["val"], preset.rl.eval_k, preset.rl.max_completion_length,
                    seed=eval_seed(preset.rl, preset.sweep_seed, 0))
    rule = (f"{', '.join(label(m) for m in methods)} on the validation split, seed {preset.sweep_seed}, highest "
            f"final {acc} per method; `run` gives every method GRPO's choice, or each its own with --lr-rule per-method")
    out = {"rule": rule, "methods": list(methods), "seed": preset.sweep_seed, "base": base, "rows": rows,
           "chosen_per_method": chosen}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sweep.json").write_text(json.dumps(out, indent=1))
    return out


def measure(preset: Preset, out_dir: Path, cache_dir: Path, shares: tuple[float, ...]) -> dict:
    """Per corpus share (a base model each): on the base's own rollouts for held-out problems, the per-token mean of
    log P(y|x) and of log P(y | BOS), and the gradient alignment of the two. Writes measures.json."""
    data = splits(preset.num_steps, preset.num_pretrain, preset.num_rl, preset.num_val, preset.num_test)
    out: dict = {"preset": preset.name, "alignment_pairs": preset.alignment_pairs, "shares": {}}
    for share in shares:
        start = time.time()
        base_dir, _ = _base(replace(preset, standalone_share=share), cache_dir, data)
        model, tokenizer = _load(base_dir, _device(preset))
        summary = base_alignment(model, tokenizer, data["test"] + data["val"], preset.alignment_pairs,
                                 preset.rl.max_completion_length, seed=0)
        out["shares"][str(share)] = {**summary, "base_dir": base_dir.name, "seconds": time.time() - start}
        del model
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "measures.json").write_text(json.dumps(out, indent=1))
    return out


def _method_arg(value: str) -> str:
    try:
        return check_method(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _job(args: tuple) -> dict:
    threads, job = args
    if threads:
        torch.set_num_threads(threads)
    method, seed, lr = job[0], job[5], job[4].learning_rate
    print(f"[miniature] {label(method)}, seed {seed}, learning rate {lr}", flush=True)
    return run(*job)


def _map_runs(jobs: list[tuple], num_workers: int) -> Iterator[dict]:
    """Run the jobs in order, or in `num_workers` processes (each with the parent's torch thread count); yield the
    results in job order."""
    threads = torch.get_num_threads()
    if num_workers <= 1:
        yield from (_job((None, job)) for job in jobs)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=num_workers, mp_context=context) as pool:
        yield from pool.map(_job, [(threads, job) for job in jobs])


def _settings(preset: Preset) -> dict:
    settings = asdict(preset)
    settings["solution_styles"] = SOLUTION_STYLES
    return settings


def _swept_rates(sweep_result: dict | None, methods: tuple[str, ...], path: Path) -> dict[str, float]:
    """The learning rates the sweep chose for `methods`, or one line saying which sweep to run first."""
    chosen = (sweep_result or {}).get("chosen_per_method", {})
    missing = [m for m in methods if m not in chosen]
    if missing:
        raise SystemExit(f"{path} has no swept learning rate for {', '.join(missing)}; run `python -m "
                         f"benchmarks.miniature sweep --methods {' '.join(methods)}` with the same --output-dir first")
    return {m: chosen[m] for m in methods}


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.miniature", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("run", "sweep", "measure", "pretrain"))
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    parser.add_argument("--output-dir", type=Path, help="Default: benchmarks/miniature/results/PRESET")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="Base checkpoints and run scratch.")
    parser.add_argument("--learning-rate", type=float, help="Override the preset's RL learning rate.")
    parser.add_argument("--steps", type=int, help="Override the preset's RL steps.")
    parser.add_argument("--seeds", type=int, nargs="+", help="Override the preset's comparison seeds.")
    parser.add_argument("--methods", nargs="+", type=_method_arg,
                        help=f"run: the methods to compare (default: {' '.join(METHODS)}; DSRL ablations: dsrl_switchN, "
                             "dsrl_reset); sweep: the methods to sweep (default: grpo, whose choice every method then "
                             "shares).")
    parser.add_argument("--standalone-share", type=float,
                        help="Override the preset's share of solution-only corpus documents (a new base model).")
    parser.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.3],
                        help="measure: the corpus shares to measure (default: 0 0.3).")
    parser.add_argument("--lr-rule", choices=("shared", "per-method"), default="shared",
                        help="run: every method at GRPO's swept learning rate (shared), or each at its own (per-method; "
                             "needs a sweep over those methods).")
    parser.add_argument("--pretrain-seed", type=int,
                        help="Another base: the pretraining seed (corpus draw, initialisation, batch order); default "
                             "output folder results/PRESET/pretrain-seed-N.")
    parser.add_argument("--threads", type=int, help="torch CPU threads per process (default: torch's).")
    parser.add_argument("--jobs", type=int, help="RL runs in parallel processes (default: the preset's).")
    args = parser.parse_args(argv)
    preset = get_preset(args.preset, learning_rate=args.learning_rate, steps=args.steps,
                        seeds=tuple(args.seeds) if args.seeds else None, jobs=args.jobs,
                        standalone_share=args.standalone_share)
    if args.pretrain_seed is not None:
        preset = replace(preset, pretrain=replace(preset.pretrain, seed=args.pretrain_seed))
    # Default: share the cores between the parallel runs (2 cores, 2 jobs: 1 thread each).
    torch.set_num_threads(args.threads or max(1, torch.get_num_threads() // preset.jobs))
    out_dir = args.output_dir or DEFAULT_RESULTS / preset.name
    if args.pretrain_seed is not None and args.output_dir is None:
        out_dir = out_dir / f"pretrain-seed-{args.pretrain_seed}"
    if args.command == "pretrain":  # the base alone (cached), e.g. several bases in parallel before the runs
        data = splits(preset.num_steps, preset.num_pretrain, preset.num_rl, preset.num_val, preset.num_test)
        base_dir, info = _base(preset, args.cache_dir, data)
        print(f"[miniature] base {base_dir}: final loss {info['final_loss']:.3f} in {info['seconds']:.0f} s")
        return 0
    if args.command == "measure":
        result = measure(preset, out_dir, args.cache_dir, tuple(args.shares))
        for share, m in result["shares"].items():
            print(f"[miniature] share {share}: per-token log P(y|x) {m['logp_conditional_per_token']:.3f}, "
                  f"log P(y) {m['logp_marginal_per_token']:.3f}, cosine {m['cosine_mean']:.3f}, "
                  f"negative {m['negative_frac']:.0%}")
        return 0
    if args.command == "sweep":
        result = sweep(preset, out_dir, args.cache_dir, tuple(args.methods or ("grpo",)))
        print(f"[miniature] chosen learning rate: {result['chosen_per_method']}")
        return 0
    methods = tuple(args.methods or METHODS)
    sweep_result = _read_json(out_dir / "sweep.json")
    per_method = None
    if args.lr_rule == "per-method":
        per_method = _swept_rates(sweep_result, methods, out_dir / "sweep.json")
        print(f"[miniature] learning rates {per_method} from {out_dir / 'sweep.json'}")
    elif args.learning_rate is None and sweep_result is not None:
        shared = _swept_rates(sweep_result, ("grpo",), out_dir / "sweep.json")["grpo"]
        preset = replace(preset, rl=replace(preset.rl, learning_rate=shared))
        print(f"[miniature] learning rate {preset.rl.learning_rate} (GRPO's) from {out_dir / 'sweep.json'}")
    results = compare(preset, out_dir, args.cache_dir, methods, per_method)
    acc = f"avg@{preset.rl.eval_k}"
    for method, summary in results["summary"].items():
        if acc in summary:
            print(f"{method:>10}: {acc} {summary[acc]['mean']:.3f} +- {summary[acc]['std']:.3f}")
    print(f"[miniature] wrote {out_dir / 'results.json'} in {results['wall_seconds']:.0f} s")
    return 0
