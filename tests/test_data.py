"""Tests for prerl_trl.data: every known source, read offline from small files in its own schema."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import dataclasses
import json
import re
from pathlib import Path

import datasets
import pytest

from prerl_trl import data
from prerl_trl.data import KNOWN_DATASETS, SYSTEM_PROMPT, extract_answer, load_math_dataset

DATA = Path(__file__).parent / "data"

# short name -> (local file in the source's schema, expected answers in order)
FIXTURES = {
    "math": ("math_lighteval.jsonl", [r"\frac{1}{2}", r"\text{(B)}", "2"]),  # 4th row has no \boxed{}
    "math500": ("math500.jsonl", [r"\left( 3, \frac{\pi}{2} \right)", r"[1,\infty)"]),
    "aime24": ("aime_2024.jsonl", ["204", "113"]),
    "aime25": ("aime_2025.jsonl", ["70"]),
    "amc23": ("amc23.parquet", ["27", "0.5"]),
    "dapo17k": ("dapo17k.jsonl", ["4"]),
    "deepscaler": ("deepscaler.jsonl", [r"-\frac{2}{3}"]),
    "gsm8k": ("gsm8k.jsonl", ["72", "2500"]),
}


def test_system_prompt_is_the_papers():
    assert SYSTEM_PROMPT == r"Please reason step by step, and put your final answer within \boxed{}."


def test_registry_covers_the_paper_sources():
    assert set(FIXTURES) <= set(KNOWN_DATASETS)
    assert KNOWN_DATASETS["math"].path == "DigitalLearningGmbH/MATH-lighteval"
    assert KNOWN_DATASETS["gsm8k"].config_name == "main"


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_known_dataset_from_local_files(name):
    filename, answers = FIXTURES[name]
    ds = load_math_dataset(name, data_files=str(DATA / filename))
    assert isinstance(ds, datasets.Dataset)
    assert ds.column_names == ["prompt", "answer"]
    assert ds["answer"] == answers
    for prompt in ds["prompt"]:
        assert [m["role"] for m in prompt] == ["system", "user"]
        assert prompt[0]["content"] == SYSTEM_PROMPT
        assert prompt[1]["content"].strip()


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_hub_path_uses_registry_id_config_and_split(name, monkeypatch):
    """The hub call gets the registry's id, config and split; we serve the local copy in its place."""
    filename, answers = FIXTURES[name]
    spec = KNOWN_DATASETS[name]
    calls = []
    real_load = datasets.load_dataset

    def fake_load(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        builder = "parquet" if filename.endswith(".parquet") else "json"
        return real_load(builder, data_files={split: str(DATA / filename)}, split=split)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    ds = load_math_dataset(name)
    assert calls == [(spec.path, spec.config_name, spec.split)]
    assert ds["answer"] == answers


def test_registry_source_can_point_to_a_mirror(monkeypatch):
    spec = dataclasses.replace(KNOWN_DATASETS["gsm8k"], path=str(DATA / "gsm8k.jsonl"))
    monkeypatch.setitem(KNOWN_DATASETS, "gsm8k", spec)
    assert load_math_dataset("gsm8k")["answer"] == ["72", "2500"]


def test_dapo_instructions_are_stripped():
    (prompt,) = load_math_dataset("dapo17k", data_files=str(DATA / "dapo17k.jsonl"))["prompt"]
    assert prompt[1]["content"] == "Let $x$ satisfy $2x + 3 = 11$. Find $x$."


def test_math_row_without_box_is_dropped_or_kept():
    kept = load_math_dataset("math", data_files=str(DATA / "math_lighteval.jsonl"), drop_unanswered=False)
    assert kept["answer"][-1] == "" and len(kept) == 4


def test_plain_text_prompts_and_custom_system_prompt():
    ds = load_math_dataset("aime24", data_files=str(DATA / "aime_2024.jsonl"), conversational=False)
    assert ds["prompt"][0].startswith("Every morning Aya") and ds["prompt"][0].endswith(SYSTEM_PROMPT)
    ds = load_math_dataset("aime24", data_files=str(DATA / "aime_2024.jsonl"), system_prompt=None)
    assert [m["role"] for m in ds["prompt"][0]] == ["user"]


def test_local_file_with_question_and_answer_needs_no_arguments():
    ds = load_math_dataset(str(DATA / "custom_qa.json"))
    assert ds["answer"] == ["4", r"\frac12"]
    assert ds["prompt"][0][1]["content"] == "What is 2+2?"


def test_local_file_with_named_columns(tmp_path):
    ds = load_math_dataset(str(DATA / "custom_fields.parquet"), problem_field="q", solution_field="worked")
    assert ds["answer"] == ["12", r"2\sqrt{2}"]
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"text": "1+1?", "gold": "2"}) + "\n")
    ds = load_math_dataset(str(rows), problem_field="text", answer_field="gold", max_samples=5)
    assert ds["answer"] == ["2"] and ds["prompt"][0][1]["content"] == "1+1?"


