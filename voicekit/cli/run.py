"""``voicekit run IN.wav|DIR [...] --out DIR``: the voice agent answers each recording.

Each recording is its own conversation (its own Session), spoken into the agent in real time as
a live caller would, then silence until the agent has answered — so the latency column is what
a caller would live through. A folder stands for the audio files in it (.wav, .flac, .ogg,
.mp3; not its subfolders), in name order. For each recording the command writes
``<name>-reply.wav`` (all the reply audio) and ``<name>.txt`` (what was said, in time order),
shows the progress over the files on stderr, and prints a summary table with, under it, the
full error of each recording that failed; ``summary.tsv`` holds the same rows with the full
texts. Ctrl-C stops it: the summary of the recordings that finished is still printed and
written, and it says so.

On a terminal the progress is a bar and the table has borders (``rich``); elsewhere (a pipe, a
log, CI) both are plain text, a line per step.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from .. import audio
from .._errors import ConfigError, VoicekitError
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

__all__ = ["AUDIO_SUFFIXES", "Progress", "Row", "add_parser", "expand", "render", "run", "table"]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3")
"""The files a folder argument stands for."""

NO_SPEECH = "no speech was heard in the recording"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="the voice agent answers each recording; a reply .wav and a summary table",
        description=(
            "Answer each recording with the voice agent, one conversation per file, spoken in "
            "real time as a live caller would. A folder stands for the audio files in it. "
            "Writes a reply .wav and a transcript per file into --out and prints a summary "
            "table. Ctrl-C stops it and still writes the summary of what finished."
        ),
    )
    parser.add_argument(
        "inputs", nargs="+", type=Path, metavar="IN", help="recordings, or folders of them"
    )
    parser.add_argument(
        "--out",
        type=output_dir,
        default=Path("voicekit-run-out"),
        metavar="DIR",
        help="the directory to write the outputs into (default: %(default)s)",
    )
    add_agent_options(parser)
    parser.set_defaults(func=run)


def expand(paths: list[Path]) -> list[Path]:
    """The recordings ``paths`` name: a file as is, a folder as its audio files in name order.

    A missing path, or a folder without audio files, is a :class:`~voicekit.ConfigError`.
    """
    found: list[Path] = []
    missing: list[str] = []
    for path in paths:
        if path.is_dir():
            files = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
            )
            if not files:
                raise ConfigError(
                    f"no audio files in the folder {path} (looked for {', '.join(AUDIO_SUFFIXES)})"
                )
            found += files
        elif path.is_file():
            found.append(path)
        else:
            missing.append(str(path))
    if missing:
        raise ConfigError(f"no such file: {', '.join(missing)}")
    return found


class Progress:
    """Progress over the files: a ``rich`` bar on a terminal, a plain line per step elsewhere."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.bar: RichProgress | None = None
        console = Console(file=self.stream)
        if console.is_terminal:
            self.bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            )
            self.task = self.bar.add_task("", total=total)
            self.bar.start()

    def show(self, done: int, label: str = "") -> None:
        """Show ``done`` of ``total`` finished, and what is going on now."""
        if self.bar is not None:
            self.bar.update(self.task, completed=done, description=label)
        else:
            self.stream.write(f"[{done}/{self.total}] {label}".rstrip() + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@dataclass
class Row:
    """One recording's outcome."""

    file: str
    transcript: str = ""
    reply: str = ""
    latency: float | None = None
    error: str = ""

    @property
    def answered(self) -> bool:
        return bool(self.reply) and not self.error


def run(args: argparse.Namespace) -> int:
    """``voicekit run``: 0 when every recording was answered, 1 otherwise, 2 for bad options,
    130 after Ctrl-C (with the summary of what finished)."""
    try:
        inputs = expand(args.inputs)
        args.out.mkdir(parents=True, exist_ok=True)
    except (ConfigError, OSError) as exc:
        return report_error("run", exc, args)
    rows: list[Row] = []
    try:
        asyncio.run(_run(args, inputs, rows))
    except (VoicekitError, OSError) as exc:
        return report_error("run", exc, args)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        _summary(rows, args)
        print(
            f"interrupted (Ctrl-C): {len(rows)} of {len(inputs)} recordings finished; the "
            "summary above and summary.tsv hold only those"
        )
        return 130
    _summary(rows, args)
    return 0 if all(row.answered for row in rows) else 1


def render(rows: list[Row], *, width: int = 160) -> str:
    """The summary table as plain text (no borders, no colour, no trailing spaces)."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(table(rows, plain=True))
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())


def _summary(rows: list[Row], args: argparse.Namespace) -> None:
    console = Console(file=sys.stdout)
    if console.is_terminal:
        console.print(table(rows, plain=False))
    else:
        print(render(rows))
    for line in failures(rows, args):
        print(line)
    (args.out / "summary.tsv").write_text(_tsv(rows), encoding="utf-8")
    print(f"outputs are in {args.out.resolve()} (summary.tsv, a reply .wav and .txt per file)")
    sys.stdout.flush()


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


async def _run(args: argparse.Namespace, inputs: list[Path], rows: list[Row]) -> None:
    """Answer each of ``inputs``, appending a row to ``rows`` as each one finishes."""
    engines: Engines = await build_engines(args)
    for line in engines.about:
        print(line, flush=True)
    seconds = await prepare(engines)
    if seconds:
        print(f"models loaded and warmed up in {seconds:.1f} s", flush=True)
    progress = Progress(len(inputs))
    try:
        for done, (path, name) in enumerate(zip(inputs, _names(inputs), strict=True)):
            progress.show(done, path.name)
            rows.append(await _answer(engines, path, args.out, name))
        progress.show(len(inputs), "done")
    finally:
        progress.close()


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
    if not row.transcript and not row.error:
        row.error = NO_SPEECH
    await _write(result, out, name)
    return row


async def _write(result: Exchange, out: Path, name: str) -> None:
    await asyncio.to_thread((out / f"{name}.txt").write_text, result.transcript, encoding="utf-8")
    joined = result.reply_audio
    if joined is not None:
        await audio.write(from_array(*joined), out / f"{name}-reply.wav")


def table(
    rows: list[Row], *, plain: bool = True, widths: tuple[int, int, int, int] = (24, 36, 44, 40)
) -> Table:
    """The summary as a ``rich`` table: file, latency, transcript, reply, error (long texts
    cut with "…"). ``plain``: no borders or colour (for logs and pipes)."""
    file_w, heard_w, reply_w, error_w = widths
    grid = Table(
        box=None if plain else box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 2, 0, 0) if plain else (0, 1),
        show_edge=not plain,
        header_style="" if plain else "bold",
    )
    grid.add_column("file", max_width=file_w, no_wrap=True, overflow="ellipsis")
    grid.add_column("latency", justify="right", no_wrap=True)
    grid.add_column("transcript", max_width=heard_w, no_wrap=True, overflow="ellipsis")
    grid.add_column("reply", max_width=reply_w, no_wrap=True, overflow="ellipsis")
    grid.add_column("error", max_width=error_w, no_wrap=True, overflow="ellipsis")
    for row in rows:
        latency = "–" if row.latency is None else f"{row.latency:.2f} s"
        grid.add_row(
            Path(row.file).name,
            latency,
            row.transcript or "–",
            row.reply or "–",
            row.error,
            style=None if plain or not row.error else "red",
        )
    return grid


def _tsv(rows: list[Row]) -> str:
    def clean(text: str) -> str:
        return " ".join(text.split())

    lines = ["file\tlatency_s\ttranscript\treply\terror"]
    for row in rows:
        latency = "" if row.latency is None else f"{row.latency:.3f}"
        fields = [row.file, latency, row.transcript, row.reply, row.error]
        lines.append("\t".join(clean(f) for f in fields))
    return "\n".join(lines) + "\n"
