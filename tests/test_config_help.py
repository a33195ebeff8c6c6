"""Each PreRLConfig / DSRLConfig field says the same thing in the class docstring and in its `help` (GRPOConfig's form),
so `prerl-trl train --help` and the API docs never disagree."""

from __future__ import annotations

import dataclasses
import re

import pytest
from trl import GRPOConfig

from prerl_trl import DSRLConfig, PreRLConfig


def documented(cls) -> dict[str, str]:
    """The parameter descriptions of a config class's own docstring, whitespace collapsed."""
    entries: dict[str, list[str]] = {}
    for line in cls.__doc__.splitlines():
        head = re.match(r"        (\w+) \(`.*\):$", line)
        if head:
            entries[head.group(1)] = []
        elif line.startswith(" " * 12) and entries:
            entries[list(entries)[-1]].append(line)
    return {name: " ".join(" ".join(lines).split()) for name, lines in entries.items()}


OWN_FIELDS = [(cls, f) for cls, base in ((PreRLConfig, GRPOConfig), (DSRLConfig, PreRLConfig))
              for f in dataclasses.fields(cls) if f.name not in {g.name for g in dataclasses.fields(base)}]


def test_every_own_field_is_checked():
    assert len(OWN_FIELDS) >= 15


@pytest.mark.parametrize(("cls", "field"), OWN_FIELDS, ids=lambda x: getattr(x, "name", getattr(x, "__name__", "")))
def test_docstring_and_help_agree(cls, field):
    docs = documented(cls)
    assert field.name in docs, f"{field.name} is not in {cls.__name__}'s docstring"
    assert " ".join(field.metadata["help"].split()) == docs[field.name]


@pytest.mark.parametrize("name", ["rl_loss_coef", "rl_sample_filter", "rl_advantage_estimator"])
def test_rl_fields_read_as_conditional(name):
    field = next(f for f in dataclasses.fields(PreRLConfig) if f.name == name)
    assert "conditional" in field.metadata["help"] and "conditional" in documented(PreRLConfig)[name]
