"""The embedded default: a tiny model and tokenizer built offline, and a small verifiable toy task.

Nothing here touches the network. `build_tiny_model` trains a byte-pair tokenizer on the toy task's text, builds a
small random `Qwen2Config` model with a Qwen-style chat template, and (optionally) warms it up with a few hundred steps
of supervised learning so that its rollouts have the `\\boxed{}` format and a mix of right and wrong answers: the
regime where NSR-PreRL has something to learn from.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from datasets import Dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TOY_SYSTEM_PROMPT = "Put the answer in \\boxed{}."


def toy_problems(max_operand: int = 4) -> list[tuple[str, str]]:
    """Every single-digit addition `a+b=` with a, b <= max_operand, and its answer."""
    return [(f"{a}+{b}=", str(a + b)) for a in range(max_operand + 1) for b in range(max_operand + 1)]


def toy_split(held_out: int = 10, seed: int = 0) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Split `toy_problems()` into (training problems, `held_out` problems kept out of RL training)."""
    problems = toy_problems()
    if not 0 < held_out < len(problems):
        raise ValueError(f"held_out must be in [1, {len(problems) - 1}], got {held_out}")
    held = set(random.Random(seed).sample(range(len(problems)), held_out))
    return [p for i, p in enumerate(problems) if i not in held], [p for i, p in enumerate(problems) if i in held]


def toy_messages(question: str) -> list[dict[str, str]]:
    """The chat prompt of one toy problem."""
    return [{"role": "system", "content": TOY_SYSTEM_PROMPT}, {"role": "user", "content": question}]


def toy_dataset(
    conversational: bool = True, repeat: int = 1, seed: int = 0, problems: list[tuple[str, str]] | None = None
) -> Dataset:
    """The toy task (or `problems`, a subset of it) as a dataset with `prompt` and `answer` columns (the schema of
    `prerl_trl.data`)."""
    rows = list(toy_problems() if problems is None else problems) * repeat
    random.Random(seed).shuffle(rows)
    if conversational:
        prompts = [toy_messages(question) for question, _ in rows]
    else:
        prompts = [question for question, _ in rows]
    return Dataset.from_dict({"prompt": prompts, "answer": [answer for _, answer in rows]})


def build_tiny_tokenizer(vocab_size: int = 320) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained in-process on the toy task's text, with a Qwen-style chat template."""
    corpus = []
    for question, answer in toy_problems(9):
        corpus.append(f"system\n{TOY_SYSTEM_PROMPT}\nuser\n{question}\nassistant\n\\boxed{{{answer}}}")
        corpus.append(f"{question}\\boxed{{{answer}}} The answer is {answer}. Wait, let me check: yes.")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(
    output_dir: str | Path,
    hidden_size: int = 64,
    num_layers: int = 2,
    warmup_steps: int = 0,
    seed: int = 0,
    warmup_noise: float = 0.5,
    pretrain_rows: int = 0,
) -> Path:
    """Build (and optionally warm up) a tiny Qwen2 model and its tokenizer, save both to `output_dir`.

    Args:
        output_dir: Where to save. The result loads with `from_pretrained(output_dir)`.
        hidden_size, num_layers: Model size.
        warmup_steps: Supervised steps on the toy task, so that rollouts have the `\\boxed{}` format.
        seed: Seed for the weights and the warm-up data.
        warmup_noise: Share of warm-up answers replaced by a random digit. With 0 the model learns the sums
            abruptly after about 200-300 steps; stopping inside that window leaves it right part of the time.
        pretrain_rows: Rows per warm-up step that hold an answer with no question, after `<|im_start|>` (the
            pre-train-space context token of this tokenizer): the model then has a distribution P(y) over answers
            alone, as a pre-trained LLM has over text, which the pre-train-space loss works on.
    """
    torch.manual_seed(seed)
    tokenizer = build_tiny_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = Qwen2ForCausalLM(config)
    if warmup_steps > 0:
        _warm_up(model, tokenizer, warmup_steps, seed, noise=warmup_noise, pretrain_rows=pretrain_rows)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


def _warm_up(
    model: Qwen2ForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    steps: int,
    seed: int,
    noise: float = 0.5,
    pretrain_rows: int = 0,
) -> None:
    """Teach the format `\\boxed{n}<|im_end|>` with noisy answers, so the model is right only part of the time."""
    rng = random.Random(seed)
    problems = toy_problems()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        prompts, answers = [], []
        for question, answer in rng.sample(problems, 16):
            shown = answer if rng.random() < 1 - noise else str(rng.randint(0, 8))
            prompts.append(tokenizer.apply_chat_template(toy_messages(question), tokenize=False, add_generation_prompt=True))
            answers.append(f"\\boxed{{{shown}}}<|im_end|>")
        for _question, answer in rng.sample(problems, pretrain_rows):  # an answer alone: P(y) in pre-train space
            prompts.append("<|im_start|>")
            answers.append(f"\\boxed{{{answer}}}<|im_end|>")
        batch = tokenizer([p + a for p, a in zip(prompts, answers, strict=True)], return_tensors="pt", padding=True)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        for row, answer in enumerate(answers):  # learn the answer only (left padding: it ends each row)
            labels[row, : labels.size(1) - len(tokenizer(answer)["input_ids"])] = -100
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


@torch.no_grad()
def toy_correct_counts(
    model: Qwen2ForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    problems: list[tuple[str, str]],
    k: int,
    seed: int = 0,
    max_new_tokens: int = 8,
) -> list[int]:
    """Sample `k` answers per problem (temperature 1) and count, per problem, those that `math_accuracy_reward`
    scores 1.0: the numbers behind avg@k and pass@k."""
    from .rewards import math_accuracy_reward

    was_training = model.training
    model.eval()
    prompts = [
        tokenizer.apply_chat_template(toy_messages(question), tokenize=False, add_generation_prompt=True)
        for question, _ in problems
        for _ in range(k)
    ]
    batch = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # the same draws for every model evaluated, and the training's random stream untouched
    try:
        out = model.generate(
            **batch, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=max_new_tokens,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )
    finally:
        torch.random.set_rng_state(generator_state)
        model.train(was_training)
    texts = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    scores = math_accuracy_reward(texts, answer=[answer for _, answer in problems for _ in range(k)])
    return [int(sum(1 for s in scores[i * k : (i + 1) * k] if s == 1.0)) for i in range(len(problems))]