def test_missing_columns_name_the_columns_and_the_fix(tmp_path):
    with pytest.raises(ValueError, match=r"'q', 'worked'.*problem_field="):
        load_math_dataset(str(DATA / "custom_fields.parquet"))
    with pytest.raises(ValueError, match=r"no column 'nope'.*'question', 'answer', 'source'.*answer_field="):
        load_math_dataset(str(DATA / "custom_qa.json"), answer_field="nope")
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"problem": "1+1?", "label": "2"}) + "\n")
    with pytest.raises(
        ValueError, match=r"no answer column.*'problem', 'label'.*answer_field=.*solution_field="
    ):
        load_math_dataset(str(rows))


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match=r"Unknown dataset 'aime2099'.*'aime24'.*'gsm8k'"):
        load_math_dataset("aime2099")


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "rows.txt"
    path.write_text("x")
    with pytest.raises(ValueError, match="unsupported file type"):
        load_math_dataset("math", data_files=str(path))


def test_extract_answer():
    assert extract_answer(r"so $\boxed{\frac{1}{2}}$ and finally \boxed{3}") == "3"
    assert extract_answer("work\n#### 1,234") == "1234"
    assert extract_answer(27.0) == "27"
    assert extract_answer("a long solution without a box", from_solution=True) is None
    assert extract_answer(r"\frac12") == r"\frac12"


def test_answers_feed_the_reward():
    from prerl_trl.rewards import math_accuracy_reward

    ds = load_math_dataset("math500", data_files=str(DATA / "math500.jsonl"))
    completions = [r"\boxed{(3, \pi/2)}", r"\boxed{[1, \infty)}"]
    assert math_accuracy_reward(completions, **ds.to_dict()) == [1.0, 1.0]
    assert data.build_prompt("p", conversational=False, system_prompt=None) == "p"


# ------------------------------------------------------------------------- verl-format parquet files
# Slices of the paper authors' own files (MATH train: the first 31 rows, two rows with an "=" gold,
# the empty gold at index 5341, the malformed one at 6811 and three matrices whose row breaks lost a
# backslash, 6754, 6757, 6762; AIME 2024: the first 3 rows).
VERL_MATH = DATA / "verl_math_train.parquet"
VERL_AIME = DATA / "verl_aime_2024.parquet"


def _raw_rows(path: Path) -> list[dict]:
    """The file's rows read with pyarrow, independently of `datasets` and of the loader."""
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


@pytest.mark.parametrize("path", [VERL_MATH, VERL_AIME], ids=lambda p: p.name)
def test_verl_parquet_is_read_as_it_is(path):
    rows = _raw_rows(path)
    answered = [r for r in rows if r["reward_model"]["ground_truth"].strip()]
    ds = load_math_dataset(str(path))
    assert ds.column_names == ["prompt", "answer"]
    assert ds["answer"] == [r["reward_model"]["ground_truth"] for r in answered]
    assert ds["prompt"] == [[{"role": m["role"], "content": m["content"]} for m in r["prompt"]] for r in answered]
    kept = load_math_dataset(str(path), drop_unanswered=False)
    assert len(kept) == len(rows)


