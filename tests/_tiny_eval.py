"""A tiny offline model for the evaluation / diagnostics tests: a word-level tokenizer with a chat template and a
random Qwen2 model, built in-process (no Hub access).

The vocabulary is small and contains `\\boxed{1}`, `\\boxed{2}` and `\\boxed{3}` as single words, so a random model
sampling at temperature 1 writes a boxed answer most of the time and is right on some problems and wrong on others.
"""

from __future__ import annotations

import re
from pathlib import Path

WORDS = [
    "\\boxed{1}", "\\boxed{2}", "\\boxed{3}", "so", "the", "answer", "is", "wait", "alternatively", "check",
    "let", "me", "2", "+", "=", "what", "system", "user", "assistant", "please",
]
SPECIALS = ["[UNK]", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }} {{ message['content'] }}<|im_end|> "
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant {% endif %}"
)


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(vocab_size: int, seed: int = 0, boxed_bias: bool = True):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=SPECIALS.index("<|im_end|>"),
        pad_token_id=SPECIALS.index("<|endoftext|>"),
    )
    model = Qwen2ForCausalLM(config).eval()
    if not boxed_bias:  # a plain random model: its outputs depend on the context
        return model
    with torch.no_grad():
        # A constant first feature in every embedding survives the two small layers and the final norm, so the first
        # column of lm_head acts as an output bias: boxed answers become likely and the end of turn rarer.
        model.model.embed_tokens.weight[:, 0] = 5.0
        model.lm_head.weight[:, 0] = 0.0
        vocab = SPECIALS + WORDS
        for word in ("\\boxed{1}", "\\boxed{2}", "\\boxed{3}"):
            model.lm_head.weight[vocab.index(word), 0] = 0.3
        model.lm_head.weight[vocab.index("<|im_end|>"), 0] = -0.3
        for special in ("[UNK]", "<|endoftext|>", "<|im_start|>"):  # never sampled: every token shows in the text
            model.lm_head.weight[vocab.index(special), 0] = -3.0
    return model


def save_tiny_model(path: str | Path, seed: int = 0, boxed_bias: bool = True) -> Path:
    """Build and save the tiny tokenizer and model to `path`; returns it."""
    path = Path(path)
    tokenizer = build_tokenizer()
    model = build_model(len(tokenizer), seed=seed, boxed_bias=boxed_bias)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def boxed_answers(text: str) -> list[str]:
    """The contents of every `\\boxed{...}` in `text` (an independent, simple answer rule for the tests)."""
    return _BOXED.findall(text)
