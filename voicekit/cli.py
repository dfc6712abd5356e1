"""The ``voicekit`` command. Each subcommand lives in its own ``_cli_*`` module."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

__all__ = ["main"]

# Each module named here has ``add_parser(subparsers)``, which registers one or more
# subcommands and sets ``func`` (a callable taking the parsed args and returning an exit code).
_COMMAND_MODULES = (
    "voicekit._cli_demo",
    "voicekit._cli_run",
    "voicekit._cli_talk",
    "voicekit._cli_chat",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voicekit", description="Voice agents from composable async-generator stages."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


class _PrintedByTheCommand(logging.Filter):
    """The commands print a failed reply themselves (with a hint): not twice."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("reply failed")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    agent_log = logging.getLogger("voicekit.agent")
    if not any(isinstance(f, _PrintedByTheCommand) for f in agent_log.filters):
        agent_log.addFilter(_PrintedByTheCommand())
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
