"""GPQA-Diamond and MMLU-Pro: fixtures in the Hub formats, the seeded choice shuffle, the letter extraction, the
one-line errors for a dataset that cannot be loaded, and `prerl-trl eval` end to end on the tiny model."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _tiny_eval import save_tiny_model  # noqa: E402

from prerl_trl import evaluation  # noqa: E402
from prerl_trl.evaluation import EvaluationError, extract_choice, load_benchmark, shuffle_order  # noqa: E402

DATA = Path(__file__).parent / "data"
GPQA = DATA / "gpqa_diamond_sample.jsonl"
MMLU_PRO = DATA / "mmlu_pro_sample.jsonl"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _listed_choices(user_message: str) -> dict[str, str]:
    """The choices a prompt shows, read back from its "X) text" lines (independent of the loader)."""
    return dict(re.findall(r"^([A-J])\) (.*)$", user_message, flags=re.MULTILINE))


# --------------------------------------------------------------------------------------------------------------------
# Loading the Hub formats from local files
# --------------------------------------------------------------------------------------------------------------------


def test_gpqa_fixture_shows_every_choice_once_and_the_gold_letter_points_at_the_correct_answer():
    bench = load_benchmark(str(GPQA))
    rows = _rows(GPQA)
    assert bench.kind == "choice" and bench.name == "gpqa_diamond_sample" and len(bench) == len(rows)
    for row, messages, gold in zip(rows, bench.messages, bench.answers, strict=True):
        assert messages[0] == {"role": "system", "content": evaluation.SYSTEM_PROMPT}
        user = messages[-1]["content"]
        assert user.startswith(row["Question"]) and "\\boxed{}" in user
        listed = _listed_choices(user)
        assert sorted(listed) == ["A", "B", "C", "D"]
        expected = [row["Correct Answer"], *(row[f"Incorrect Answer {i}"] for i in (1, 2, 3))]
        assert sorted(listed.values()) == sorted(expected)
        assert listed[gold] == row["Correct Answer"]
    # over the four rows the correct answer does not always sit first (it is choice 0 before the shuffle)
    assert {_listed_choices(m[-1]["content"])["A"] for m in bench.messages} != {r["Correct Answer"] for r in rows}


def test_mmlu_pro_fixture_keeps_the_option_order_and_the_gold_letter(tmp_path):
    rows = _rows(MMLU_PRO)
    bench = load_benchmark(str(MMLU_PRO))
    assert bench.kind == "choice" and len(bench) == len(rows)
    for row, messages, gold, problem in zip(rows, bench.messages, bench.answers, bench.problems, strict=True):
        listed = _listed_choices(messages[-1]["content"])
        assert list(listed.values()) == row["options"]
        assert gold == row["answer"] and listed[gold] == row["options"][row["answer_index"]]
        assert problem["letters"] == "ABCDEFGHIJ"[: len(row["options"])]


def test_parquet_copies_load_like_jsonl(tmp_path):
    import datasets

    for source in (GPQA, MMLU_PRO):
        parquet = tmp_path / (source.stem + ".parquet")
        datasets.Dataset.from_list(_rows(source)).to_parquet(str(parquet))
        a, b = load_benchmark(str(source)), load_benchmark(str(parquet))
        assert (a.messages, a.answers, a.kind) == (b.messages, b.answers, b.kind)


def test_limit_and_a_bad_answer_letter(tmp_path):
    assert len(load_benchmark(str(MMLU_PRO), limit=2)) == 2
    rows = _rows(MMLU_PRO)
    rows[1] = {**rows[1], "answer": "H", "answer_index": None}  # six options: H is not one of them
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(EvaluationError, match=r"row 1: .*'H' is not one of its options"):
        load_benchmark(str(bad))


# --------------------------------------------------------------------------------------------------------------------
# The seeded shuffle
# --------------------------------------------------------------------------------------------------------------------


def test_shuffle_is_a_stable_seeded_permutation_that_ignores_row_order(tmp_path):
    keys = [f"rec{i:04d}" for i in range(400)]
    orders = [shuffle_order(k, 4) for k in keys]
    assert all(sorted(o) == [0, 1, 2, 3] for o in orders)
    assert orders == [shuffle_order(k, 4) for k in keys]  # same key, same order
    assert orders != [shuffle_order(k, 4, seed=1) for k in keys]  # another seed, another order
    # where the correct answer (index 0) lands: close to uniform over the four letters (expected 100 each)
    positions = [o.index(0) for o in orders]
    assert all(60 <= positions.count(p) <= 140 for p in range(4)), [positions.count(p) for p in range(4)]
    # the order of a question does not depend on which rows come before it
    reversed_file = tmp_path / "reversed.jsonl"
    reversed_file.write_text("".join(json.dumps(r) + "\n" for r in reversed(_rows(GPQA))))
    forward, backward = load_benchmark(str(GPQA)), load_benchmark(str(reversed_file))
    assert forward.messages == backward.messages[::-1] and forward.answers == backward.answers[::-1]


# --------------------------------------------------------------------------------------------------------------------
# Letter extraction
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The photon carries it. \\boxed{A}", "A"),
        ("so \\boxed{\\text{C}}", "C"),
        ("\\boxed{(B)}", "B"),
        ("\\boxed{b}", "B"),
        ("\\boxed{D) The graviton}", "D"),
        ("first \\boxed{A}, on reflection \\boxed{C}", "C"),  # the last box decides
        ("\\boxed{\\textbf{B}}.", "B"),
        ("Reasoning...\nB", "B"),  # a bare letter on the last line
        ("Reasoning...\n**Answer: C**", "C"),
        ("Reasoning...\nThe correct answer is (D).", "D"),
        ("Reasoning...\nTherefore, the answer is B", "B"),
        ("\\boxed{A or B}", None),  # hedges and lists score 0
        ("\\boxed{A, C}", None),
        ("\\boxed{A and D}", None),
        ("The answer is A or B.", None),
        ("Reasoning...\nB, C", None),
        ("\\boxed{E}", None),  # not one of the four choices
        ("\\boxed{42}", None),
        ("I think it is A because of B", None),  # a sentence is not a bare letter
        ("", None),
        ("\\boxed{}", None),
    ],
)
def test_extract_choice(text, expected):
    assert extract_choice(text, "ABCD") == expected


def test_extract_choice_respects_the_number_of_options():
    assert extract_choice("\\boxed{J}", "ABCDEFGHIJ") == "J"
    assert extract_choice("\\boxed{G}", "ABCDEF") is None


# --------------------------------------------------------------------------------------------------------------------
# A dataset that cannot be loaded: one line
# --------------------------------------------------------------------------------------------------------------------


def test_gated_dataset_is_one_line_with_the_login_and_a_local_copy(monkeypatch):
    import datasets

    def gated(*args, **kwargs):
        raise datasets.exceptions.DatasetNotFoundError(
            "Dataset 'Idavidrein/gpqa' is a gated dataset on the Hub.\nYou must be authenticated to access it."
        )

    monkeypatch.setattr(datasets, "load_dataset", gated)
    with pytest.raises(EvaluationError) as err:
        load_benchmark("gpqa_diamond")
    message = str(err.value)
    assert "\n" not in message
    assert "gated" in message and "hf auth login" in message and "path/to/gpqa_diamond.parquet" in message


def test_offline_hub_dataset_is_one_line_from_the_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = save_tiny_model(tmp_path / "model")
    capsys.readouterr()
    code = evaluation.main(["--model", str(model), "--benchmark", "mmlu_pro", "--output-dir", str(tmp_path / "o"),
                            "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("prerl-trl eval: error: mmlu_pro: cannot load TIGER-Lab/MMLU-Pro")
    assert "local copy" in err and "gated" not in err


# --------------------------------------------------------------------------------------------------------------------
# End to end on the tiny model, then scored from a rewritten cache
# --------------------------------------------------------------------------------------------------------------------


def test_eval_gpqa_end_to_end_and_scores_from_the_cache(tmp_path, capsys, monkeypatch):
    model = save_tiny_model(tmp_path / "model")
    out = tmp_path / "out"
    args = ["--model", str(model), "--benchmark", str(GPQA), "--benchmark", str(MMLU_PRO), "--n", "3",
            "--max-tokens", "4", "--output-dir", str(out), "--no-progress", "--no-plot"]
    assert evaluation.main(args) == 0
    lines = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert len(lines) == (4 + 4) * 3
    # the tiny model writes no letters: rewrite the cached completions with known answers, read back from the prompt
    rows = {"gpqa_diamond_sample": _rows(GPQA), "mmlu_pro_sample": _rows(MMLU_PRO)}
    expected: dict[str, int] = {"gpqa_diamond_sample": 0, "mmlu_pro_sample": 0}
    for rec in lines:
        row = rows[rec["dataset"]][rec["index"]]
        correct = row.get("Correct Answer") or row["options"][row["answer_index"]]
        letter = next(k for k, v in _listed_choices(rec["prompt"]).items() if v == correct)
        wrong = next(k for k in "ABCD" if k != letter)
        rec["completion"] = {0: f"Reasoning. \\boxed{{{letter}}}", 1: f"\\boxed{{{letter} or {wrong}}}",
                             2: f"Reasoning.\n{letter}" if rec["index"] % 2 else f"\\boxed{{{wrong}}}"}[rec["sample"]]
        expected[rec["dataset"]] += rec["sample"] == 0 or (rec["sample"] == 2 and rec["index"] % 2 == 1)
    (out / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))

    from transformers import Qwen2ForCausalLM

    def no_generation(*a, **k):
        raise AssertionError("everything is cached")

    monkeypatch.setattr(Qwen2ForCausalLM, "generate", no_generation)
    capsys.readouterr()
    assert evaluation.main(args) == 0
    results = json.loads((out / "results.json").read_text())
    for name, correct in expected.items():
        bench = results["benchmarks"][name]
        assert bench["kind"] == "choice"
        assert bench["avg_at_n"] == pytest.approx(correct / (4 * 3))
        assert [p["correct"] for p in bench["problems"]] == [1 + (i % 2) for i in range(4)]
    assert "| gpqa_diamond_sample | 4 |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "fixture", "split", "expected_call"),
    [
        ("gpqa_diamond", GPQA, None, ("Idavidrein/gpqa", "gpqa_diamond", "train")),
        ("gpqa_diamond", GPQA, "test", ("Idavidrein/gpqa", "gpqa_diamond", "train")),  # --split is math's
        ("mmlu_pro", MMLU_PRO, None, ("TIGER-Lab/MMLU-Pro", None, "test")),
        ("mmlu_pro", MMLU_PRO, "validation", ("TIGER-Lab/MMLU-Pro", None, "validation")),
    ],
)
def test_hub_names_load_the_hub_dataset(monkeypatch, name, fixture, split, expected_call):
    import datasets

    calls = []

    def fake_load_dataset(repo, config=None, split=None, **kwargs):
        calls.append((repo, config, split))
        return datasets.Dataset.from_list(_rows(fixture))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    bench = load_benchmark(name, split=split)
    assert calls == [expected_call]
    local = load_benchmark(str(fixture))
    assert bench.name == name and (bench.messages, bench.answers) == (local.messages, local.answers)


def test_shuffle_is_the_same_in_another_process_and_matches_a_hand_computation():
    import hashlib
    import subprocess
    import sys

    from prerl_trl.evaluation.choice import GPQA_SHUFFLE_SEED

    keys = [f"rec{i:04d}" for i in range(20)]
    code = ("import json, sys\nfrom prerl_trl.evaluation import shuffle_order\n"
            f"print(json.dumps([shuffle_order(k, 4) for k in {keys!r}]))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # another str-hash seed than this process's
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True)
    assert json.loads(out.stdout) == [shuffle_order(k, 4) for k in keys]
    by_hand = sorted(range(4), key=lambda i: hashlib.sha256(f"{GPQA_SHUFFLE_SEED}\0rec0000\0{i}".encode()).hexdigest())
    assert shuffle_order("rec0000", 4) == by_hand
