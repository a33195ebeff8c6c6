"""Gradient alignment against an independent autograd computation; the grad-align CLI."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _tiny_eval import SPECIALS, WORDS, build_model, build_tokenizer, save_tiny_model  # noqa: E402

from prerl_trl import diagnostics  # noqa: E402
from prerl_trl.diagnostics import gradient_alignment, summarize_alignment  # noqa: E402

PAIRS = [
    ("<|im_start|>user what is 2 + 2<|im_end|> <|im_start|>assistant", "let me check so the answer is \\boxed{2}"),
    ("<|im_start|>user what is the answer<|im_end|> <|im_start|>assistant", "wait \\boxed{3}"),
    ("please", "\\boxed{1} alternatively \\boxed{2} \\boxed{2} so"),
]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture()
def model(tokenizer):
    return build_model(len(tokenizer), seed=1, boxed_bias=False).double()


def ids_of(text: str) -> list[int]:
    """Token ids built without the tokenizer: the tiny vocabulary is one id per whitespace-separated word."""
    vocab = SPECIALS + WORDS
    out = []
    for word in text.split():
        # the chat markers are glued to words in the prompt text; split them off like the tokenizer's specials
        while word:
            for special in SPECIALS[1:]:
                if word.startswith(special):
                    out.append(vocab.index(special))
                    word = word[len(special):]
                    break
            else:
                cut = min([word.find(s) for s in SPECIALS[1:] if s in word] or [len(word)])
                out.append(vocab.index(word[:cut]) if word[:cut] in vocab else vocab.index("[UNK]"))
                word = word[cut:]
    return out


def reference(model, context: list[int], completion: list[int]):
    """log P(completion | context) summed, and its flattened full gradient, with .backward and torch.cat."""
    params = [p for p in model.parameters() if p.requires_grad]
    model.zero_grad(set_to_none=True)
    ids = torch.tensor([context + completion])
    logits = model(input_ids=ids).logits[0]  # default position ids 0..L-1
    logp = torch.log_softmax(logits, dim=-1)
    total = sum(logp[len(context) - 1 + t, tok] for t, tok in enumerate(completion))
    total.backward()
    grad = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
    model.zero_grad(set_to_none=True)
    return float(total.detach()), grad


def test_matches_independent_autograd(model, tokenizer):
    ctx = SPECIALS.index("<|im_start|>")  # no BOS in this vocabulary -> <|im_start|>
    results = gradient_alignment(model, tokenizer, [p for p, _ in PAIRS], [c for _, c in PAIRS])
    assert len(results) == len(PAIRS)
    cosines = []
    for (prompt, completion), res in zip(PAIRS, results, strict=True):
        x, y = ids_of(prompt), ids_of(completion)
        lp_m, g_m = reference(model, [ctx], y)
        lp_c, g_c = reference(model, x, y)
        dot = float(g_m @ g_c)
        cos = dot / float(g_m.norm() * g_c.norm())
        assert res["logp_marginal"] == pytest.approx(lp_m, rel=1e-9)
        assert res["logp_conditional"] == pytest.approx(lp_c, rel=1e-9)
        assert res["inner_product"] == pytest.approx(dot, rel=1e-8)
        assert res["cosine"] == pytest.approx(cos, rel=1e-8)
        assert res["num_completion_tokens"] == len(y) and res["num_prompt_tokens"] == len(x)
        cosines.append(cos)
    assert all(abs(c) < 0.999 for c in cosines), "the two log-probs must differ on a random model"
    assert all(p.grad is None for p in model.parameters())


def test_gradient_checkpointing_gives_the_same_numbers(model, tokenizer, monkeypatch):
    prompts, completions = [p for p, _ in PAIRS[:2]], [c for _, c in PAIRS[:2]]
    plain = gradient_alignment(model, tokenizer, prompts, completions)
    ckpt = gradient_alignment(model, tokenizer, prompts, completions, gradient_checkpointing=True)
    for a, b in zip(plain, ckpt, strict=True):
        assert b == pytest.approx(a, rel=1e-9)
    assert not model.training and not diagnostics._checkpointing(model)

    # checkpointing is really on during the call: the decoder layers run through torch's checkpoint
    import transformers.modeling_utils as ckpt

    calls = []
    original = ckpt.checkpoint

    def spy(*args, **kwargs):
        calls.append(kwargs.get("use_reentrant"))
        return original(*args, **kwargs)

    monkeypatch.setattr(ckpt, "checkpoint", spy)
    gradient_alignment(model, tokenizer, prompts[:1], completions[:1], gradient_checkpointing=True)
    assert calls and set(calls) == {False}


def test_context_token_choices(model, tokenizer):
    prompt, completion = PAIRS[1]
    y = ids_of(completion)
    res = gradient_alignment(model, tokenizer, [prompt], [completion], context_token="<|im_end|>")[0]
    assert res["logp_marginal"] == pytest.approx(reference(model, [SPECIALS.index("<|im_end|>")], y)[0], rel=1e-9)
    with pytest.raises(ValueError, match="not a token"):
        gradient_alignment(model, tokenizer, [prompt], [completion], context_token="<|not_a_token|>")

    with_bos = build_tokenizer()
    with_bos.bos_token = "<|endoftext|>"  # a BOS token wins over <|im_start|>
    res = gradient_alignment(model, with_bos, [prompt], [completion])[0]
    assert res["logp_marginal"] == pytest.approx(reference(model, [SPECIALS.index("<|endoftext|>")], y)[0], rel=1e-9)


@pytest.mark.parametrize("context", ["chat_frame", "chat_frame_history"])
def test_chat_frame_context_matches_independent_autograd(model, tokenizer, context):
    conversation = [{"role": "system", "content": "please"}, {"role": "user", "content": "what is 2"},
                    {"role": "assistant", "content": "\\boxed{2}"}, {"role": "user", "content": "what is 2 + 2"}]
    prompt = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    completion = "so the answer is \\boxed{2}"
    res = gradient_alignment(model, tokenizer, [prompt], [completion], context=context,
                             conversations=[conversation])[0]
    # The frame written out by hand in the tiny template's words: the question is gone, an empty user turn is left.
    kept = "<|im_start|>system please<|im_end|> "
    if context == "chat_frame_history":
        kept += "<|im_start|>user what is 2<|im_end|> <|im_start|>assistant \\boxed{2}<|im_end|> "
    frame = ids_of(kept + "<|im_start|>user <|im_end|> <|im_start|>assistant")
    y = ids_of(completion)
    lp_m, g_m = reference(model, frame, y)
    lp_c, g_c = reference(model, ids_of(prompt), y)
    assert res["num_context_tokens"] == len(frame)
    assert res["logp_marginal"] == pytest.approx(lp_m, rel=1e-9)
    assert res["inner_product"] == pytest.approx(float(g_m @ g_c), rel=1e-8)
    with pytest.raises(ValueError, match="one conversation"):
        gradient_alignment(model, tokenizer, [prompt], [completion], context=context)


def test_only_trainable_parameters(model, tokenizer):
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("lm_head") or "layers.1." in name)
    prompt, completion = PAIRS[0]
    res = gradient_alignment(model, tokenizer, [prompt], [completion])[0]
    _, g_m = reference(model, [SPECIALS.index("<|im_start|>")], ids_of(completion))
    _, g_c = reference(model, ids_of(prompt), ids_of(completion))
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert g_m.numel() == n_trainable < sum(p.numel() for p in model.parameters())
    assert res["inner_product"] == pytest.approx(float(g_m @ g_c), rel=1e-8)


def test_training_mode_restored_and_no_grad_context(model, tokenizer):
    model.train()
    with torch.no_grad():  # gradients are still taken
        res = gradient_alignment(model, tokenizer, [PAIRS[0][0]], [PAIRS[0][1]])[0]
    assert model.training and math.isfinite(res["inner_product"]) and res["grad_norm_marginal"] > 0


def test_bad_input(model, tokenizer):
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        gradient_alignment(model, tokenizer, ["a", "b"], ["so"])
    with pytest.raises(ValueError, match="completion is empty"):
        gradient_alignment(model, tokenizer, ["please"], [""])
    with pytest.raises(TypeError):
        gradient_alignment(model, tokenizer, "please", "so")
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        gradient_alignment(model, tokenizer, ["please"], ["so"])


def test_summary_by_hand():
    rows = [{"inner_product": v, "cosine": c, "logp_conditional": -1.0, "logp_marginal": -3.0}
            for v, c in [(2.0, 0.5), (-1.0, -0.1), (5.0, float("nan")), (0.5, 0.3)]]
    s = summarize_alignment(rows)
    assert s["inner_product_mean"] == pytest.approx(6.5 / 4)
    assert (s["inner_product_min"], s["inner_product_max"], s["negative_frac"]) == (-1.0, 5.0, 0.25)
    assert s["cosine_mean"] == pytest.approx(0.7 / 3)
    with pytest.raises(ValueError):
        summarize_alignment([])


# --------------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    return str(save_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=2, boxed_bias=False))


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cli_pairs_file_and_resume(saved_model, tokenizer, tmp_path, capsys, monkeypatch):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": p, "completion": c, "extra": 1}) + "\n" for p, c in PAIRS))
    out = tmp_path / "out"
    args = ["--model", saved_model, "--pairs", str(pairs), "--output-dir", str(out), "--no-progress"]
    assert diagnostics.main(args) == 0
    rows = _lines(out / "alignment.jsonl")
    assert [(r["prompt"], r["completion"]) for r in rows] == PAIRS

    # the values match the independent computation on the saved model (fp32 on the CPU)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(saved_model).double()
    for (prompt, completion), row in zip(PAIRS, rows, strict=True):
        _, g_m = reference(model, [SPECIALS.index("<|im_start|>")], ids_of(completion))
        _, g_c = reference(model, ids_of(prompt), ids_of(completion))
        assert row["inner_product"] == pytest.approx(float(g_m @ g_c), rel=1e-4)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["context_token"] == "<|im_start|>"  # the one used (the reference's above), not the CLI's None
    ips = [r["inner_product"] for r in rows]
    assert summary["num_pairs"] == 3
    assert summary["inner_product_mean"] == pytest.approx(sum(ips) / 3)
    assert (summary["inner_product_min"], summary["inner_product_max"]) == (min(ips), max(ips))
    assert summary["negative_frac"] == sum(v < 0 for v in ips) / 3
    assert summary["cosine_mean"] == pytest.approx(sum(r["cosine"] for r in rows) / 3)
    printed = capsys.readouterr().out
    assert "| 3 |" in printed and "cosine mean" in printed

    # a re-run computes nothing again
    calls = []
    original = diagnostics.gradient_alignment
    monkeypatch.setattr(diagnostics, "gradient_alignment",
                        lambda m, t, p, c, **kw: calls.append(len(p)) or original(m, t, p, c, **kw))
    assert diagnostics.main(args) == 0
    assert calls == [0]
    assert json.loads((out / "summary.json").read_text())["inner_product_mean"] == summary["inner_product_mean"]
    # --num-samples takes the first pairs
    assert diagnostics.main([*args, "--num-samples", "2"]) == 0
    assert calls == [0, 0]
    assert json.loads((out / "summary.json").read_text())["num_pairs"] == 2


def test_cli_chat_frame_context_from_the_pairs_messages(saved_model, tmp_path, capsys):
    conversation = [{"role": "system", "content": "please"}, {"role": "user", "content": "what is 2 + 2"}]
    row = {"prompt": "<|im_start|>user what is 2 + 2<|im_end|> <|im_start|>assistant", "completion": "so \\boxed{2}"}
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({**row, "messages": conversation}) + "\n")
    out = tmp_path / "out"
    args = ["--model", saved_model, "--pairs", str(pairs), "--output-dir", str(out), "--no-progress"]
    assert diagnostics.main([*args, "--context", "chat_frame"]) == 0
    result = _lines(out / "alignment.jsonl")[0]
    assert result["num_context_tokens"] == len(ids_of("<|im_start|>system please<|im_end|> <|im_start|>user <|im_end|> "
                                                      "<|im_start|>assistant"))
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["context"], summary["context_token"]) == ("chat_frame", None)
    # The token context is recorded as the token used, not as the command line's default None.
    assert diagnostics.main([*args, "--overwrite"]) == 0
    assert json.loads((out / "summary.json").read_text())["context_token"] == "<|im_start|>"
    pairs.write_text(json.dumps(row) + "\n")
    capsys.readouterr()
    assert diagnostics.main([*args, "--output-dir", str(tmp_path / "other"), "--context", "chat_frame_history"]) == 2
    assert "needs a 'messages' field" in capsys.readouterr().err


def test_cli_generates_rollouts(saved_model, tmp_path):
    data = tmp_path / "toy.jsonl"
    data.write_text("".join(json.dumps({"problem": f"what is {i}", "answer": str(i)}) + "\n" for i in (1, 2)))
    out = tmp_path / "gen"
    args = ["--model", saved_model, "--dataset", str(data), "--num-samples", "3", "--max-tokens", "4",
            "--output-dir", str(out), "--no-progress", "--context-token", "<|im_end|>"]
    assert diagnostics.main(args) == 0
    rows = _lines(out / "alignment.jsonl")
    assert len(rows) == 3
    # cycling through the problems: 0, 1, 0
    assert [("what is 1" in r["prompt"], "what is 2" in r["prompt"]) for r in rows] == [(1, 0), (0, 1), (1, 0)]
    assert all(r["prompt"].startswith("<|im_start|>system Please reason") for r in rows)
    gens = _lines(out / "generations.jsonl")
    assert [g["completion"] for g in gens] == [r["completion"] for r in rows]
    assert json.loads((out / "summary.json").read_text())["context_token"] == "<|im_end|>"


def test_cli_bad_input(saved_model, tmp_path, capsys):
    base = ["--model", saved_model, "--output-dir", str(tmp_path / "o"), "--no-progress"]
    assert diagnostics.main([*base, "--pairs", str(tmp_path / "none.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "please"}) + "\n")
    assert diagnostics.main([*base, "--pairs", str(bad)]) == 2
    assert "'completion'" in capsys.readouterr().err
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"prompt": "please", "completion": "so"}) + "\n")
    assert diagnostics.main([*base, "--pairs", str(good), "--context-token", "<nope>"]) == 2
    assert "<nope>" in capsys.readouterr().err
    assert diagnostics.main([*base, "--dataset", "no_such_benchmark"]) == 2
    assert "no_such_benchmark" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        diagnostics.main(base)  # neither --dataset nor --pairs
