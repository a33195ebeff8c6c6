"""The model card keeps its training summary when TRL's card template changes."""

from __future__ import annotations

from test_trainer import make_trainer
from trl import GRPOTrainer

from prerl_trl import DSRLConfig, DSRLTrainer


def test_training_summary_survives_a_template_without_framework_versions(tiny_model_dir, tmp_path, monkeypatch):
    trainer = make_trainer(DSRLTrainer, DSRLConfig, tiny_model_dir, tmp_path, dsrl_switch_step=3)
    card = tmp_path / "out" / "README.md"

    def other_template(self, model_name=None, dataset_name=None, tags=None):  # a TRL card laid out differently
        card.parent.mkdir(parents=True, exist_ok=True)
        card.write_text("# A model\n\nTrained with TRL.\n")

    monkeypatch.setattr(GRPOTrainer, "create_model_card", other_template)
    trainer.create_model_card()
    text = card.read_text()
    assert text.startswith("# A model\n\nTrained with TRL.\n")
    for expected in ("### PreRL training", "DSRLTrainer", "`dsrl_switch_step=3`", str(tiny_model_dir)):
        assert expected in text, expected
