"""`prerl-trl eval`: the command line of `evaluate`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data import SYSTEM_PROMPT
from .benchmarks import OOD_BENCHMARKS, _known_datasets
from .defaults import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_N,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_P,
    RESULTS_FILE,
    VERIFIERS,
    EvaluationError,
)
from .report import markdown_table
from .runner import evaluate


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    known = _known_datasets()
    p = argparse.ArgumentParser(
        prog="prerl-trl eval",
        description="avg@n and pass@k of a model on math benchmarks, HumanEval, GPQA-Diamond and MMLU-Pro, with the "
        "paper's protocol by default (n=32, temperature 1.0, top_p 1.0, its system prompt and the chat template).",
    )
    p.add_argument("--model", required=True, help="model directory or Hub id")
    p.add_argument("--dataset", "--benchmark", dest="dataset", action="append", required=True, metavar="NAME_OR_FILE",
                   help="a known math benchmark (" + ", ".join(known) + "), " + ", ".join(OOD_BENCHMARKS) + " (outside "
                   "math), a local .json/.jsonl/.parquet file with 'problem' (or 'question') and 'answer' columns or "
                   "in the HumanEval / GPQA / MMLU-Pro Hub format, or a hub id; repeatable")
    p.add_argument("--output-dir", required=True, help="where results.json, pass_at_k.png and the cache go")
    p.add_argument("--n", type=_positive_int, default=DEFAULT_N, help="samples per problem (default 32)")
    p.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE, help="default 1.0; 0 is greedy")
    p.add_argument("--top-p", type=float, default=DEFAULT_TOP_P, help="default 1.0")
    p.add_argument("--max-tokens", type=_positive_int, default=DEFAULT_MAX_TOKENS,
                   help="maximum response tokens (default 8192, the paper's response length)")
    p.add_argument("--backend", choices=("auto", "vllm", "transformers"), default="auto",
                   help="auto: vLLM when installed and a GPU is present, else transformers")
    p.add_argument("--batch-size", type=_positive_int, default=32,
                   help="sequences per transformers generate call (default 32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--system-prompt", default=SYSTEM_PROMPT, help="default: the paper's; '' for none")
    p.add_argument("--no-chat-template", action="store_true", help="plain-text prompts (base models)")
    p.add_argument("--thinking", action="store_true", help="enable_thinking=True in the chat template (Qwen3)")
    p.add_argument("--split", default=None, help="dataset split for known benchmarks (loader default otherwise)")
    p.add_argument("--limit", type=_positive_int, default=None, help="only the first N problems of each dataset")
    p.add_argument("--problem-field", "--problem_field", "--problem-column", dest="problem_column", default=None,
                   help="problem column of a local file (the spelling of `train`; --problem-column is an alias)")
    p.add_argument("--answer-field", "--answer_field", "--answer-column", dest="answer_column", default=None,
                   help="gold-answer column of a local file (the spelling of `train`; --answer-column is an alias)")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    p.add_argument("--tensor-parallel-size", type=_positive_int, default=1, help="vLLM only")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="vLLM only")
    p.add_argument("--overwrite", action="store_true", help="discard the generation cache in --output-dir")
    p.add_argument("--verifier", choices=VERIFIERS, default="math_accuracy",
                   help="answer check: math_accuracy (math-verify, default) or math_string_match (the "
                   "Hendrycks-MATH string match of the paper's runs)")
    p.add_argument("--code-timeout", type=float, default=5.0,
                   help="humaneval: wall-clock seconds per completion's test run (default 5)")
    p.add_argument("--code-memory-mb", type=_positive_int, default=1024,
                   help="humaneval: memory limit of a test run in MiB (default 1024)")
    p.add_argument("--code-workers", type=_positive_int, default=None,
                   help="humaneval: test runs at a time (default: one per usable CPU)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    """`prerl-trl eval`: returns the exit code (2 on bad input)."""
    args = build_parser().parse_args(argv)
    try:
        results = evaluate(
            args.model, args.dataset, output_dir=args.output_dir, n=args.n, temperature=args.temperature,
            top_p=args.top_p, max_tokens=args.max_tokens, backend=args.backend, batch_size=args.batch_size,
            seed=args.seed, system_prompt=args.system_prompt or None, chat_template=not args.no_chat_template,
            thinking=args.thinking, split=args.split, limit=args.limit, problem_column=args.problem_column,
            answer_column=args.answer_column, dtype=args.dtype, tensor_parallel_size=args.tensor_parallel_size,
            gpu_memory_utilization=args.gpu_memory_utilization, overwrite=args.overwrite, plot=not args.no_plot,
            progress=not args.no_progress, verifier=args.verifier, code_timeout=args.code_timeout,
            code_memory_mb=args.code_memory_mb, code_workers=args.code_workers,
        )
    except (EvaluationError, OSError) as err:
        print(f"prerl-trl eval: error: {err}", file=sys.stderr)
        return 2
    print(markdown_table(results))
    for name, bench in results["benchmarks"].items():
        if "execution" in bench:
            outcomes = ", ".join(f"{k} {v}" for k, v in sorted(bench["execution"]["outcomes"].items()))
            print(f"\n{name}: tests run in the sandbox ({'; '.join(bench['execution']['isolation'])}): {outcomes}")
    print(f"\nwrote {Path(args.output_dir) / RESULTS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
