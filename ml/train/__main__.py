"""``python -m ml.train <subcommand>``: training without dagster (works on a bare GPU machine).

Subcommands are registered from modules: each module exposes ``HELP`` (str), ``add_args(parser)``
and ``run(args) -> int``. Only the chosen subcommand's module is imported; an import error is
raised as it is (a missing dependency is named by Python, not hidden behind another command).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable

# subcommand -> module implementing HELP / add_args / run
SUBCOMMANDS: dict[str, str] = {
    "sft": "ml.train.sft.cli",
    "gdpo": "ml.train.gdpo.cli",
}


def _load(module: str) -> tuple[str, Callable, Callable]:
    m = importlib.import_module(module)
    return getattr(m, "HELP", ""), m.add_args, m.run


def build_parser(only: str | None = None) -> tuple[argparse.ArgumentParser, dict[str, Callable]]:
    """The top-level parser and subcommand -> run function.

    With ``only`` set, just that subcommand's module is imported (the others are listed by name), so
    ``python -m ml.train sft`` never imports the GDPO code and vice versa.
    """
    parser = argparse.ArgumentParser(prog="python -m ml.train", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    runners: dict[str, Callable] = {}
    for name, module in SUBCOMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=f"(see python -m ml.train {name} --help)")
            continue
        loaded = _load(module)
        help_text, add_args, run = loaded
        sp = sub.add_parser(name, help=help_text, description=help_text)
        add_args(sp)
        runners[name] = run
    return parser, runners


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser, runners = build_parser(chosen if chosen in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    return int(runners[args.command](args) or 0)


if __name__ == "__main__":
    sys.exit(main())
