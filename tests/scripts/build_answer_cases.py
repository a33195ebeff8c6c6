r"""Rebuild ``tests/data/answer_equivalence_cases.jsonl`` from the upstream test tables.

Sources (test data only, with attribution in ``tests/data/answer_equivalence_cases.NOTICE.md``; no upstream code
is copied):

- math-verify 0.9.0 (Apache-2.0; ``tests/test_all.py`` carries an MIT header, Hugging Face), the sdist's ``tests/*.py``:
  ``pip download math-verify==0.9.0 --no-binary :all: --no-deps`` and unpack it.
- hendrycks/math (MIT, Dan Hendrycks) at commit 985bdc1696e88e8643f081a0ff4719da39f2ae2a,
  ``modeling/math_equivalence_test.py`` (``is_equiv(model_output, answer)``, as ``eval_math_gpt.py`` calls it).

The tables are read with ``ast`` (literal rows only), never imported. Each upstream pair becomes one
completion/gold pair:

- the side holding a ``\boxed`` is the completion (a model's output) and the other side the gold; when both
  or neither hold one, upstream's prediction is the completion;
- a completion without a box that states its answer on a "final answer is" line is kept as it is;
- any other completion without a box is a bare answer: it is put in a box (``The final answer is
  $\boxed{...}$.``, outer ``$`` removed) when it is a bare answer, and the pair is left out when it is prose
  (free-text extraction, which a boxed-answer reward does not do by design);
- rows run under non-default verify options (``strict=False``, ``allow_set_relation_comp=True``, a precision
  other than 6) are left out: they test an option, not the default equivalence.

    python tests/scripts/build_answer_cases.py /tmp/math_verify-0.9.0 /path/to/hendrycks-math
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

MATH_VERIFY = "math-verify==0.9.0"
HENDRYCKS = "hendrycks/math@985bdc1696e88e8643f081a0ff4719da39f2ae2a"
MV_FILES = [
    "test_all.py",
    "test_numina_cases.py",
    "test_open_thoughts.py",
    "test_yujianll.py",
    "test_boxed.py",
    "test_strict.py",
]
OUT = Path(__file__).resolve().parents[1] / "data" / "answer_equivalence_cases.jsonl"

_BOX = re.compile(r"\\(?:boxed|fbox)")
_FINAL_LINE = re.compile(r"final answer is", re.I)
# prose: two plain words in a row (outside LaTeX commands), inline math delimiters inside, or a line break
_TWO_WORDS = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}[\s,.:]+[A-Za-z]{2,}\b")


def _keyword(call: ast.Call, name: str) -> object:
    for kw in call.keywords:
        if kw.arg == name:
            return ast.literal_eval(kw.value) if not isinstance(kw.value, ast.Name) else kw.value.id
    return None


def _tables(path: Path) -> list[tuple[str, list[dict]]]:
    """(test name, rows as dicts) for each parametrized test of ``path`` whose rows are literals."""
    tree = ast.parse(path.read_text())
    out = []
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef) or not fn.decorator_list:
            continue
        calls = [n for n in ast.walk(fn) if isinstance(n, ast.Call)]
        compare = next((c for c in calls if getattr(c.func, "id", None) in ("compare_strings", "verify")), None)
        if compare is None:
            continue
        options = {name: _keyword(compare, name) for name in ("precision", "strict", "allow_set_relation_comp")}
        for deco in fn.decorator_list:
            if not (isinstance(deco, ast.Call) and getattr(deco.func, "attr", None) == "parametrize"):
                continue
            names = [n.strip() for n in ast.literal_eval(deco.args[0]).split(",")]
            rows = []
            for element in deco.args[1].elts:  # type: ignore[attr-defined]
                try:
                    values = ast.literal_eval(element)
                except ValueError:
                    continue  # an f-string row
                row = dict(zip(names, values, strict=True))
                for name, value in options.items():  # an option passed by name takes the row's value
                    if isinstance(value, str) and value in row:
                        row[name] = row[value]
                    elif value is not None:
                        row[name] = value
                rows.append(row)
            out.append((fn.name, rows))
    return out


def _strip_dollars(text: str) -> str:
    text = text.strip()
    while len(text) >= 2 and text[0] == "$" and text[-1] == "$":
        text = text[1:-1].strip()
    return text


def _as_pair(gold: str, pred: str) -> tuple[str, str, str] | None:
    """(completion, gold, form) for an upstream pair, or None when the prediction is prose."""
    if _BOX.search(gold) and not _BOX.search(pred):
        gold, pred = pred, gold
    if _BOX.search(pred):
        return pred, gold, "boxed"
    if _FINAL_LINE.search(pred):
        return pred, gold, "final-answer-line"
    bare = _strip_dollars(pred)
    if "$" in bare or "\\[" in bare or "\\(" in bare or "\n" in bare or _TWO_WORDS.search(bare):
        return None
    return f"The final answer is $\\boxed{{{bare}}}$.", gold, "wrapped"


def math_verify_cases(root: Path) -> tuple[list[dict], int]:
    cases, left_out = [], 0
    for name in MV_FILES:
        for test, rows in _tables(root / "tests" / name):
            for row in rows:
                expected = row.get("expected", row.get("result"))
                if (
                    row.get("strict") is False
                    or row.get("allow_set_relation_comp") is True
                    or row.get("precision", 6) != 6
                    or expected is None
                ):
                    left_out += 1
                    continue
                pair = _as_pair(row["gold"], row["pred"])
                if pair is None:
                    left_out += 1
                    continue
                completion, gold, form = pair
                source = f"{MATH_VERIFY} tests/{name}::{test}"
                cases.append(
                    {"source": source, "completion": completion, "gold": gold, "expected": int(expected), "form": form}
                )
    return cases, left_out


def hendrycks_cases(root: Path) -> list[dict]:
    tree = ast.parse((root / "modeling" / "math_equivalence_test.py").read_text())
    cases = []
    for fn in ast.walk(tree):
        if not (isinstance(fn, ast.FunctionDef) and fn.name.startswith("test_")):
            continue
        values = {
            t.targets[0].id: ast.literal_eval(t.value)  # type: ignore[attr-defined]
            for t in fn.body
            if isinstance(t, ast.Assign)
        }
        asserts = [n.func.attr for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
        expected = 1 if "assertTrue" in asserts else 0
        completion, gold, form = _as_pair(values["test_out"], values["test_in"]) or ("", "", "")
        cases.append(
            {
                "source": f"{HENDRYCKS} modeling/math_equivalence_test.py::{fn.name}",
                "completion": completion,
                "gold": gold,
                "expected": expected,
                "form": form,
            }
        )
    return cases


def main(argv: list[str]) -> None:
    mv_cases, left_out = math_verify_cases(Path(argv[0]))
    hd_cases = hendrycks_cases(Path(argv[1]))
    with OUT.open("w") as f:
        for case in mv_cases + hd_cases:
            f.write(json.dumps(case, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}: {len(mv_cases)} math-verify cases ({left_out} left out), {len(hd_cases)} Hendrycks cases")


if __name__ == "__main__":
    main(sys.argv[1:])
