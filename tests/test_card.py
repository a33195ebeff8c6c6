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


def test_a_dataset_read_from_local_files_is_named_as_such(tmp_path):
    import datasets

    from prerl_trl.trainer.card import dataset_label

    path = tmp_path / "train.jsonl"
    path.write_text('{"prompt": "1 + 1", "answer": "2"}\n')
    from_json = datasets.load_dataset("json", data_files=str(path), split="train")
    assert from_json.info.dataset_name == "json"  # what the card used to print
    assert dataset_label(from_json) == "a local json file"
    assert dataset_label(datasets.Dataset.from_dict({"prompt": ["x"]})) == "a local dataset"
    named = datasets.Dataset.from_dict({"prompt": ["x"]}, info=datasets.DatasetInfo(dataset_name="gsm8k"))
    assert dataset_label(named) == "gsm8k"
