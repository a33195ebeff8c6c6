"""The model card of a PreRL / DSRL run: TRL's card, with the base model named and a section on how the run trained."""

from __future__ import annotations

import os
import shutil
import textwrap
from typing import Any

from ..config import DSRLConfig

PRERL_CITATION = textwrap.dedent("""\
    @article{tan2026prerl,
        title        = {{From P(y|x) to P(y): Investigating Reinforcement Learning in Pre-train Space}},
        author       = {Tan and Wang and Liu and Liu and Liang and He and Zhao and Liu},
        year         = 2026,
        eprint       = {arXiv:2604.14142},
    }""")



# datasets' builders for local files: a dataset loaded with one of them names the builder, not a dataset
_FILE_BUILDERS = ("json", "csv", "parquet", "text", "arrow")


def dataset_label(dataset: Any) -> str:
    """How the card names a training dataset: its Hub name or config, "a local json file" (or csv, ...) for one that
    `load_dataset` read from local files, else "a local dataset"."""
    info = getattr(dataset, "info", None)
    name = getattr(info, "dataset_name", None) or getattr(info, "config_name", None)
    if name in _FILE_BUILDERS:
        return f"a local {name} file"
    return name or "a local dataset"


class ModelCardMixin:
    """For a `GRPOTrainer` subclass with `_steps_run` (optimizer steps per phase) and an optional `recipe`."""

    def create_model_card(self, model_name=None, dataset_name=None, tags=None) -> None:
        """TRL's card, with the base model named even when it is a local path, and a section that records how this
        run trained: trainer, phases actually run, filters, coefficients, reward functions and dataset."""
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if not self.is_world_process_zero():
            return
        path = os.path.join(self.args.output_dir, "README.md")
        with open(path) as f:
            card = f.read()
        with open(path, "w") as f:
            f.write(self._patched_card(card))

    def _patched_card(self, card: str) -> str:
        """TRL renders `[None]` and `model="None"` for a local base model: name it. Our training summary goes before
        TRL's "Framework versions" section, or at the end when a TRL template has no such section: it is never lost
        to a template change (the base model is named in the summary too)."""
        base = self.model.config._name_or_path or "an unnamed model"
        card = card.replace("fine-tuned version of [None](https://huggingface.co/None)", f"fine-tuned version of `{base}`")
        card = card.replace('model="None"', f'model="{self.hub_model_id or self.args.output_dir}"')
        summary = self._training_summary()
        if "### Framework versions" in card:
            return card.replace("### Framework versions", summary + "\n### Framework versions", 1)
        return card.rstrip("\n") + "\n\n" + summary

    def _training_summary(self) -> str:
        args = self.args
        dataset_name = getattr(self, "dataset_source", None) or dataset_label(self.train_dataset)  # the CLI sets it
        rows = [
            ("trainer", f"{type(self).__name__} (prerl-trl)"),
            ("base model", f"`{self.model.config._name_or_path}`"),
            ("optimizer steps run", self._steps_over_run()),
            ("pre-train-space filter", f"`{args.prerl_sample_filter}` (`prerl_sample_filter`)"),
            ("coefficients", f"`prerl_loss_coef={args.prerl_loss_coef}`, `rl_loss_coef={args.rl_loss_coef}`, "
                             f"`beta={args.beta}`, `learning_rate={args.learning_rate}`"),
            ("conditional filter", f"`{args.rl_sample_filter}` (`rl_sample_filter`)"),
            ("reward functions", ", ".join(f"`{name}`" for name in self.reward_func_names)),
            ("dataset", f"{dataset_name} ({len(self.train_dataset) if hasattr(self.train_dataset, '__len__') else '?'} rows)"),
        ]
        if isinstance(args, DSRLConfig):
            rows.insert(3, ("switch", f"`dsrl_switch_step={args.dsrl_switch_step}`"))
        recipe = getattr(self, "recipe", None)  # set by `prerl-trl train --config`
        if recipe:
            rows.append(("recipe", f"`{recipe}`"))
        table = "\n".join(f"| {key} | {value} |" for key, value in rows)
        return f"### PreRL training\n\n| | |\n| --- | --- |\n{table}\n"

    def _steps_over_run(self) -> str:
        """Optimizer steps per phase over the whole run, the sessions before a resume included (`_steps_run` counts
        this session's): PreRL trains in pre-train space throughout, DSRL until the step it switched at."""
        steps = dict(self._steps_run)
        total = self.state.global_step
        earlier = total - sum(steps.values())
        note = ""
        if earlier > 0:
            note = f" ({earlier} of them before resuming)"
            steps = self._steps_with_earlier(steps, total, earlier)
        return ", ".join(f"{n} in {phase}" for phase, n in steps.items()) + note

    def _steps_with_earlier(self, steps: dict[str, int], total: int, earlier: int) -> dict[str, int]:
        """This session's steps per phase, with the `earlier` steps of the sessions before a resume put in theirs
        (`total` in all): PreRL trains in pre-train space throughout. DSRLTrainer overrides this with its switch."""
        return {**steps, "pre-train space": steps.get("pre-train space", 0) + earlier}

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save the model, and (outside checkpoints) the model card that cites PreRL beside GRPO."""
        super().save_model(output_dir, _internal_call=_internal_call)
        if _internal_call or not self.is_world_process_zero():
            return
        model_name = (self.args.hub_model_id or self.args.output_dir).rstrip("/").split("/")[-1]
        self.create_model_card(model_name=model_name)
        card = os.path.join(self.args.output_dir, "README.md")
        if output_dir is not None and os.path.abspath(output_dir) != os.path.abspath(self.args.output_dir):
            shutil.copyfile(card, os.path.join(output_dir, "README.md"))

