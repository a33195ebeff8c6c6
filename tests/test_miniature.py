"""Smoke test of the miniature benchmark (benchmarks/miniature): a few pretraining steps and 2 RL steps per method.

It checks that the pipeline runs end to end and writes its outputs; the real numbers live in the benchmark."""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, where benchmarks/ lives

from benchmarks.miniature import task  # noqa: E402
from benchmarks.miniature.presets import get_preset  # noqa: E402
from benchmarks.miniature.rl import METHODS  # noqa: E402
from benchmarks.miniature.run import compare  # noqa: E402


def test_task_solutions_and_reward():
    rng = random.Random(0)
    problem = task.Problem(7, (("+", 5), ("*", 3), ("-", 4)))
    assert problem.answer == "32"  # left to right: (7 + 5) * 3 - 4, computed by hand
    right = task.solution(problem, "correct", rng)
    assert right == "7+5=12. 12*3=36. 36-4=32. \\boxed{32}"
    assert task.exact_match_reward([right, right.replace("{32}", "{31}"), "no box"], ["32"] * 3) == [1.0, 0.0, 0.0]
    for _ in range(20):  # a wrong solution's box never holds the answer; the reflective styles end right
        assert task.boxed_answer(task.solution(problem, "wrong", rng)) != "32"
        for style in ("reflect_fix", "switch_fix", "double_check"):
            assert task.boxed_answer(task.solution(problem, style, rng)) == "32"


def test_splits_are_disjoint():
    data = task.splits(3, num_pretrain=300, num_rl=50, num_val=20, num_test=20, seed=0)
    held_out = {p.question for name in ("val", "test") for p in data[name]}
    assert len(held_out) == 40
    assert not held_out & {p.question for p in data["pretrain"] + data["rl"]}
    for p in data["pretrain"]:
        value = p.start
        for op, n in p.steps:
            value = {"+": value + n, "-": value - n, "*": value * n}[op]
            assert 0 <= value <= task.MAX_VALUE


def test_pipeline_writes_outputs(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    preset = get_preset("smoke")
    results = compare(preset, out, cache, learning_rates={"nsr_prerl": 5e-4})  # the per-method rule, for one method
    written = json.loads((out / "results.json").read_text())
    assert (out / "miniature.png").stat().st_size > 1000
    assert set(written["runs"]) == set(METHODS)
    k = written["settings"]["rl"]["eval_k"]
    for method in METHODS:
        curve = written["runs"][method]["1"]["eval"]
        assert [p["step"] for p in curve] == [0, 2]  # the base, then every 2 steps
        for point in curve:
            assert 0.0 <= point[f"avg@{k}"] <= point["pass@k"][str(k)] <= 1.0
        train_log = written["runs"][method]["1"]["train"]
        assert len(train_log) == 2
        # The optimizer ran at the method's own learning rate where one was given, else at the preset's.
        expected = 5e-4 if method == "nsr_prerl" else preset.rl.learning_rate
        assert [e["learning_rate"] for e in train_log] == pytest.approx([expected] * 2)
    assert written["gradient_alignment_base"]["num_pairs"] == 4
    assert math.isfinite(written["gradient_alignment_base"]["cosine_mean"])
    assert results["summary"]["base"][f"avg@{k}"]["values"] == [written["runs"]["grpo"]["1"]["eval"][0][f"avg@{k}"]]
    # The base checkpoint is cached: a second pretraining call reuses it.
    assert len(list(cache.glob("base-*/pretrain.json"))) == 1
