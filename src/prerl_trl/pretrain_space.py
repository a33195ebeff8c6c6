"""Pure functions for scoring a rollout in pre-train space: log P(y) after a single context token.

Rollouts are generated conditionally, y ~ P(. | x). In pre-train space the loss scores the same response tokens with
the prompt, system prompt and chat template removed: the model sees `[c, y_1, ..., y_T]` with positions restarting at
0, so every response token, y_1 included, is predicted from the context token `c` and the response prefix only.
"""

from __future__ import annotations

import torch

IM_START = "<|im_start|>"


def _token_id(tokenizer, token: str) -> int | None:
    """The id of `token` when it is a single entry of the vocabulary, else None."""
    vocab = tokenizer.get_vocab()
    if token in vocab:
        return int(vocab[token])
    token_id = tokenizer.convert_tokens_to_ids(token)
    unk = getattr(tokenizer, "unk_token_id", None)
    if token_id is None or (unk is not None and token_id == unk and token != tokenizer.unk_token):
        return None
    return int(token_id)


def resolve_context_token_id(tokenizer, token: str | None = None) -> int:
    """Resolve the pre-train-space context token to an id.

    Args:
        tokenizer: A Hugging Face tokenizer (or processor's tokenizer).
        token: A token string, or None for automatic choice: the BOS token, else `<|im_start|>` when the vocabulary
            has it (the paper's reference runs on Qwen3), else the EOS token.

    Raises:
        ValueError: `token` is not one entry of the vocabulary, or no automatic choice exists.
    """
    if token is not None:
        token_id = _token_id(tokenizer, token)
        if token_id is None:
            raise ValueError(
                f"prerl_context_token={token!r} is not a token of this tokenizer's vocabulary. Pass a single "
                f"vocabulary entry (for Qwen models '{IM_START}'), or None to pick the BOS token, else "
                f"'{IM_START}', else the EOS token."
            )
        return token_id
    for candidate in (tokenizer.bos_token, IM_START, tokenizer.eos_token):
        if candidate is not None:
            token_id = _token_id(tokenizer, candidate)
            if token_id is not None:
                return token_id
    raise ValueError(
        "prerl_context_token=None could not be resolved: the tokenizer has no BOS token, no "
        f"'{IM_START}' and no EOS token. Set prerl_context_token to a token of the vocabulary."
    )


def build_marginal_inputs(
    completion_ids: torch.Tensor, completion_mask: torch.Tensor, context_token_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Build pre-train-space model inputs `[c] + completion` from right-padded completions.

    Args:
        completion_ids: `(B, T)` response token ids, right-padded.
        completion_mask: `(B, T)` 1 on response tokens, 0 on padding.
        context_token_id: The id of the context token `c`.

    Returns:
        `input_ids` and `attention_mask`, both `(B, T + 1)`. The context token sits at position 0 of every row, so the
        default position ids `0..T` restart at 0 for the response, and the last `T` positions score `y_1..y_T`.
    """
    batch = completion_ids.size(0)
    context = completion_ids.new_full((batch, 1), context_token_id)
    input_ids = torch.cat([context, completion_ids], dim=1)
    attention_mask = torch.cat([completion_mask.new_ones((batch, 1)), completion_mask], dim=1)
    return input_ids, attention_mask

