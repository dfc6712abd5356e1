"""voicekit's logs: one hierarchy (``voicekit.*``), the call id on every record of a call (calls
run by a real uvicorn server, two at once), no key and no raw phone number in any record, and
the JSON lines of ``--log-format json``."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from servers.serving import serving

import voicekit as vk
import voicekit.serve
from voicekit._logging import (
    CallFilter,
    JsonFormatter,
    call_scope,
    current_call_id,
    log_config,
    scrub,
)
from voicekit.events import CallEnded

ROOT = Path(__file__).parent.parent / "voicekit"
log = logging.getLogger("voicekit.test")
CALLER = "+15550001111"
CALLER_HASH = vk.hash_caller(CALLER)


class Capture(logging.Handler):
    """A handler as a server has one: CallFilter, then a formatter; keeps records and lines."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(CallFilter())
        self.setFormatter(formatter)
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@contextlib.contextmanager
def capturing(*formatters: logging.Formatter) -> Iterator[list[Capture]]:
    logger = logging.getLogger("voicekit")
    handlers = [Capture(f) for f in formatters]
    level = logger.level
    logger.setLevel(logging.DEBUG)
    for handler in handlers:
        logger.addHandler(handler)
    try:
        yield handlers
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
        logger.setLevel(level)


# =============================================================================================
# one hierarchy


