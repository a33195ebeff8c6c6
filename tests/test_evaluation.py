"""pass@k against brute force; `prerl-trl eval` end to end on a tiny offline model, with crash and resume."""

from __future__ import annotations

import itertools
import json
import math
import os
from fractions import Fraction
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _tiny_eval import boxed_answers, build_tokenizer, save_tiny_model  # noqa: E402

from prerl_trl import evaluation  # noqa: E402
from prerl_trl.evaluation import EvaluationError, avg_at_n, pass_at_k, pass_at_k_ks  # noqa: E402

# --------------------------------------------------------------------------------------------------------------------
# pass@k
# --------------------------------------------------------------------------------------------------------------------


def brute_pass_at_k(n: int, c: int, k: int) -> Fraction:
    samples = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return Fraction(sum(1 for s in subsets if any(samples[i] for i in s)), len(subsets))


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_enumeration_over_subsets(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(float(brute_pass_at_k(n, c, k)), abs=1e-12), (n, c, k)


def test_pass_at_k_large_n_is_stable():
    for n, c, k in [(1000, 1, 1), (1000, 3, 10), (500, 250, 100), (2000, 7, 1024)]:
        exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
        assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-9)
    assert pass_at_k(32, 0, 32) == 0.0 and pass_at_k(32, 1, 32) == 1.0


@pytest.mark.parametrize(
    ("n", "c", "k", "match"),
    [(4, 1, 5, "k <= n"), (0, 0, 1, "n >= 1"), (-1, 0, 1, "n >= 1"), (4, 5, 1, r"\[0, n=4\]"), (4, 1, 0, "k >= 1")],
)
def test_pass_at_k_rejects_bad_arguments(n, c, k, match):
    with pytest.raises(ValueError, match=match):
        pass_at_k(n, c, k)


def test_ks_and_avg():
    assert pass_at_k_ks(32) == [1, 2, 4, 8, 16, 32]
    assert pass_at_k_ks(3) == [1, 2, 3]
    assert pass_at_k_ks(1) == [1]
    assert avg_at_n([1, 4, 0], 4) == pytest.approx(5 / 12)
    with pytest.raises(ValueError):
        avg_at_n([1], 0)


def test_confidence_intervals_against_hand_computation():
    from prerl_trl.evaluation import avg_at_n_ci, paired_difference_ci

    # per-problem accuracies 0.25, 0.5, 1.0 (n = 4): mean 7/12, sample sd sqrt(((-1/3)^2 + (-1/12)^2 + (5/12)^2) / 2)
    sd = math.sqrt(((0.25 - 7 / 12) ** 2 + (0.5 - 7 / 12) ** 2 + (1.0 - 7 / 12) ** 2) / 2)
    avg, low, high = avg_at_n_ci([1, 2, 4], 4)
    assert avg == pytest.approx(7 / 12)
    assert (low, high) == pytest.approx((7 / 12 - 1.96 * sd / math.sqrt(3), 7 / 12 + 1.96 * sd / math.sqrt(3)))
    # paired: differences 0.25, 0.25, 0.0 -> mean 1/6, sd sqrt(((1/12)^2 * 2 + (1/6)^2) / 2)
    sd = math.sqrt(((1 / 12) ** 2 * 2 + (1 / 6) ** 2) / 2)
    change, low, high = paired_difference_ci([1, 2, 4], [2, 3, 4], 4)
    assert change == pytest.approx(1 / 6)
    assert (low, high) == pytest.approx((1 / 6 - 1.96 * sd / math.sqrt(3), 1 / 6 + 1.96 * sd / math.sqrt(3)))
    # the same shift on every problem is certain: a zero-width paired interval, however different the problems
    assert paired_difference_ci([0, 4, 2], [1, 5, 3], 8) == pytest.approx((1 / 8, 1 / 8, 1 / 8))
    with pytest.raises(ValueError, match="two problems"):
        avg_at_n_ci([3], 4)
    with pytest.raises(ValueError, match="same problems"):
        paired_difference_ci([1, 2], [1], 4)


# --------------------------------------------------------------------------------------------------------------------
# End to end
# --------------------------------------------------------------------------------------------------------------------

