"""PreRLTrainer and DSRLTrainer (placeholder while issue 2 is written)."""

from trl import GRPOTrainer


class PreRLTrainer(GRPOTrainer):
    pass


class DSRLTrainer(PreRLTrainer):
    pass
