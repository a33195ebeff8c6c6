"""The `prerl-trl` command line: train | eval | grad-align | demo."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: prerl-trl {train,eval,grad-align,demo} ...")
        return 0
    command, rest = argv[0], argv[1:]
    if command == "eval":
        from .evaluation import main as eval_main

        return eval_main(rest)
    if command == "grad-align":
        from .diagnostics import main as grad_align_main

        return grad_align_main(rest)
    print(f"prerl-trl: unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
