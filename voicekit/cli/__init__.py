"""The ``voicekit`` command: ``demo``, ``run``, ``talk``, ``chat`` and ``doctor``.

One module per subcommand (``demo.py``, ``run.py``, ``talk.py``, ``chat.py`` with ``doctor``);
the agent the voice commands build is in ``_agent.py``, the latency probe in ``_latency.py``.

To add a subcommand ``NAME``:

1. write ``voicekit/cli/NAME.py`` with a function ``add_parser(subparsers)`` that calls
   ``subparsers.add_parser("NAME", help=..., description=...)``, adds its arguments (the LLM
   options every subcommand shares: ``add_llm_options(parser)`` from ``voicekit.cli._llm``,
   read with ``await resolve_cli_llm(args)``; or all the voice agent's options,
   ``add_agent_options(parser)`` from ``voicekit.cli._agent``; write each default into the
   help text, ``(default: %(default)s)``) and ends with ``parser.set_defaults(func=run)``,
   where ``run(args) -> int`` returns the exit code (0 done, 1 failed, 2 bad options);
2. add ``"NAME"`` to ``COMMANDS`` below (the order is the order of ``voicekit --help``).

A module may register more than one subcommand (``chat`` also registers ``doctor``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
from collections.abc import Sequence

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS: tuple[str, ...] = (
    "demo",
    "run",
    "talk",
    "chat",
    "serve",
    "eval",
    "call",
)
"""The subcommand modules of :mod:`voicekit.cli`, each with ``add_parser(subparsers)``."""


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``voicekit`` command, with every subcommand of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="voicekit", description="Voice agents from composable async-generator stages."
    )
    parser.add_argument("--version", action="version", version=f"voicekit {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(subparsers)
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("voicekit")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        from .. import __version__

        return __version__


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