ANSWERS = ["1", "2", "3", "1", "2"]
N = 4
BATCH = 3


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(save_tiny_model(tmp_path_factory.mktemp("tiny") / "model"))


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "toy.jsonl"
    rows = [{"problem": f"what is {i} + 2", "answer": a} for i, a in enumerate(ANSWERS)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _args(model, data, out, *extra):
    return ["--model", model, "--dataset", data, "--n", str(N), "--max-tokens", "6", "--batch-size", str(BATCH),
            "--output-dir", str(out), "--no-progress", *extra]


class GenerateSpy:
    """Wraps `generate` of the model class: counts calls and generated sequences, optionally fails on call `fail_on`."""

    def __init__(self, monkeypatch, fail_on: int | None = None):
        from transformers import Qwen2ForCausalLM

        self.calls, self.sequences, self.fail_on = 0, 0, fail_on
        original = Qwen2ForCausalLM.generate

        def generate(model_self, *args, **kwargs):
            self.calls += 1
            if self.fail_on is not None and self.calls == self.fail_on:
                raise RuntimeError("simulated crash")
            self.sequences += kwargs["input_ids"].shape[0]
            return original(model_self, *args, **kwargs)

        monkeypatch.setattr(Qwen2ForCausalLM, "generate", generate)


def _cache_lines(out: Path) -> list[dict]:
    """The complete lines of the cache (a line cut short by a simulated kill is not one)."""
    rows = []
    for line in (out / "generations.jsonl").read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            assert line.startswith('{"dataset": "toy", "index": 4, "sam'), line
    return rows


def _independent_results(out: Path, n: int) -> dict:
    """Recompute everything results.json claims from the cached generations alone."""
    from prerl_trl.rewards import math_accuracy_reward

    tokenizer = build_tokenizer()
    lines = _cache_lines(out)
    by_key = {}
    for rec in lines:
        by_key.setdefault((rec["index"], rec["sample"]), rec)
    counts, lengths = [], []
    for i, gold in enumerate(ANSWERS):
        correct = 0
        for s in range(n):
            rec = by_key[(i, s)]
            text = rec["completion"]
            # one verifier call per completion (the runner batches them per problem)
            ok = math_accuracy_reward([text], answer=[gold])[0] == 1.0
            boxes = boxed_answers(text)
            if len(boxes) == 1:  # the simple rule agrees with the verifier where it is unambiguous
                assert ok == (boxes[0] == gold), text
            correct += ok
            # response length: the words of the text, plus the end-of-turn token when it stopped
            expected_tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"]) + (
                rec["finish_reason"] == "stop"
            )
            assert rec["num_tokens"] == expected_tokens
            lengths.append(expected_tokens)
        counts.append(correct)
    return {
        "counts": counts,
        "avg": sum(counts) / (n * len(counts)),
        "pass": {k: float(sum(brute_pass_at_k(n, c, k) for c in counts) / len(counts)) for k in pass_at_k_ks(n)},
        "mean_tokens": sum(lengths) / len(lengths),
    }


