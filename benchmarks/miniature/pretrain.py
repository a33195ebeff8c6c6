"""Pretrain the base model from scratch: a byte-level BPE tokenizer and a small `Qwen2Config` causal LM trained on
the generated corpus with plain next-token prediction over whole documents. The result is cached on disk, keyed by
every setting that changes it, so reruns skip pretraining."""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from .task import BOS, EOS, PAD, Problem, corpus


@dataclass(frozen=True)
class PretrainSettings:
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 512
    vocab_size: int = 320
    steps: int = 600
    batch_size: int = 64
    learning_rate: float = 3e-3
    seed: int = 0

    def key(self, corpus_key: str) -> str:
        blob = json.dumps({**asdict(self), "corpus": corpus_key}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def build_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on the corpus. Digits stay single tokens, so numbers are spelled digit by digit."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BOS, eos_token=EOS, pad_token=PAD, padding_side="left"
    )


def build_model(tokenizer: PreTrainedTokenizerFast, s: PretrainSettings) -> Qwen2ForCausalLM:
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=s.hidden_size,
        intermediate_size=s.intermediate_size,
        num_hidden_layers=s.num_layers,
        num_attention_heads=s.num_heads,
        num_key_value_heads=max(1, s.num_heads // 2),
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return Qwen2ForCausalLM(config)


def pretrain(problems: list[Problem], corpus_seed: int, s: PretrainSettings, cache_dir: Path, device: str,
             standalone_share: float = 0.0) -> Path:
    """The base model directory (model + tokenizer + `pretrain.json`); trained now unless the cache has it.
    `standalone_share` is the corpus's share of solution-only documents (`task.corpus`)."""
    corpus_key = f"{len(problems)}-{corpus_seed}-{problems[0].question}"
    if standalone_share:  # share 0 keeps the key the cache had before the setting existed
        corpus_key += f"-standalone{standalone_share}"
    out = Path(cache_dir) / f"base-{s.key(corpus_key)}"
    if (out / "pretrain.json").is_file():
        return out
    torch.manual_seed(s.seed)
    texts = corpus(problems, corpus_seed, standalone_share)
    tokenizer = build_tokenizer(texts, s.vocab_size)
    model = build_model(tokenizer, s).to(device)
    num_params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=s.learning_rate, weight_decay=0.01, betas=(0.9, 0.95))
    warmup = max(1, s.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(i, s.steps) / s.steps))
    )
    rng = random.Random(s.seed)
    model.train()
    start, cpu_start, losses = time.time(), time.process_time(), []
    bar = tqdm(range(s.steps), desc=f"pretraining {num_params / 1e6:.2f}M params", unit="step")
    for _ in bar:
        batch = tokenizer(rng.sample(texts, s.batch_size), return_tensors="pt", padding=True, padding_side="right")
        batch = batch.to(device)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
    model.eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    info = {
        "settings": asdict(s),
        "num_params": num_params,
        "num_documents": len(texts),
        "standalone_share": standalone_share,
        "final_loss": sum(losses[-50:]) / len(losses[-50:]),
        "loss_curve": losses[:: max(1, len(losses) // 100)],
        "seconds": time.time() - start,
        "cpu_seconds": time.process_time() - cpu_start,
        "torch_threads": torch.get_num_threads(),
    }
    (out / "pretrain.json").write_text(json.dumps(info, indent=1))
    return out
