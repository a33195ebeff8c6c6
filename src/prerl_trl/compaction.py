"""Pure functions that shrink a batch to the rows and columns a loss uses.

In NSR-PreRL most rollouts of a batch are filtered out of the loss: their loss mask is all zero. With a token-mean loss
over the kept tokens (TRL's "dapo" normalisation, whose denominator is counted on the whole batch beforehand) such a
row adds exactly nothing, so it need not be forwarded at all. Likewise the padding columns after the last kept token
change nothing for a causal model. These helpers pick the rows and the width, pad the rows to a common count (several
processes must agree on it), and slice every per-row tensor of a batch dict accordingly.
"""

from __future__ import annotations

from typing import Any

import torch

# Keys of a batch whose columns are *not* aligned with the completion (left-padded prompt and context tensors).
_UNALIGNED_PREFIXES = ("prompt", "prerl_context")


def kept_rows(loss_mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The rows of `loss_mask` with at least one loss token, and the width up to their last loss token.

    Args:
        loss_mask: `(B, T)` 1 on the tokens that enter the loss, 0 elsewhere (padding, filtered-out rollouts).

    Returns:
        `(rows, width)`: a 1-D ascending index tensor (empty when no row has a loss token) and the number of leading
        columns that hold every kept token (1 when there is none).
    """
    rows = torch.nonzero(loss_mask.sum(dim=1) > 0, as_tuple=False).flatten()
    if rows.numel() == 0:
        return rows, 1
    columns = torch.nonzero(loss_mask[rows].sum(dim=0) > 0, as_tuple=False).flatten()
    return rows, int(columns[-1].item()) + 1


def pad_rows(rows: torch.Tensor, target: int) -> torch.Tensor:
    """`rows` followed by copies of its first entry (row 0 when empty) up to `target` entries.

    The copies are there to be given a zero loss mask: a process with no kept row still runs a forward and a backward,
    and every process hands TRL's per-row metric gathers the same number of rows.
    """
    filler = rows[:1] if rows.numel() else torch.zeros(1, dtype=torch.long, device=rows.device)
    return torch.cat([rows, filler.expand(target - rows.numel())])


def compact_batch(batch: dict[str, Any], rows: torch.Tensor, width: int) -> dict[str, Any]:
    """Keep `rows` of every per-row tensor of `batch`, and the first `width` columns of the completion-aligned ones.

    A tensor is per-row when its first dimension is the batch size (that of `batch["completion_ids"]`), and
    completion-aligned when it is at least 2-D with `T` columns (the completion length) and its key does not start
    with "prompt" or "prerl_context" (prompt and context tensors are left-padded and keep all their columns). 0-dim tensors and other values are
    passed through unchanged.
    """
    num_rows, length = batch["completion_ids"].shape
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.size(0) == num_rows:
            value = value.index_select(0, rows.to(value.device))
            if value.dim() >= 2 and value.size(1) == length and not key.startswith(_UNALIGNED_PREFIXES):
                value = value[:, :width]
        out[key] = value
    return out


def scatter_rows(values: torch.Tensor, rows: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Put `(len(rows), w)` values back at `rows` of a zero `(B, T)` tensor (the inverse of compaction, w <= T)."""
    full = values.new_zeros(shape)
    full[rows.to(values.device), : values.size(1)] = values
    return full


def even_chunks(num_rows: int, num_chunks: int) -> list[tuple[int, int]]:
    """Split `range(num_rows)` into exactly `num_chunks` contiguous `(start, end)` chunks, sizes differing by at most
    one; chunks beyond `num_rows` are empty `(n, n)`."""
    base, extra = divmod(num_rows, num_chunks)
    bounds, start = [], 0
    for i in range(num_chunks):
        end = start + base + (1 if i < extra else 0)
        bounds.append((start, end))
        start = end
    return bounds
