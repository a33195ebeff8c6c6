"""The real model's README tables, rendered from its JSON results (`python -m benchmarks.real_model.report`), so that
every figure in benchmarks/real_model/README.md comes from `results/` and `tests/test_readme_figures.py` can check it.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
LABELS = {
    "token": "`token`: `<\\|im_start\\|>` (the paper's)",
    "chat_frame": "`chat_frame`: system turn, empty user turn, assistant header",
    "chat_frame_history": "`chat_frame_history`: the same with the 3 worked examples",
}


def alignment_table(path: Path = HERE / "results" / "gpu-v2" / "alignment.json") -> str:
    """One row per pre-train-space context: context tokens, mean cosine, negative share, per-token log-probs."""
    contexts = json.loads(Path(path).read_text())["contexts"]
    lines = [
        "| context before y | context tokens | mean cosine | negative pairs | log P(y\\|context) per token "
        "| log P(y\\|x) per token |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, label in LABELS.items():
        c = contexts[name]
        lines.append(f"| {label} | {c['context_tokens']} | {c['cosine_mean']:.3f} | {c['negative_frac']:.0%} | "
                     f"{c['logp_marginal_per_token']:.2f} | {c['logp_conditional_per_token']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(alignment_table())