def test_eval_end_to_end_crash_and_resume(tiny_model, toy_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    total = len(ANSWERS) * N

    # 1. crash on the third generate call: two batches are on disk
    spy = GenerateSpy(monkeypatch, fail_on=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        evaluation.main(_args(tiny_model, toy_file, out))
    first = (out / "generations.jsonl").read_text()
    assert len(_cache_lines(out)) == 2 * BATCH == spy.sequences
    assert not (out / "results.json").exists()
    # a kill in the middle of a write leaves half a line behind
    with open(out / "generations.jsonl", "a") as f:
        f.write('{"dataset": "toy", "index": 4, "sam')

    # 2. resume: only the missing samples are generated, the existing lines are untouched
    spy = GenerateSpy(monkeypatch)
    with pytest.warns(UserWarning, match="unreadable line"):
        assert evaluation.main(_args(tiny_model, toy_file, out)) == 0
    assert spy.sequences == total - 2 * BATCH
    assert spy.calls == math.ceil((total - 2 * BATCH) / BATCH)
    assert (out / "generations.jsonl").read_text().startswith(first)
    lines = _cache_lines(out)
    keys = [(r["dataset"], r["index"], r["sample"]) for r in lines]
    assert len(keys) == len(set(keys)) == total
    assert set(keys) == {("toy", i, s) for i in range(len(ANSWERS)) for s in range(N)}
    assert all(r["prompt"].startswith("<|im_start|>system Please reason step by step") for r in lines)

    # 3. results.json against an independent recomputation from the cache
    results = json.loads((out / "results.json").read_text())
    bench = results["benchmarks"]["toy"]
    ref = _independent_results(out, N)
    assert 0 < sum(ref["counts"]) < total, "the tiny model should be right sometimes and wrong sometimes"
    assert [p["correct"] for p in bench["problems"]] == ref["counts"]
    assert bench["avg_at_n"] == pytest.approx(ref["avg"])
    assert {int(k): v for k, v in bench["pass_at_k"].items()} == pytest.approx(ref["pass"])
    assert bench["mean_response_tokens"] == pytest.approx(ref["mean_tokens"])
    assert bench["num_problems"] == len(ANSWERS) and bench["num_completions"] == total
    n_wait = sum(r["completion"].split().count("wait") for r in lines)
    n_alt = sum(r["completion"].split().count("alternatively") for r in lines)
    # reflection also counts "let me check" (the words exist in the vocabulary), hence >=
    assert bench["behaviors"]["transition"] == pytest.approx(n_alt / total)
    assert bench["behaviors"]["reflection"] >= n_wait / total - 1e-12
    assert results["settings"]["n"] == N and results["settings"]["temperature"] == 1.0

    table = capsys.readouterr().out
    assert "| benchmark | problems | avg@4 | pass@1 | pass@2 | pass@4 |" in table
    assert f"| toy | 5 | {100 * ref['avg']:.2f}% |" in table  # fractions are shown as percentages, with %
    png = (out / "pass_at_k.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000

    # the behaviour ratio of a results.json with itself
    from prerl_trl.behaviors import behavior_ratio

    ratio = behavior_ratio(out / "results.json", out / "results.json")
    assert all(v == pytest.approx(1.0) or math.isnan(v) for v in ratio.values())

    # 4. a third run generates nothing and reproduces the same results
    spy = GenerateSpy(monkeypatch, fail_on=1)
    before = (out / "generations.jsonl").read_text()
    with pytest.warns(UserWarning, match="unreadable line"):
        assert evaluation.main(_args(tiny_model, toy_file, out)) == 0
    assert spy.calls == 0
    assert (out / "generations.jsonl").read_text() == before
    assert json.loads((out / "results.json").read_text())["benchmarks"]["toy"] == bench


def test_eval_larger_n_reuses_cache_and_settings_guard(tiny_model, toy_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "grow"
    spy = GenerateSpy(monkeypatch)
    args = _args(tiny_model, toy_file, out, "--limit", "2")
    args[args.index("--n") + 1] = "2"
    assert evaluation.main(args) == 0
    assert spy.sequences == 2 * 2
    args[args.index("--n") + 1] = "3"
    assert evaluation.main(args) == 0
    assert spy.sequences == 2 * 2 + 2 * 1  # only sample 2 of each problem is new
    results = json.loads((out / "results.json").read_text())
    assert results["benchmarks"]["toy"]["pass_at_k"].keys() == {"1", "2", "3"}

    # the same model directory written with a trailing slash is the same model: the cache is reused
    slash = [*args]
    slash[slash.index("--model") + 1] = tiny_model + "/"
    assert evaluation.main(slash) == 0
    assert spy.sequences == 2 * 2 + 2 * 1

    capsys.readouterr()
    assert evaluation.main([*args, "--temperature", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "temperature" in err


def test_eval_of_a_model_changed_in_place_does_not_reuse_old_generations(tiny_model, toy_file, tmp_path,
                                                                          monkeypatch, capsys):
    """Evaluate runs/x, train it further in place, evaluate again with the same command: the old generations are not
    scored as the new model's. The run stops in one line naming --overwrite, which regenerates."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    model_dir = tmp_path / "runs" / "x"
    shutil.copytree(tiny_model, model_dir)
    args = _args(str(model_dir), toy_file, tmp_path / "ev", "--limit", "2", "--n", "2")
    spy = GenerateSpy(monkeypatch)
    assert evaluation.main(args) == 0
    assert spy.sequences == 4
    assert evaluation.main(args) == 0 and spy.sequences == 4  # unchanged model: everything comes from the cache
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.5 * torch.randn_like(param))
    model.save_pretrained(model_dir)  # "trained further, in place"
    capsys.readouterr()
    assert evaluation.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(model_dir) in err and "changed" in err and "--overwrite" in err
    assert spy.sequences == 4
    assert evaluation.main([*args, "--overwrite"]) == 0
    assert spy.sequences == 8  # generated again, from the new weights


def test_a_cache_without_a_model_fingerprint_is_not_trusted(tiny_model, toy_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "ev"
    args = _args(tiny_model, toy_file, out, "--limit", "1", "--n", "1")
    GenerateSpy(monkeypatch)
    assert evaluation.main(args) == 0
    settings = json.loads((out / "settings.json").read_text())
    del settings["model_fingerprint"]  # as written by prerl-trl 0.1.0
    (out / "settings.json").write_text(json.dumps(settings))
    capsys.readouterr()
    assert evaluation.main(args) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_model_fingerprint_follows_config_and_weights_not_other_files(tmp_path):
    import os

    from prerl_trl.evaluation import model_fingerprint

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 8}')
    (model / "model.safetensors").write_bytes(b"0123")
    seen = {model_fingerprint(str(model))}
    (model / "README.md").write_text("a card")  # not the model
    assert model_fingerprint(str(model)) in seen and model_fingerprint(str(model) + "/") in seen
    (model / "config.json").write_text('{"hidden_size": 16}')
    seen.add(model_fingerprint(str(model)))
    os.utime(model / "model.safetensors", ns=(1, 1))  # rewritten weights
    seen.add(model_fingerprint(str(model)))
    (model / "model.safetensors").write_bytes(b"01234")
    seen.add(model_fingerprint(str(model)))
    (model / "adapter_model.safetensors").write_bytes(b"lora")
    seen.add(model_fingerprint(str(model)))
    assert len(seen) == 5
    assert model_fingerprint("Qwen/Qwen3-4B") != model_fingerprint("Qwen/Qwen3-8B")


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_a_zero_byte_data_file_is_one_line(tiny_model, tmp_path, capsys, suffix):
    empty = tmp_path / f"empty{suffix}"
    empty.write_bytes(b"")
    assert evaluation.main(_args(tiny_model, str(empty), tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(empty) in err and "empty (0 bytes)" in err


@pytest.mark.parametrize("spelling", ["--problem-field", "--problem_field", "--problem-column"])
def test_eval_takes_the_train_spelling_of_the_column_flags(tiny_model, tmp_path, monkeypatch, spelling):
    data = tmp_path / "qa.jsonl"
    data.write_text(json.dumps({"q": "what is 2", "gold": "2"}) + "\n")
    GenerateSpy(monkeypatch)
    answer = spelling.replace("problem", "answer")
    assert evaluation.main(_args(tiny_model, str(data), tmp_path / spelling, spelling, "q", answer, "gold",
                                 "--n", "1")) == 0


def test_eval_two_benchmarks_mean_row(tiny_model, toy_file, tmp_path, capsys):
    other = tmp_path / "other.json"
    other.write_text(json.dumps([{"question": "what is 2", "answer": "2"}, {"question": "is 2", "answer": "3"}]))
    out = tmp_path / "two"
    assert evaluation.main(_args(tiny_model, toy_file, out, "--dataset", str(other), "--n", "2", "--limit", "2")) == 0
    results = json.loads((out / "results.json").read_text())
    a, b = results["benchmarks"]["toy"], results["benchmarks"]["other"]
    assert results["mean"]["avg_at_n"] == pytest.approx((a["avg_at_n"] + b["avg_at_n"]) / 2)
    assert "| mean | 4 |" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------------------------


def test_unknown_dataset(tiny_model, tmp_path, capsys):
    assert evaluation.main(_args(tiny_model, "no_such_benchmark", tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "no_such_benchmark" in err and "aime24" in err


@pytest.mark.parametrize("model", ["./nomodel", "/no/such/model", "runs/a/b"])
def test_missing_model_directory_is_one_line(model, toy_file, tmp_path, capsys):
    assert evaluation.main(_args(model, toy_file, tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such local directory" in err and repr(model) in err
    assert not (tmp_path / "o").exists()


def test_missing_file(tiny_model, tmp_path, capsys):
    assert evaluation.main(_args(tiny_model, str(tmp_path / "absent.jsonl"), tmp_path / "o")) == 2
    assert "does not exist" in capsys.readouterr().err


def test_file_without_answer_column(tiny_model, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"problem": "what is 2", "gold": "2"}) + "\n")
    assert evaluation.main(_args(tiny_model, str(bad), tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "answer" in err and "gold" in err
    assert evaluation.main(_args(tiny_model, str(bad), tmp_path / "o2", "--answer-column", "gold", "--n", "1")) == 0


@pytest.mark.parametrize("value", ["0", "-3", "x"])
def test_n_must_be_positive(tiny_model, toy_file, tmp_path, value, capsys):
    args = _args(tiny_model, toy_file, tmp_path / "o")
    args[args.index("--n") + 1] = value
    with pytest.raises(SystemExit) as exc:
        evaluation.main(args)
    assert exc.value.code == 2
    assert "--n" in capsys.readouterr().err
    with pytest.raises(EvaluationError, match="--n must be >= 1"):
        evaluation.evaluate(tiny_model, [toy_file], output_dir=tmp_path / "o", n=0)


def test_known_names_go_through_the_data_loader(monkeypatch):
    import datasets

    from prerl_trl import data

    seen = {}

    def fake_loader(name, split=None, **kwargs):
        seen.update(name=name, split=split, **kwargs)
        prompt = data.build_prompt("What is 1+1?", True, kwargs["system_prompt"])
        return datasets.Dataset.from_list([{"prompt": prompt, "answer": "2"}])

    monkeypatch.setattr(data, "load_math_dataset", fake_loader)
    bench = evaluation.load_benchmark("aime24", limit=3)
    assert seen["name"] == "aime24" and seen["max_samples"] == 3 and seen["conversational"] is True
    assert bench.name == "aime24" and bench.answers == ["2"]
    assert bench.messages[0][0] == {"role": "system", "content": data.SYSTEM_PROMPT}


def test_backend_choice():
    assert evaluation.resolve_backend("transformers") == "transformers"
    assert evaluation.resolve_backend("auto") in ("vllm", "transformers")
    with pytest.raises(EvaluationError):
        evaluation.resolve_backend("tgi")


def test_vllm_path_with_a_fake_engine(tiny_model, tmp_path, monkeypatch):
    """The vLLM backend against a stand-in `vllm` module: one request per distinct prompt with n = missing samples,
    token-id prompts, the protocol's sampling parameters, and a flush per call."""
    import importlib.machinery
    import sys
    import types

    requests = []

    class SamplingParams:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    class LLM:
        def __init__(self, model, **kw):
            assert model == tiny_model

        def generate(self, prompts, params, use_tqdm=False):
            requests.append([(p["prompt_token_ids"], sp) for p, sp in zip(prompts, params, strict=True)])
            out = types.SimpleNamespace
            return [out(outputs=[out(text="\\boxed{1}", token_ids=[7], finish_reason="stop")] * sp.n)
                    for sp in params]

    fake = types.ModuleType("vllm")
    fake.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    fake.LLM, fake.SamplingParams = LLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setattr(evaluation.generate_vllm, "__kwdefaults__",
                        {**evaluation.generate_vllm.__kwdefaults__, "prompts_per_call": 2})

    toy = tmp_path / "toy.jsonl"  # three problems whose prompts differ in token ids (words of the tiny vocabulary)
    toy.write_text("".join(json.dumps({"problem": p, "answer": a}) + "\n"
                           for p, a in zip(["what is the answer", "so what", "let me check"], ANSWERS, strict=False)))
    toy_file, out = str(toy), tmp_path / "vllm"
    evaluation.evaluate(tiny_model, [toy_file], output_dir=out, n=3, max_tokens=5, backend="vllm", progress=False)
    tokenizer = evaluation.load_tokenizer(tiny_model)
    bench = evaluation.load_benchmark(toy_file)
    evaluation.render_prompts(bench, tokenizer)
    assert [len(r) for r in requests] == [2, 1]  # 3 distinct prompts, 2 per engine call
    flat = [req for call in requests for req in call]
    assert [ids for ids, _ in flat] == bench.prompt_ids
    assert all((sp.n, sp.temperature, sp.top_p, sp.max_tokens) == (3, 1.0, 1.0, 5) for _, sp in flat)
    assert len(_cache_lines(out)) == 9
    results = json.loads((out / "results.json").read_text())["benchmarks"]["toy"]
    assert [p["correct"] for p in results["problems"]] == [3 * (a == "1") for a in ANSWERS[:3]]

    requests.clear()
    evaluation.evaluate(tiny_model, [toy_file], output_dir=out, n=4, max_tokens=5, backend="vllm", progress=False)
    assert [sp.n for call in requests for _, sp in call] == [1, 1, 1]
