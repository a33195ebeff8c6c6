"""Benchmark evaluation: avg@n and unbiased pass@k on math benchmarks, and outside math on HumanEval, GPQA-Diamond and
MMLU-Pro (`prerl-trl eval`).

The default protocol is the paper's (arXiv 2604.14142, its evaluation setup): n = 32 samples per problem at
temperature 1.0 and top_p 1.0, the system prompt "Please reason step by step, and put your final answer within
\\boxed{}." and the model's chat template (thinking disabled). avg@n is the mean accuracy over all n samples of all
problems; pass@k is the unbiased estimator 1 - C(n-c, k) / C(n, k) averaged over problems.

Generation uses vLLM's offline engine when vLLM is installed and a GPU is present, else transformers `generate` in
batches. Every finished batch is appended to `generations.jsonl` in the output directory and flushed, so a re-run
with the same settings and the same model resumes where the last one stopped and regenerates nothing it already has.

One concern per module: `defaults` (protocol and file names), `metrics`, `benchmarks` (loading, prompts), `choice`
(GPQA / MMLU-Pro rows, prompt, letter extraction), `humaneval` (problems, programs), `sandbox` (running them), `cache`
(the generation cache and when it is valid), `backends` (generation, model loading), `report` (scores, summaries,
table, plot), `runner` (`evaluate`) and `cli`. Every name below stays importable from `prerl_trl.evaluation`.
"""

from ..data import SYSTEM_PROMPT
from .backends import (
    check_model_source,
    generate_transformers,
    generate_vllm,
    load_hf_model,
    load_tokenizer,
    resolve_backend,
    run_generation,
    vllm_available,
)
from .benchmarks import OOD_BENCHMARKS, Benchmark, benchmark_name, load_benchmark, render_prompts
from .cache import GenerationCache, Key, WorkItem, check_settings, model_fingerprint, prompt_hash
from .choice import choice_prompt, extract_choice, gpqa_row, mmlu_pro_row, shuffle_order
from .cli import _positive_int, build_parser, main
from .defaults import (
    CACHE_FILE,
    CACHE_KEY_SETTINGS,
    DEFAULT_MAX_TOKENS,
    DEFAULT_N,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_P,
    LOCAL_SUFFIXES,
    PLOT_FILE,
    RESULTS_FILE,
    SETTINGS_FILE,
    VERIFIERS,
    EvaluationError,
)
from .humaneval import build_program, extract_code, load_problems
from .metrics import avg_at_n, avg_at_n_ci, mean_pass_at_k, paired_difference_ci, pass_at_k, pass_at_k_ks
from .report import (
    markdown_table,
    mean_over_benchmarks,
    plot_pass_at_k,
    score_benchmark,
    score_completions,
    summarize_benchmark,
)
from .runner import evaluate, library_progress_bars
from .sandbox import RunResult, SandboxLimits, run_many, run_python

__all__ = [
    "CACHE_FILE",
    "CACHE_KEY_SETTINGS",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_N",
    "DEFAULT_TEMPERATURE",
    "DEFAULT_TOP_P",
    "LOCAL_SUFFIXES",
    "OOD_BENCHMARKS",
    "PLOT_FILE",
    "RESULTS_FILE",
    "SETTINGS_FILE",
    "SYSTEM_PROMPT",
    "VERIFIERS",
    "Benchmark",
    "EvaluationError",
    "GenerationCache",
    "Key",
    "RunResult",
    "SandboxLimits",
    "WorkItem",
    "_positive_int",
    "avg_at_n",
    "avg_at_n_ci",
    "benchmark_name",
    "build_parser",
    "build_program",
    "choice_prompt",
    "check_model_source",
    "check_settings",
    "evaluate",
    "extract_choice",
    "extract_code",
    "generate_transformers",
    "generate_vllm",
    "gpqa_row",
    "library_progress_bars",
    "load_benchmark",
    "load_hf_model",
    "load_problems",
    "load_tokenizer",
    "main",
    "markdown_table",
    "mean_over_benchmarks",
    "mean_pass_at_k",
    "mmlu_pro_row",
    "model_fingerprint",
    "paired_difference_ci",
    "pass_at_k",
    "pass_at_k_ks",
    "plot_pass_at_k",
    "prompt_hash",
    "render_prompts",
    "resolve_backend",
    "run_generation",
    "run_many",
    "run_python",
    "score_benchmark",
    "score_completions",
    "shuffle_order",
    "summarize_benchmark",
    "vllm_available",
]
