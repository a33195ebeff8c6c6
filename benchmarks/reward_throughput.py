r"""Verifications per second: prerl_trl's math_accuracy_reward against TRL's accuracy_reward and plain math-verify.

All three score the same mixed set (about 10% adversarial) in one run, in this process:

- Each reference verifier (``--references``, default ``trl,math_verify``) runs item by item in a spawned
  child process (their signal-based timeouts need the main thread). A watchdog in this process kills the
  child when one item takes longer than ``--trl-guard`` seconds (they can hang inside C code that signals
  cannot interrupt), scores it None and restarts the child at the next item. ``trl`` is
  ``trl.rewards.accuracy_reward`` called as GRPO calls it (conversational completions, the gold answer as
  ``solution``); ``math_verify`` is ``verify(parse(gold), parse(completion))`` with math-verify's defaults.
- Ours scores the set in batches of ``--batch-size`` (one GRPO step) for throughput, then item by
  item for the worst single latency.

Gold answers are bare LaTeX (as in MATH-500 or AIME ``answer`` columns). Every item carries its true
verdict, so the run also reports accuracy, and how often we are right where a reference returns None.
Ratios are ours / reference.

    python benchmarks/reward_throughput.py --n 300 --output benchmarks/results/reward_throughput.json

``--pool pebble-spawn`` / ``--pool pebble-fork`` (``pip install pebble``) run our reward on ``pebble.ProcessPool`` (whose
``schedule(fn, timeout=...)`` kills and replaces a worker that runs over) instead of our own pool,
and ``--contexts`` adds the worst latency from two threads at once and the verdict inside a
PyTorch DataLoader worker (a daemonic process). ``--skip-trl`` times our reward alone.

    python benchmarks/reward_throughput.py --skip-trl --contexts --pool pebble-fork
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import statistics
import sys
import time
from pathlib import Path

FILLER = [
    r"We start from $x^2 + 3x = 10$ and factor it as $(x+5)(x-2) = 0$.",
    r"Since $\angle ABC = 90^\circ$, the Pythagorean theorem gives $AC^2 = AB^2 + BC^2$.",
    r"Summing the geometric series $\sum_{k=0}^{n} 2^k = 2^{n+1} - 1$ for $n = 4$ we get $31$.",
    r"Let $f(x) = \frac{x+1}{x-1}$; then $f(f(x)) = x$ for $x \neq 1$.",
    r"Wait, let me double-check the arithmetic: $12 \cdot 7 = 84$ and $84 - 9 = 75$.",
    r"By symmetry we may assume $a \le b \le c$, so $3a \le a + b + c = 30$.",
]

ADVERSARIAL = [
    r"(10^{10^{10^{10}}})!",
    "9^" * 60 + "9",
    r"\int_0^{x^{x^{x^{x}}}} e^{t^{t^{t}}}\,dt",
    "x+" * 50_000,
    r"\frac{1}{2" + "{" * 500,
    r"\frac{1}{" * 150 + "2" + "}" * 150,
    "\ud800\udfff\x00\uffff5",
    r"\sqrt{" * 400 + "2" + "}" * 400,
    r"{" * 3000,
    r"10^{10^{10^{10^{10}}}} - 10^{10^{10^{10^{10}}}}",
]


def _item(rng: random.Random) -> tuple[str, str, float]:
    """One (gold, prediction, true verdict) from a mix of answer types; half are right."""
    right = rng.random() < 0.5
    a, b = rng.randint(2, 60), rng.randint(2, 60)
    kind = rng.choice(
        [
            "int",
            "int",
            "int",
            "comma",
            "frac",
            "sqrt",
            "poly",
            "interval",
            "set",
            "matrix",
            "percent",
            "degree",
            "choice",
            "mixed",
            "assign",
            "money",
            "decimal",
        ]
    )
    if kind == "int":
        gold = str(a * b + rng.randint(0, 999))
        return gold, gold if right else str(int(gold) + 1), float(right)
    if kind == "comma":
        n = rng.randint(1000, 999_999)
        return str(n), f"{n:,}" if right else f"{n + 10:,}", float(right)
    if kind == "frac":
        num, den = min(a, b), max(a, b) + 1
        k = rng.randint(2, 5)
        return (
            rf"\frac{{{num}}}{{{den}}}",
            rf"\dfrac{{{num * k}}}{{{den * k}}}" if right else rf"\frac{{{num + 1}}}{{{den}}}",
            float(right),
        )
    if kind == "sqrt":
        s = rng.choice([2, 3, 5, 6, 7])
        return (
            rf"{a}\sqrt{{{s}}}",
            rf"\sqrt{{{a * a * s}}}" if right else rf"\sqrt{{{a * a * s + 1}}}",
            float(right),
        )
    if kind == "poly":
        return rf"(x+{a})^2", f"x^2+{2 * a}x+{a * a}" if right else f"x^2+{2 * a + 1}x+{a * a}", float(right)
    if kind == "interval":
        lo, hi = min(a, b), max(a, b) + 1
        return f"({lo},{hi}]", f"( {lo}, {hi} ]" if right else f"[{lo},{hi}]", float(right)
    if kind == "set":
        return (
            rf"\{{{a},{b + 100}\}}",
            rf"\{{{b + 100}, {a}\}}" if right else rf"\{{{a}, {b + 101}\}}",
            float(right),
        )
    if kind == "matrix":
        gold = rf"\begin{{pmatrix}}{a}\\{b}\end{{pmatrix}}"
        return (
            gold,
            rf"\begin{{bmatrix}} {a} \\ {b} \end{{bmatrix}}"
            if right
            else rf"\begin{{pmatrix}}{a}\\{b + 1}\end{{pmatrix}}",
            float(right),
        )
    if kind == "percent":
        return str(a), rf"{a}\%" if right else rf"{a + 1}\%", float(right)
    if kind == "degree":
        return rf"{a}^\circ", str(a) if right else str(a + 1), float(right)
    if kind == "choice":
        letter = rng.choice("ABCDE")
        other = rng.choice([c for c in "ABCDE" if c != letter])
        return rf"\text{{({letter})}}", (letter if right else other), float(right)
    if kind == "mixed":
        return (
            rf"{a}\frac{{1}}{{2}}",
            rf"\frac{{{2 * a + 1}}}{{2}}" if right else rf"\frac{{{2 * a + 3}}}{{2}}",
            float(right),
        )
    if kind == "assign":
        return str(a), f"x = {a}" if right else f"x = {a + 1}", float(right)
    if kind == "money":
        return f"{a}.50", rf"\${a}.50" if right else rf"\${a}.05", float(right)
    return f"{a}.25", rf"\frac{{{4 * a + 1}}}{{4}}" if right else f"{a}.24", float(right)


def build_items(n: int, adversarial_frac: float, seed: int) -> list[dict]:
    rng = random.Random(seed)
    items = []
    for i in range(n):
        if rng.random() < adversarial_frac:
            gold, pred, truth, adv = str(rng.randint(1, 99)), ADVERSARIAL[i % len(ADVERSARIAL)], 0.0, True
        else:
            (gold, pred, truth), adv = _item(rng), False
        filler = " ".join(rng.sample(FILLER, 3))
        text = f"{filler}\nTherefore, the final answer is $\\boxed{{{pred}}}$."
        items.append({"gold": gold, "completion": text, "truth": truth, "adversarial": adv})
    return items


# ------------------------------------------------------------------- reference side: TRL, plain math-verify


def _reference_scorer(kind: str):
    """``score(completion, gold) -> verdict`` for ``trl`` (TRL's accuracy_reward as GRPO calls it) or
    ``math_verify`` (math-verify's ``parse`` + ``verify`` with its defaults, its own signal timeouts)."""
    if kind == "trl":
        from trl.rewards import accuracy_reward

        def score(completion: str, gold: str):
            return accuracy_reward([[{"role": "assistant", "content": completion}]], [gold])[0]

        return score
    from math_verify import parse, verify

    def score(completion: str, gold: str):
        return float(verify(parse(gold), parse(completion)))

    return score


def _reference_child(kind: str, conn, items: list[dict], start: int) -> None:
    import logging

    logging.disable(logging.CRITICAL)
    score = _reference_scorer(kind)
    # warm the parser's caches as our workers do at boot, so every side is timed warm
    from prerl_trl.rewards.equivalence import WARMUP_PAIRS

    for gold, pred in WARMUP_PAIRS:
        score(f"$\\boxed{{{pred}}}$", f"${gold}$")
    conn.send(("ready", None, 0.0))
    for i in range(start, len(items)):
        t0 = time.perf_counter()
        try:
            r = score(items[i]["completion"], items[i]["gold"])
        except Exception:  # noqa: BLE001
            r = "error"
        conn.send((i, r, time.perf_counter() - t0))


def run_reference(kind: str, items: list[dict], guard: float) -> tuple[list, list[float]]:
    """Verdicts and per-item seconds of ``kind``; an item over ``guard`` seconds is killed and scored None."""
    ctx = mp.get_context("spawn")
    verdicts: list = [None] * len(items)
    seconds = [0.0] * len(items)
    i = 0
    while i < len(items):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_reference_child, args=(kind, child, items, i), daemon=True)
        proc.start()
        parent.recv()  # ready: the library imported (not timed)
        while i < len(items):
            if not parent.poll(guard):
                proc.kill()
                proc.join()
                verdicts[i], seconds[i] = "hang", guard
                i += 1
                break
            idx, r, dt = parent.recv()
            verdicts[idx], seconds[idx] = r, dt
            i = idx + 1
        else:
            proc.kill()
            proc.join()
    return verdicts, seconds


# ----------------------------------------------------------------------------------------- our side


def _pebble_init() -> None:
    from prerl_trl.rewards import equivalence

    equivalence.worker_setup()
    for gold, pred in equivalence.WARMUP_PAIRS:
        equivalence.worker_verify(gold, pred)


def _pebble_verify(gold: str, pred: str) -> int:
    from prerl_trl.rewards import equivalence

    return equivalence.worker_verify(gold, pred)


class PebblePool:
    """Our pool's job on pebble: one ``schedule(fn, timeout=...)`` per pair; a timed-out worker is replaced."""

    def __init__(self, size: int, context: str) -> None:
        from pebble import ProcessPool

        self.size, self.context = size, context
        self.pool = ProcessPool(max_workers=size, initializer=_pebble_init, context=mp.get_context(context))

    def run(self, pairs: list[tuple[str, str]], timeout: float) -> list[int]:
        from concurrent.futures import TimeoutError as FutureTimeout

        from prerl_trl.rewards.equivalence import ERROR, TIMEOUT

        futures = [self.pool.schedule(_pebble_verify, args=pair, timeout=timeout) for pair in pairs]
        verdicts = []
        for future in futures:
            try:
                verdicts.append(future.result())
            except FutureTimeout:
                verdicts.append(TIMEOUT)
            except Exception:  # noqa: BLE001 - a crashed worker
                verdicts.append(ERROR)
        return verdicts

    def warmup(self) -> None:
        self.run([("1", f"\\frac{{{i + 2}}}{{{i + 2}}}") for i in range(self.size * 2)], 120.0)


_PEBBLE: PebblePool | None = None


def use_pool(kind: str) -> None:
    """Route our reward's worker calls to ``kind``: ``ours`` (prerl_trl.rewards.pool) or ``pebble-<context>``."""
    global _PEBBLE
    if kind == "ours":
        return
    from prerl_trl.rewards import functions, pool

    context = kind.split("-", 1)[1]

    def get_pool() -> PebblePool:
        global _PEBBLE
        if _PEBBLE is None or _PEBBLE.pool is None:
            _PEBBLE = PebblePool(pool._default_workers(), context)
        return _PEBBLE

    functions.get_pool = get_pool


def _warmup() -> None:
    from prerl_trl import rewards
    from prerl_trl.rewards import functions

    pool = functions.get_pool()
    pool.warmup() if isinstance(pool, PebblePool) else rewards.warmup_verifier()


def _reward_in_dataloader_worker(_: int) -> float:
    from prerl_trl import rewards

    # a pair the in-process pre-check cannot decide, so a worker process must answer
    completion = r"so $\boxed{\frac{\sqrt{2}}{2}}$"
    return rewards.math_accuracy_reward([completion], answer=[r"\frac{1}{\sqrt2}"], timeout_seconds=3.0)[0]


def check_contexts(kind: str, timeout: float) -> dict:
    """Worst latency of an adversarial call made from two threads at once, and a verdict in a DataLoader worker."""
    import threading

    from prerl_trl import rewards

    latencies: list[float] = []

    def call() -> None:
        t0 = time.perf_counter()
        rewards.math_accuracy_reward([r"\boxed{(10^{10^{10^{10}}})!}"], answer=["5"], timeout_seconds=timeout)
        latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    result: dict = {"threads_worst_latency_seconds": max(latencies) if len(latencies) == 2 else None}
    try:
        import torch

        class Rows(torch.utils.data.Dataset):
            def __len__(self) -> int:
                return 2

            def __getitem__(self, i: int) -> float:
                use_pool(kind)  # the worker process routes its own calls
                return _reward_in_dataloader_worker(i)

        loader = torch.utils.data.DataLoader(Rows(), batch_size=None, num_workers=1, timeout=120)
        t0 = time.perf_counter()
        result["dataloader_verdicts"] = [float(x) for x in loader]
        result["dataloader_seconds"] = time.perf_counter() - t0
    except Exception as err:  # noqa: BLE001 - reported, not raised
        result["dataloader_error"] = f"{type(err).__name__}: {str(err).splitlines()[-1][:200]}"
    return result


def _score_batches(
    items: list[dict], batch_size: int, timeout: float | None, log_metric=None
) -> tuple[list, float]:
    from prerl_trl import rewards

    verdicts: list = []
    t0 = time.perf_counter()
    for s in range(0, len(items), batch_size):
        batch = items[s : s + batch_size]
        verdicts += rewards.math_accuracy_reward(
            [[{"role": "assistant", "content": it["completion"]}] for it in batch],
            answer=[it["gold"] for it in batch],
            timeout_seconds=timeout,
            log_metric=log_metric,
        )
    return verdicts, time.perf_counter() - t0


def run_ours(items: list[dict], batch_size: int, timeout: float | None) -> dict:
    from prerl_trl import rewards

    _warmup()
    metrics: dict[str, float] = {}

    def log_metric(name: str, value: float) -> None:
        metrics[name] = metrics.get(name, 0.0) + value

    verdicts, batch_seconds = _score_batches(items, batch_size, timeout, log_metric)
    _, clean_seconds = _score_batches([it for it in items if not it["adversarial"]], batch_size, timeout)

    latencies = []
    for it in items:
        t1 = time.perf_counter()
        rewards.math_accuracy_reward([it["completion"]], answer=[it["gold"]], timeout_seconds=timeout)
        latencies.append(time.perf_counter() - t1)
    return {
        "verdicts": verdicts,
        "batch_seconds": batch_seconds,
        "clean_seconds": clean_seconds,
        "latencies": latencies,
        "metrics": metrics,
    }


def _accuracy(verdicts: list, items: list[dict]) -> float:
    return sum(
        (v if isinstance(v, float) else 0.0) == it["truth"] for v, it in zip(verdicts, items, strict=True)
    ) / len(items)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=300, help="items in the mixed set")
    parser.add_argument("--adversarial-frac", type=float, default=0.1)
    parser.add_argument(
        "--batch-size", type=int, default=64, help="completions per reward call (one GRPO step)"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="our limit per verification (default: ours)"
    )
    parser.add_argument(
        "--trl-guard", type=float, default=20.0, help="kill a reference verifier after this many seconds per item"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pool", choices=("ours", "pebble-spawn", "pebble-fork"), default="ours")
    parser.add_argument(
        "--references", default="trl,math_verify", help="reference verifiers to time: trl, math_verify (comma-separated)"
    )
    parser.add_argument("--skip-trl", action="store_true", help="time our reward only (no reference verifier)")
    parser.add_argument("--contexts", action="store_true", help="also time calls from threads and a DataLoader worker")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/reward_throughput.json"))
    args = parser.parse_args(argv)

    from prerl_trl import rewards

    limit = rewards.DEFAULT_TIMEOUT_SECONDS if args.timeout is None else args.timeout
    items = build_items(args.n, args.adversarial_frac, args.seed)
    n_adv = sum(it["adversarial"] for it in items)
    print(
        f"{len(items)} items ({n_adv} adversarial), {os.cpu_count()} CPUs, our limit {limit:g}s", flush=True
    )

    use_pool(args.pool)
    ours = run_ours(items, args.batch_size, args.timeout)
    ours_summary = {
        "pool": args.pool,
        "verifications_per_second": len(items) / ours["batch_seconds"],
        "batch_seconds": ours["batch_seconds"],
        "batch_size": args.batch_size,
        "single_call_per_second": len(items) / sum(ours["latencies"]),
        "worst_latency_seconds": max(ours["latencies"]),
        "median_latency_seconds": statistics.median(ours["latencies"]),
        "calls_over_limit": sum(t > limit + 1.0 for t in ours["latencies"]),
        "clean_verifications_per_second": (len(items) - n_adv) / ours["clean_seconds"],
        "accuracy": _accuracy(ours["verdicts"], items),
        "none": sum(v is None for v in ours["verdicts"]),
        "metrics": ours["metrics"],
    }
    if args.contexts:
        ours_summary["contexts"] = check_contexts(args.pool, limit)
    if args.skip_trl:
        o = ours_summary
        print(
            f"ours ({args.pool}): {o['verifications_per_second']:.1f}/s (batches of {args.batch_size}), "
            f"{o['clean_verifications_per_second']:.1f}/s without adversarial items, worst single call "
            f"{o['worst_latency_seconds']:.2f}s, median {o['median_latency_seconds']:.3f}s, "
            f"{o['calls_over_limit']} over the limit, accuracy {o['accuracy']:.3f}"
        )
        if args.contexts:
            print(f"contexts: {o['contexts']}")
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"n": len(items), "adversarial": n_adv, "cpus": os.cpu_count(),
                                           "limit_seconds": limit, "ours": ours_summary}, indent=2))
        print(f"wrote {args.output}")
        return {"ours": ours_summary}

    result = {"n": len(items), "adversarial": n_adv, "cpus": os.cpu_count(), "limit_seconds": limit, "ours": ours_summary}
    o = ours_summary
    print(
        f"ours: {o['verifications_per_second']:.1f}/s (batches of {args.batch_size}), worst single call "
        f"{o['worst_latency_seconds']:.2f}s, {o['calls_over_limit']} over the limit, accuracy {o['accuracy']:.3f}"
    )
    for kind in args.references.split(","):
        verdicts, seconds = run_reference(kind, items, args.trl_guard)
        result[kind] = t = compare_reference(kind, verdicts, seconds, items, ours["verdicts"], o, args)
        print(
            f"{kind}: {t['verifications_per_second']:.1f}/s, worst item {t['worst_latency_seconds']:.2f}s, "
            f"{t['none']} None, {t['hangs_killed']} killed after {args.trl_guard:g}s, accuracy {t['accuracy']:.3f}"
        )
        sub = t["verdict_subset"]
        print(
            f"  ratio ours/{kind}: {t['throughput_ratio']:.2f}x on the mixed set, {t['clean_throughput_ratio']:.2f}x "
            f"on its non-adversarial items ({o['clean_verifications_per_second']:.1f}/s vs "
            f"{t['clean_verifications_per_second']:.1f}/s), {sub['ratio']:.2f}x on the {sub['n']} non-adversarial "
            f"items where {kind} gives a verdict; ours right where {kind} gave None: {t['ours_right_where_none']}"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.output}")
    return result