def test_verl_parquet_plain_text_and_max_samples():
    rows = _raw_rows(VERL_AIME)
    ds = load_math_dataset(str(VERL_AIME), conversational=False, max_samples=2)
    system, user = rows[0]["prompt"][0]["content"], rows[0]["prompt"][1]["content"]
    assert ds["prompt"][0] == f"{user}\n\n{system}"
    assert len(ds) == 2


def test_verl_gold_answers_verify_against_themselves_under_both_rewards():
    """Every non-empty gold answer of the slice, boxed, scores 1.0 against itself (the malformed
    `2007+\\frac{\\}{p}i2` included); through the math-verify workers too, not only the string pre-check."""
    from prerl_trl import rewards
    from prerl_trl.rewards import equivalence

    golds = [r["reward_model"]["ground_truth"] for r in _raw_rows(VERL_MATH)]
    golds = [g for g in golds if g.strip()]
    assert r"2007+\frac{\}{p}i2" in golds
    completions = [f"So the answer is $\\boxed{{{g}}}$." for g in golds]
    assert rewards.math_string_match_reward(completions, answer=golds) == [1.0] * len(golds)
    assert rewards.math_accuracy_reward(completions, answer=golds) == [1.0] * len(golds)
    # math-verify itself (no string pre-check), as a worker runs it; the malformed gold does not parse
    equivalence.worker_setup()
    verdicts = [equivalence.worker_verify(equivalence.prepare(g), equivalence.prepare(g)) for g in golds]
    assert verdicts == [rewards.EQUAL if "\\}" not in g else rewards.GOLD_UNPARSEABLE for g in golds]


# ----------------------------------------------------------------------- missing files: one clear line
@pytest.mark.parametrize("name", ["data/nosuch.jsonl", "nosuch.jsonl", "./nosuch", "sub/dir/rows.parquet"])
def test_missing_local_file_says_file_not_found(name, monkeypatch):
    def no_hub(*args, **kwargs):
        raise AssertionError("the hub must not be asked for a missing local file")

    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    with pytest.raises(FileNotFoundError, match=rf"dataset file not found: '{re.escape(name)}'"):
        load_math_dataset(name)


def test_missing_data_files_says_file_not_found():
    with pytest.raises(FileNotFoundError, match=r"file not found: 'nosuch/rows.jsonl'"):
        load_math_dataset("math", data_files="nosuch/rows.jsonl")


def test_missing_file_is_one_line_from_the_cli(tmp_path, monkeypatch, capsys):
    from prerl_trl.cli import main

    monkeypatch.chdir(tmp_path)
    code = main(["train", "--model_name_or_path", "x", "--dataset_name", "data/nosuch.jsonl",
                 "--output_dir", str(tmp_path / "out"), "--report_to", "none", "--use_cpu", "true"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and "dataset file not found: 'data/nosuch.jsonl'" in err[0]


def test_overlong_prompt_count_renders_with_the_trainers_template_arguments():
    from _tiny_eval import build_tokenizer
    from datasets import Dataset

    from prerl_trl.data import count_overlong_prompts

    tokenizer = build_tokenizer()
    messages = [[{"role": "user", "content": "1 + 1"}], [{"role": "user", "content": "2 + 2 + 2"}]]
    dataset = Dataset.from_dict({"prompt": messages})
    template = "{% for m in messages %}{{ m['content'] }} {% endfor %}{{ preamble }}"

    def length(prompt, preamble):  # by hand: the template's output, tokenized
        text = " ".join(m["content"] for m in prompt) + " " + preamble
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    preamble = "1 " * 20
    longest_without = max(length(p, "") for p in messages)
    assert count_overlong_prompts(dataset, tokenizer, longest_without, chat_template=template) == 0
    assert count_overlong_prompts(dataset, tokenizer, longest_without, chat_template=template,
                                  preamble=preamble) == sum(length(p, preamble) > longest_without for p in messages)
    assert count_overlong_prompts(dataset, tokenizer, longest_without, chat_template=template, preamble=preamble) == 2
