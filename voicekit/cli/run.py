"""``voicekit run IN.wav [...] --out DIR``: the voice agent answers each recording.

Each recording is its own conversation (its own Session), spoken into the agent in real time as
a live caller would, then silence until the agent has answered — so the latency column is what
a caller would live through. For each recording the command writes ``<name>-reply.wav`` (all
the reply audio) and ``<name>.txt`` (what was said), shows a progress bar over the files on
stderr, and prints a summary table; ``summary.tsv`` holds the same rows with the full texts.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .. import audio
from .._errors import VoicekitError
from ..audio import from_array
from ._agent import (
    Engines,
    Exchange,
    add_agent_options,
    answer_recording,
    build_engines,
    output_dir,
    prepare,
    report_error,
)
from ._llm import failure_hint

__all__ = ["Progress", "add_parser", "run", "table"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="the voice agent answers each recording; a reply .wav and a summary table",
        description=(
            "Answer each recording with the voice agent, one conversation per file, spoken in "
            "real time as a live caller would. Writes a reply .wav and a transcript per file "
            "into --out and prints a summary table."
        ),
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="IN.wav", help="recordings")
    parser.add_argument(
        "--out",
        type=output_dir,
        default=Path("voicekit-run-out"),
        metavar="DIR",
        help="the directory to write the outputs into (default: %(default)s)",
    )
    add_agent_options(parser)
    parser.set_defaults(func=run)


class Progress:
    """A one-line progress bar on a terminal; one line per step elsewhere (logs, CI)."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 24) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.width = width
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())

    def show(self, done: int, label: str = "") -> None:
        """Show ``done`` of ``total`` finished, and what is going on now."""
        filled = round(self.width * done / self.total) if self.total else self.width
        bar = "█" * filled + "·" * (self.width - filled)
        line = f"[{bar}] {done}/{self.total} {label}".rstrip()
        if self.live:
            self.stream.write("\r\x1b[2K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()


@dataclass
class Row:
    """One recording's outcome."""

    file: str
    transcript: str = ""
    reply: str = ""
    latency: float | None = None
    error: str = ""


def run(args: argparse.Namespace) -> int:
    """``voicekit run``: 0 when every recording was answered, 1 otherwise, 2 for bad options."""
    missing = [str(p) for p in args.inputs if not p.is_file()]
    if missing:
        print(f"voicekit run: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        rows = asyncio.run(_run(args))
    except (VoicekitError, OSError) as exc:
        return report_error("run", exc, args)
    except KeyboardInterrupt:
        return 130
    print(table(rows))
    for line in failures(rows, args):
        print(line)
    (args.out / "summary.tsv").write_text(_tsv(rows), encoding="utf-8")
    print(f"outputs are in {args.out.resolve()} (summary.tsv, a reply .wav and .txt per file)")
    return 0 if all(r.reply and not r.error for r in rows) else 1


def failures(rows: list[Row], args: argparse.Namespace) -> list[str]:
    """The full error of each failed recording (the table cuts them), then one hint.

    >>> rows = [Row("a.wav", error="llm: could not connect")]
    >>> for line in failures(rows, argparse.Namespace(llm="ollama")):
    ...     print(line)
    error a.wav: llm: could not connect
    hint is Ollama running? try `voicekit doctor --llm ollama`
    """
    failed = [row for row in rows if row.error]
    lines = [f"error {Path(row.file).name}: {row.error}" for row in failed]
    sources = [row.error.split(":", 1)[0] for row in failed]
    source = next((s for s in sources if s in ("llm", "stt", "tts")), None)
    if source:
        lines.append("hint " + failure_hint(args, source))
    return lines


def _names(paths: list[Path]) -> list[str]:
    """A distinct output name per input (the file stem, numbered when stems repeat)."""
    names: list[str] = []
    for path in paths:
        name, n = path.stem, 2
        while name in names:
            name, n = f"{path.stem}-{n}", n + 1
        names.append(name)
    return names


async def _run(args: argparse.Namespace) -> list[Row]:
    engines: Engines = await build_engines(args)
    for line in engines.about:
        print(line, flush=True)
    seconds = await prepare(engines)
    if seconds:
        print(f"models loaded and warmed up in {seconds:.1f} s", flush=True)
    progress = Progress(len(args.inputs))
    rows: list[Row] = []
    try:
        for done, (path, name) in enumerate(zip(args.inputs, _names(args.inputs), strict=True)):
            progress.show(done, path.name)
            rows.append(await _answer(engines, path, args.out, name))
        progress.show(len(args.inputs), "done")
    finally:
        progress.close()
    return rows


async def _answer(engines: Engines, path: Path, out: Path, name: str) -> Row:
    row = Row(str(path))
    try:
        result = await answer_recording(engines, path)
    except VoicekitError as exc:
        row.error = f"{type(exc).__name__}: {exc}"
        return row
    row.transcript = " / ".join(user for user, _ in result.turns if user)
    row.reply = " / ".join(said for _, said in result.turns if said)
    totals = [t.total for t in result.latency if t.total is not None]
    row.latency = statistics.median(totals) if totals else None
    row.error = "; ".join(result.errors)
    await _write(result, out, name)
    return row


async def _write(result: Exchange, out: Path, name: str) -> None:
    lines = []
    for user, said in result.turns:
        if user:
            lines.append(f"user: {user}")
        if said:
            lines.append(f"assistant: {said}")
    text = "\n".join(lines) + "\n" if lines else ""
    await asyncio.to_thread((out / f"{name}.txt").write_text, text, encoding="utf-8")
    joined = result.reply_audio
    if joined is not None:
        await audio.write(from_array(*joined), out / f"{name}-reply.wav")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def table(rows: list[Row], *, widths: tuple[int, int, int] = (22, 38, 44)) -> str:
    """The summary as a text table: file, latency, transcript, reply."""
    file_w, heard_w, reply_w = widths
    lines = [
        f"{'file':<{file_w}}  {'latency':>7}  {'transcript':<{heard_w}}  reply",
        f"{'-' * file_w}  {'-' * 7}  {'-' * heard_w}  {'-' * reply_w}",
    ]
    for row in rows:
        latency = "–" if row.latency is None else f"{row.latency:.2f} s"
        reply = row.reply or ("(error) " + row.error if row.error else "(no reply)")
        heard = row.transcript or ("" if row.error else "(no speech heard)")
        lines.append(
            f"{_cut(Path(row.file).name, file_w):<{file_w}}  {latency:>7}  "
            f"{_cut(heard, heard_w):<{heard_w}}  {_cut(reply, reply_w)}"
        )
    return "\n".join(lines)


def _tsv(rows: list[Row]) -> str:
    def clean(text: str) -> str:
        return " ".join(text.split())

    lines = ["file\tlatency_s\ttranscript\treply\terror"]
    for row in rows:
        latency = "" if row.latency is None else f"{row.latency:.3f}"
        fields = [row.file, latency, row.transcript, row.reply, row.error]
        lines.append("\t".join(clean(f) for f in fields))
    return "\n".join(lines) + "\n"
