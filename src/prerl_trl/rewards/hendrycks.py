r"""The Hendrycks-MATH string match: two answers are equal when their normalised strings are.

This is the ``is_equiv`` / ``strip_string`` rule of the MATH paper (Hendrycks et al., 2021), as
used by lm-evaluation-harness's ``hendrycks_math`` task and by verl's default math reward (which
the PreRL / DSRL authors trained with). The normalisation, in order:

1. drop newlines and ``\!``; ``\\`` -> ``\``; ``tfrac`` / ``dfrac`` -> ``frac``;
   drop ``\left`` and ``\right``, ``^{\circ}`` / ``^\circ``, and ``\$``;
2. units: if ``\text{ `` (with a space) occurs once, drop it and everything after it;
3. drop ``\%``; `` .`` -> `` 0.``, ``{.`` -> ``{0.``, and a leading ``.`` gets a ``0``;
4. ``k = 5`` -> `` 5``: a left side of at most two characters before the only ``=`` is dropped;
5. ``\sqrt3`` -> ``\sqrt{3}`` (one character); then every space is removed;
6. ``\frac12`` -> ``\frac{1}{2}``, ``\frac1b`` -> ``\frac{1}{b}``, ``\frac1{72}`` -> ``\frac{1}{72}``;
7. the whole answer ``0.5`` -> ``\frac{1}{2}``; a whole answer ``a/b`` of two integers -> ``\frac{a}{b}``.

When a rule cannot apply (``\text{ `` twice, a ``\sqrt`` or ``\frac`` at the very end) the two raw
strings are compared as they are, as the original does. Everything is linear string work: no
parser, no worker process, nothing that can hang.
"""

from __future__ import annotations

__all__ = ["hendrycks_equivalent", "hendrycks_normalize"]


class _CannotNormalize(Exception):
    """A rule met input it was not written for; the caller compares raw strings."""


def _drop_units(text: str) -> str:
    parts = text.split("\\text{ ")
    if len(parts) == 1:
        return text
    if len(parts) != 2:
        raise _CannotNormalize
    return parts[0]


def _brace_sqrt(text: str) -> str:
    head, *pieces = text.split("\\sqrt")
    out = [head]
    for piece in pieces:
        if not piece:
            raise _CannotNormalize
        out.append("\\sqrt" + (piece if piece[0] == "{" else "{" + piece[0] + "}" + piece[1:]))
    return "".join(out)


def _brace_fracs(text: str) -> str:
    head, *pieces = text.split("\\frac")
    out = [head]
    for piece in pieces:
        if not piece:
            raise _CannotNormalize
        if piece[0] == "{":
            out.append("\\frac" + piece)
        elif len(piece) < 2:
            return text  # "\frac1": left as it was
        elif piece[1] == "{":  # \frac1{72} -> \frac{1}{72}
            out.append("\\frac{" + piece[0] + "}" + piece[1:])
        else:  # \frac12 -> \frac{1}{2}
            out.append("\\frac{" + piece[0] + "}{" + piece[1] + "}" + piece[2:])
    return "".join(out)


def _slash_to_frac(text: str) -> str:
    parts = text.split("/")
    if len(parts) != 2:
        return text
    try:
        num, den = int(parts[0]), int(parts[1])
    except ValueError:
        return text
    if text != f"{num}/{den}":  # "03/4", "+3/4", "3 /4": not written the canonical way
        return text
    return f"\\frac{{{num}}}{{{den}}}"


def hendrycks_normalize(text: str) -> str:
    r"""The MATH paper's normalised form of an answer (raises ``_CannotNormalize`` where it gives up)."""
    text = text.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    text = text.replace("tfrac", "frac").replace("dfrac", "frac")
    text = text.replace("\\left", "").replace("\\right", "")
    text = text.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "")
    text = _drop_units(text)
    text = text.replace("\\%", "")
    text = text.replace(" .", " 0.").replace("{.", "{0.")
    if not text:
        return text
    if text[0] == ".":
        text = "0" + text
    sides = text.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        text = sides[1]
    text = _brace_sqrt(text).replace(" ", "")
    text = _brace_fracs(text)
    if text == "0.5":
        text = "\\frac{1}{2}"
    return _slash_to_frac(text)


def hendrycks_equivalent(prediction: str, gold: str) -> bool:
    """True when both normalise to the same string (raw equality where normalisation gives up)."""
    try:
        return hendrycks_normalize(prediction) == hendrycks_normalize(gold)
    except _CannotNormalize:
        return prediction == gold
