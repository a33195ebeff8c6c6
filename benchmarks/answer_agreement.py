r"""Agreement with public answer-equivalence verdicts: math_accuracy_reward against plain math-verify.

The cases are ``tests/data/answer_equivalence_cases.jsonl``: math-verify's own test tables and the
Hendrycks MATH ``is_equiv`` tests, as completion/gold pairs with their published verdicts (built by
``tests/scripts/build_answer_cases.py``, which says how). Both verifiers see the same completion and
gold strings:

- ours: ``math_accuracy_reward([completion], answer=[gold])`` (None, an unparseable gold, counts as 0);
- plain math-verify: ``verify(parse(gold), parse(completion))`` with math-verify's defaults.

    python benchmarks/answer_agreement.py --output benchmarks/results/answer_agreement.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

CASES = Path(__file__).resolve().parents[1] / "tests" / "data" / "answer_equivalence_cases.jsonl"


def load_cases(path: Path = CASES) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def source_name(case: dict) -> str:
    """``math-verify`` or ``hendrycks``: the upstream a case comes from."""
    return case["source"].split("==")[0].split("/")[0]


def plain_math_verify(cases: list[dict]) -> list[int]:
    """math-verify's verdict with its default configuration, 1 or 0 (an exception counts as 0)."""
    from math_verify import parse, verify

    verdicts = []
    for case in cases:
        try:
            verdicts.append(int(bool(verify(parse(case["gold"]), parse(case["completion"])))))
        except Exception:  # noqa: BLE001 - its own timeouts and parser errors
            verdicts.append(0)
    return verdicts


def ours(cases: list[dict]) -> list[int]:
    from prerl_trl.rewards import math_accuracy_reward

    rewards = math_accuracy_reward([c["completion"] for c in cases], answer=[c["gold"] for c in cases])
    return [int(r == 1.0) for r in rewards]


def agreement(cases: list[dict], verdicts: list[int]) -> dict[str, int]:
    """Cases whose verdict equals the published one, per source and in all."""
    counts: dict[str, int] = defaultdict(int)
    for case, verdict in zip(cases, verdicts, strict=True):
        if verdict == case["expected"]:
            counts[source_name(case)] += 1
            counts["all"] += 1
    return dict(counts)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("outputs/answer_agreement.json"))
    args = parser.parse_args(argv)
    cases = load_cases()
    totals: dict[str, int] = defaultdict(int)
    for case in cases:
        totals[source_name(case)] += 1
        totals["all"] += 1
    verdicts = {"ours": ours(cases), "math_verify": plain_math_verify(cases)}
    counts = {name: agreement(cases, v) for name, v in verdicts.items()}
    for source, total in totals.items():
        print(
            f"{source:12s} {total:4d} cases: ours {counts['ours'].get(source, 0):4d}, "
            f"plain math-verify {counts['math_verify'].get(source, 0):4d}"
        )
    differ = [
        {**case, "ours": o, "math_verify": m}
        for case, o, m in zip(cases, verdicts["ours"], verdicts["math_verify"], strict=True)
        if o != case["expected"] or m != case["expected"]
    ]
    print(f"{len(differ)} cases where at least one verifier disagrees with the published verdict")
    result = {"cases": dict(totals), "agreement": counts, "disagreements": differ}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"wrote {args.output}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
