"""Pure functions for scoring a rollout in pre-train space: log P(y) after a context with the question removed.

Rollouts are generated conditionally, y ~ P(. | x). In pre-train space the loss scores the same response tokens with
the question removed: the model sees `[c_1, ..., c_C, y_1, ..., y_T]` with positions restarting at 0, so every
response token, y_1 included, is predicted from the context and the response prefix only. The context is one of
`PRETRAIN_CONTEXTS`:

- `"token"` (the default, and the paper's): a single token `c` (`<|im_start|>` in the authors' runs on Qwen3). Prompt,
  system prompt and chat template are all removed.
- `"chat_frame"`: the conversation's frame without the question, rendered by the tokenizer's own chat template: the
  system turn(s), an empty user turn and the generation prompt (the assistant header).
- `"chat_frame_history"`: the same, keeping every earlier turn of the prompt (few-shot examples) before the empty
  user turn.

Only the single token is the paper's. A chat model never sees an answer right after `<|im_start|>`, so there log P(y)
is a poor prior; the frames put y where a chat model expects an answer, still without the question.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

IM_START = "<|im_start|>"
PRETRAIN_CONTEXTS = ("token", "chat_frame", "chat_frame_history")
_FRAME_ROLES = ("system", "developer")  # the turns that frame a conversation before its first user turn


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
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    context: int | torch.Tensor,
    context_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Build pre-train-space model inputs `[context] + completion` from right-padded completions: the one place where
    they are assembled (the trainers' loss, old-policy and reference passes, and `gradient_alignment` all use it).

    Args:
        completion_ids: `(B, T)` response token ids, right-padded.
        completion_mask: `(B, T)` 1 on response tokens, 0 on padding.
        context: the id of a single context token, or `(B, C)` context ids per row, left-padded when rows differ in
            length.
        context_mask: `(B, C)` 1 on context tokens, 0 on left padding (all ones when omitted).

    Returns:
        `input_ids` and `attention_mask`, both `(B, C + T)`. The context fills the first `C` positions of every row, so
        with the default position ids the positions restart at 0, and the last `T` positions score `y_1..y_T`.
    """
    batch = completion_ids.size(0)
    if isinstance(context, int):
        context = completion_ids.new_full((batch, 1), context)
    else:
        context = context.to(completion_ids.device, completion_ids.dtype)
        if context.dim() != 2 or context.size(0) != batch or context.size(1) == 0:
            raise ValueError(f"context must be (B={batch}, C >= 1) token ids, got shape {tuple(context.shape)}")
    if context_mask is None:
        context_mask = torch.ones_like(context)
    input_ids = torch.cat([context, completion_ids], dim=1)
    attention_mask = torch.cat([context_mask.to(completion_mask.device, completion_mask.dtype), completion_mask], dim=1)
    return input_ids, attention_mask


def _text_of(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def frame_messages(prompt: Sequence[dict], history: bool = False) -> list[dict]:
    """The conversation's frame with the question removed: the leading system turn(s) (with `history`, every turn
    before the last) followed by an empty user turn. The chat template's generation prompt comes after it.

    Raises:
        ValueError: `prompt` is not a conversation (a list of messages) ending with the user's question.
    """
    if isinstance(prompt, str) or not isinstance(prompt, Sequence) or not prompt:
        raise ValueError(
            f"prerl_context='chat_frame' needs conversational prompts (a list of messages), got {type(prompt).__name__}."
            " Use prerl_context='token' for plain-text prompts."
        )
    if not isinstance(prompt[-1], dict) or prompt[-1].get("role") != "user":
        role = prompt[-1].get("role") if isinstance(prompt[-1], dict) else type(prompt[-1]).__name__
        raise ValueError(
            f"prerl_context='chat_frame': the prompt's last message must be the user's question, got role {role!r}."
        )
    earlier = list(prompt[:-1])
    if not history:
        leading = 0
        while leading < len(earlier) and earlier[leading].get("role") in _FRAME_ROLES:
            leading += 1
        earlier = earlier[:leading]
    return [*earlier, {"role": "user", "content": ""}]


def check_frame_without_question(frame_text: str, prompt: Sequence[dict]) -> None:
    """Refuse a frame whose text holds the question: log P(y) after it would not be pre-train space.

    Raises:
        ValueError: the question (the text of the prompt's last message) occurs in `frame_text`.
    """
    question = _text_of(prompt[-1].get("content")).strip()
    if question and question in frame_text:
        raise ValueError(
            f"prerl_context: the pre-train-space frame holds the question text ({question[:60]!r}), in the system turn "
            "or an earlier turn, so log P(y) after it is not pre-train space. Remove the question from those turns, "
            "or use prerl_context='chat_frame' (system turns only) or 'token'."
        )


def chat_template_renderer(tokenizer: Any, **template_kwargs: Any) -> Callable[[list[dict], bool], Any]:
    """`render(messages, tokenize)` for `PretrainContext`: the tokenizer's chat template with the generation prompt
    (token ids when `tokenize`, else the text); `template_kwargs` go to `apply_chat_template` (e.g. `tools`,
    `chat_template`, `enable_thinking`)."""

    def render(messages: list[dict], tokenize: bool) -> Any:
        rendered = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=tokenize, return_dict=tokenize, **template_kwargs
        )
        return rendered["input_ids"] if tokenize else rendered

    return render


class PretrainContext:
    """The context ids before y in pre-train space, per prompt: one token, or the prompt's chat frame.

    Args:
        context: one of `PRETRAIN_CONTEXTS`.
        token_id: the single context token (mode `"token"`).
        render: `render(messages, tokenize)` applies the tokenizer's chat template with the generation prompt, as the
            trainer renders its prompts: token ids when `tokenize`, else the text (used to check the frame).

    Frames are cached by their messages, so a dataset with one system prompt renders its frame once.
    """

    def __init__(self, context: str, token_id: int, render: Callable[[list[dict], bool], Any] | None = None) -> None:
        if context not in PRETRAIN_CONTEXTS:
            raise ValueError(
                f"prerl_context={context!r} is not supported. Use one of {', '.join(map(repr, PRETRAIN_CONTEXTS))}."
            )
        if context != "token" and render is None:
            raise ValueError(f"prerl_context={context!r} needs a tokenizer with a chat template")
        self.context, self.token_id, self._render = context, token_id, render
        self._ids: dict[str, list[int]] = {}
        self._texts: dict[str, str] = {}

    def ids(self, prompt: Any) -> list[int]:
        """The context ids for one prompt (a list of messages, or any prompt in mode `"token"`)."""
        if self.context == "token":
            return [self.token_id]
        frame = frame_messages(prompt, history=self.context == "chat_frame_history")
        key = repr(frame)
        if key not in self._ids:
            ids = [int(i) for i in self._render(frame, True)]
            if not ids:
                raise ValueError(f"prerl_context={self.context!r}: the chat template rendered an empty frame")
            self._ids[key], self._texts[key] = ids, str(self._render(frame, False))
        # The question differs from row to row, so the check runs per prompt, on the cached frame's text.
        check_frame_without_question(self._texts[key], prompt)
        return self._ids[key]

    def batch(self, prompts: Sequence[Any], pad_id: int, device: torch.device | str | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(B, C)` context ids for `prompts`, left-padded with `pad_id` to the longest, and their mask."""
        rows = [self.ids(p) for p in prompts]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row):] = 1
        return ids.to(device), mask.to(device)