def compare_reference(
    kind: str, verdicts: list, seconds: list[float], items: list[dict], ours: list, ours_summary: dict, args
) -> dict:
    """One reference verifier's figures and its ratios to ours, on the same items."""
    n_adv = sum(it["adversarial"] for it in items)
    # like for like: the non-adversarial items on which the reference returns a verdict (TRL skips bare golds)
    both = [
        i for i, (v, it) in enumerate(zip(verdicts, items, strict=True)) if isinstance(v, float) and not it["adversarial"]
    ]
    _, ours_both_seconds = _score_batches([items[i] for i in both], args.batch_size, args.timeout)
    clean_seconds = sum(t for t, it in zip(seconds, items, strict=True) if not it["adversarial"])
    none = [i for i, v in enumerate(verdicts) if not isinstance(v, float)]
    summary = {
        "verifications_per_second": len(items) / sum(seconds),
        "seconds": sum(seconds),
        "clean_verifications_per_second": (len(items) - n_adv) / clean_seconds,
        "worst_latency_seconds": max(seconds),
        "median_latency_seconds": statistics.median(seconds),
        "accuracy": _accuracy(verdicts, items),
        "none": sum(v is None for v in verdicts),
        "hangs_killed": sum(v == "hang" for v in verdicts),
        "ours_right_where_none": f"{sum(ours[i] == items[i]['truth'] for i in none)}/{len(none)}",
    }
    summary["throughput_ratio"] = ours_summary["verifications_per_second"] / summary["verifications_per_second"]
    summary["clean_throughput_ratio"] = (
        ours_summary["clean_verifications_per_second"] / summary["clean_verifications_per_second"]
    )
    both_seconds = sum(seconds[i] for i in both)
    summary["verdict_subset"] = {
        "n": len(both),
        "ours_per_second": len(both) / ours_both_seconds if both else None,
        "reference_per_second": len(both) / both_seconds if both else None,
        "ratio": both_seconds / ours_both_seconds if both else None,
    }
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