def logger_names() -> list[tuple[str, int, str]]:
    """Every ``logging.getLogger(...)`` in voicekit's source: (file, line, name or expression)."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "getLogger"
            ):
                arg = node.args[0] if node.args else None
                name = arg.value if isinstance(arg, ast.Constant) else ast.unparse(arg or node)
                found.append((str(path.relative_to(ROOT)), node.lineno, str(name)))
    return found


def test_every_logger_of_voicekit_is_in_the_voicekit_hierarchy():
    names = logger_names()
    assert len(names) >= 10  # the audit sees the loggers (agent, transports, serve, stt, tts…)
    strays = [
        (path, line, name) for path, line, name in names
        if not (name == "voicekit" or name.startswith("voicekit.") or name == "__name__")
    ]
    assert strays == []


def test_voicekit_logs_nothing_through_the_root_logger():
    calls = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "logging"
                and node.func.attr in {"debug", "info", "warning", "error", "exception", "log"}
            ):
                calls.append((str(path.relative_to(ROOT)), node.lineno))
    assert calls == []


# =============================================================================================
# the call id


def test_a_call_scope_names_the_call_in_its_tasks_only():
    async def main() -> list[str | None]:
        seen: list[str | None] = []

        async def child() -> None:
            seen.append(current_call_id())

        with call_scope("CA1"):
            task = asyncio.create_task(child())  # started inside: inherits the call
        other = asyncio.create_task(child())  # started outside: no call
        await asyncio.gather(task, other)
        seen.append(current_call_id())
        return seen

    assert asyncio.run(main()) == ["CA1", None, None]


async def test_every_record_of_a_call_carries_its_call_id():
    """Three calls at once through ``/ws`` of a real server: each call's records (from on_call,
    from a task it starts, from the connection layer when on_call fails or the peer breaks the
    protocol, from on_end) carry that call's id and no other; a record outside a call carries
    ``-``."""
    ended: list[str] = []
    both = asyncio.Event()

    async def on_call(call: Any) -> None:
        log.info("began %s", call.session.call_id)

        async def helper() -> None:
            log.info("a task of %s", call.session.call_id)

        await asyncio.create_task(helper())
        async for item in call.inbound:
            if isinstance(item, CallEnded):
                break
        raise RuntimeError(f"the agent of {call.session.call_id} broke")

    def on_end(session: vk.Session) -> None:
        log.info("ended %s", session.call_id)
        ended.append(session.call_id)
        if len(ended) == 3:
            both.set()

    application = vk.serve.app(on_call, dev=True, on_end=on_end)
    with capturing(logging.Formatter("%(call_id)s|%(message)s")) as (capture,):
        async with (
            serving(application) as host,
            websockets.connect(f"ws://{host}/ws") as a,
            websockets.connect(f"ws://{host}/ws") as b,
            websockets.connect(f"ws://{host}/ws") as c,
        ):
            await a.send(json.dumps({"type": "start", "call_id": "call-A", "caller": CALLER}))
            await b.send(json.dumps({"type": "start", "call_id": "call-B"}))
            await c.send(json.dumps({"type": "start", "call_id": "call-C"}))
            await a.send(json.dumps({"type": "stop"}))
            await b.send(json.dumps({"type": "stop"}))
            await c.send(json.dumps({"type": "start"}))  # a second start: a protocol error
            await asyncio.wait_for(both.wait(), 10)
        log.info("no call now")
    by_call: dict[str, list[str]] = {}
    for line in capture.lines:
        call_id, _, message = line.partition("|")
        by_call.setdefault(call_id, []).append(message)
        for other in ("call-A", "call-B", "call-C"):
            if other in message:
                assert call_id == other, line  # a line about a call is tagged with that call
    assert "ws call call-C: ws: a second 'start'" in by_call["call-C"]  # the receive side's
    for call_id in ("call-A", "call-B", "call-C"):
        messages = by_call[call_id]
        assert f"began {call_id}" in messages and f"a task of {call_id}" in messages
        assert f"ended {call_id}" in messages
        assert any(m.startswith(f"call {call_id} failed") for m in messages)
    assert "no call now" in by_call["-"]


# =============================================================================================
# nothing secret


async def test_no_key_and_no_raw_number_in_any_record():
    """A call logs records that try to leak: the caller's and callee's numbers (as the carrier
    gave them, and spelled otherwise), the server's token, an Authorization header, a URL with a
    password and a key, an LLM key in an exception, a number in an extra field. Every text and
    JSON line has none of them; the caller appears as the hash of Session.caller_hash."""
    done = asyncio.Event()
    token = "ws-secret-token-789"

    async def on_call(call: Any) -> None:
        session = call.session
        log.warning("caller %s called %s (%r)", session.caller, session.callee, call.started)
        log.warning("the caller again: +1 (555) 000-1111, token %s", token)
        log.info("headers: {'Authorization': 'Bearer abcdefghijklmnop'} "
                 "url https://me:hunter2hunter2@gw.example/v1?api_key=zzz123456")
        try:
            raise ValueError("the LLM said: bad key sk-abcdefghijklmnopqrstu, call "
                             "+44 20 7946 0958")
        except ValueError:
            log.exception("the reply failed")
        log.info("structured", extra={"detail": {"from": session.caller, "key": token}})
        async for item in call.inbound:
            if isinstance(item, CallEnded):
                break

    application = vk.serve.app(on_call, ws_token=token, on_end=lambda s: done.set(),
                               carrier=None)
    with capturing(logging.Formatter("%(message)s"), JsonFormatter()) as handlers:
        async with serving(application) as host, websockets.connect(f"ws://{host}/ws") as ws:
            await ws.send(json.dumps({"type": "start", "call_id": "leaky", "caller": CALLER,
                                      "callee": "5550002222", "token": token}))
            await ws.send(json.dumps({"type": "stop"}))
            await asyncio.wait_for(done.wait(), 10)
    text, as_json = handlers
    lines = text.lines + as_json.lines
    assert len(text.lines) >= 5
    everything = "\n".join(lines)
    for leak in (
        "15550001111", "555) 000-1111", "5550002222", token, "abcdefghijklmnop", "hunter2",
        "zzz123456", "sk-abcdefghijklmnopqrstu", "7946 0958",
    ):
        assert leak not in everything, leak
    assert f"<sha256:{CALLER_HASH}>" in text.lines[0]
    assert "Bearer ***" in everything and "https://***@gw.example" in everything
    records = [json.loads(line) for line in as_json.lines]
    assert {r["call_id"] for r in records if r["logger"] == "voicekit.test"} == {"leaky"}
    (failed,) = [r for r in records if r["message"] == "the reply failed"]
    assert "ValueError" in failed["exception"] and "sk-***" in failed["exception"]
    (structured,) = [r for r in records if r["message"] == "structured"]
    assert structured["detail"] == {"from": f"<sha256:{CALLER_HASH}>", "key": "***"}


def test_scrub_masks_numbers_and_credentials_but_not_ordinary_text():
    assert scrub("sent 1600 bytes at 8000 Hz in 20 ms") == "sent 1600 bytes at 8000 Hz in 20 ms"
    # E.164 as carriers post it (form-encoded) and as people write it
    assert scrub("From=%2B15550001111&To=+1 (555) 000-1111") == (
        f"From=<sha256:{CALLER_HASH}>&To=<sha256:{CALLER_HASH}>"
    )
    # the carrier's exact spelling of this call's numbers, with or without a plus
    assert scrub("client:alice rang 5550002222", ("client:alice", "5550002222")) == (
        f"<sha256:{vk.hash_caller('client:alice')}> rang <sha256:{vk.hash_caller('5550002222')}>"
    )


# =============================================================================================
# JSON lines


def test_json_lines_name_the_call_and_keep_extra_fields():
    formatter = JsonFormatter()
    record = logging.LogRecord("voicekit.serve", logging.INFO, __file__, 1, "turn: %s", ("ok",),
                               None)
    record.turn = {"voice_to_voice": 0.81, "tokens": [12, 3]}
    with call_scope("CA9"):
        CallFilter().filter(record)
    line = json.loads(formatter.format(record))
    assert line["call_id"] == "CA9" and line["message"] == "turn: ok"
    assert line["level"] == "INFO" and line["logger"] == "voicekit.serve"
    assert line["turn"] == {"voice_to_voice": 0.81, "tokens": [12, 3]}
    assert line["time"].endswith("Z") and "T" in line["time"]


def test_log_config_rejects_an_unknown_format():
    with pytest.raises(ValueError, match="log_format must be one of text, json"):
        log_config("yaml")


SCRIPT = """
import logging, logging.config, json
from uvicorn.config import LOGGING_CONFIG
from voicekit._logging import call_scope, log_config
logging.config.dictConfig(log_config("json", base=LOGGING_CONFIG))
with call_scope("CA7", "+15550001111"):
    logging.getLogger("voicekit.serve").info("turn for %s", "+15550001111")
logging.getLogger("uvicorn.error").info("Application startup complete.")
logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET",
                                         "/x?token=abc123secret", "1.1", 200)
logging.getLogger("some.library").warning("a library's warning")
"""


def test_the_server_configuration_writes_every_record_as_a_json_line():
    """uvicorn's records and other libraries' too: one format for the whole process."""
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         check=True, timeout=60)
    records = [json.loads(line) for line in out.stderr.splitlines()]
    assert [(r["logger"], r["call_id"]) for r in records] == [
        ("voicekit.serve", "CA7"), ("uvicorn.error", None), ("uvicorn.access", None),
        ("some.library", None),
    ]
    assert records[0]["message"] == f"turn for <sha256:{CALLER_HASH}>"
    assert records[2]["message"] == '127.0.0.1:5 - "GET /x?token=*** HTTP/1.1" 200'
    assert out.stdout == ""
