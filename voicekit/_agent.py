"""The conversation loop: user turns in, spoken replies out, a Session value after every turn.

:func:`agent` is a stage. It reads a stream of user turns — :class:`~voicekit.TurnStarted` and
:class:`~voicekit.TurnEnded`, as :mod:`voicekit.turns` makes them from audio, or written by hand
— and for every finished turn it asks the LLM for a reply, runs the tools the LLM calls, splits
the reply into sentences and speaks them through a TTS stage. It yields the reply audio
(:class:`~voicekit.AudioChunk`) interleaved with events that say what happened, and after every
turn a :class:`~voicekit.SessionUpdated` carrying the new :class:`~voicekit.Session`::

    import voicekit as vk
    from voicekit import agent
    from voicekit.llm import ollama

    bot = agent(llm=ollama(), tts=vk.tts.piper(), session=vk.Session(), system="Be brief.")
    async for item in turns | bot:
        ...

:func:`voice_agent` builds the whole pipeline from audio: ``vad | stt | turns | agent``.

What comes out, per reply
-------------------------
``ReplyStarted(turn)``; then the reply's audio chunks, with the LLM's and the TTS's events in
their place in the stream (``ToolCall``, ``ToolResult``, ``Usage``, ``Finish``, ``Switched``,
``Sentence`` when the TTS passes text on) and a ``Mark`` after each sentence's audio; finally
``SessionUpdated(session)``. Items of the input other than audio (turn markers, speech
markers, transcripts, call events) are passed on in their place; the caller's audio is not (the
only audio out is the agent's own voice).

Barge-in
--------
A cough, a laugh or an "uh-huh" over a reply is not an interruption, so the agent decides with a
strategy, ``interruption=`` (an :class:`~voicekit.Interruption` value). By default a
``SpeechStarted`` or ``TurnStarted`` during a reply *pauses* it: nothing more of it is yielded (the
reply's output waits; a carrier plays on what it has already buffered). Then

* **cut**: once the user's words — a ``Transcript``, a ``TurnPending`` or the ``TurnEnded`` — hold
  one word that is not a backchannel ("stop", "wait", "no"), or the speech has lasted ``min_speech``
  seconds of stream time when that is set;
* **resume**, from exactly where it was, when the speech is over with no such words: the
  recogniser's answer to that speech came with only backchannels or nothing (a final transcript
  ``""`` or ``[coughs]``, a ``NoWords``), the turn ended (``TurnEnded`` with no such words), the
  inbound stream ended, or no answer came in time: ``max_pause`` seconds of stream time after the
  ``SpeechStopped`` once the stream has shown a recogniser that answers every utterance (a
  ``NoWords`` or a final transcript seen; voicekit's STT stages do), ``resume_after`` before.
  The audio resumes on the outbound clock at the later of where it stopped and the inbound time.
  That user turn is not answered and not recorded in the Session (its items are passed on as
  always): the caller was listening, and an "uh-huh" in the history would only sit between the
  question and the answer.
  Since nothing was yielded during the pause, what was heard is exactly what was heard when the user
  began (with an acknowledging carrier, its marks decide as always).

With ``Interruption.immediate()`` (``Interruption(min_words=0)``) the old rule holds: a
``TurnStarted`` (or a ``TurnEnded``) during a reply cuts it at once, whatever it turns out to be. A
cut cancels the reply: the LLM request (also while it waits for its first byte), the TTS call and a
running tool are cancelled, and no further audio of that reply is yielded. Then come the item that
decided (``TurnStarted``/``TurnEnded``; a transcript comes after), ``Interrupted(heard, t)`` (``t``:
when the user began to speak) and ``SessionUpdated``; the reply to the next ``TurnEnded`` starts
from that Session. A tool call of a cancelled generation never runs. (An ``async`` tool is cancelled
with the reply; a plain function runs in a daemon thread of its own, which cannot be stopped: it
runs to its end and its result is dropped, but it never delays the end of ``asyncio.run`` or of the
process — a side effect it had not finished by then is lost, so a tool that must finish should be
``async`` or safe to repeat.)

History: what was heard
-----------------------
The Session after a turn holds the user's text and what the assistant actually said:

* a sentence counts as said once *all* of its audio has been yielded downstream. A sentence
  cut off part-way is left out entirely — the model would rather repeat a few words than take
  for heard a sentence the user did not hear to its end;
* an interrupted reply is recorded as the sentences said so far with ``interrupted=True``
  (sent to the model with an "[interrupted by the user]" marker), or as an empty interrupted
  message if the user heard only part of the first sentence; a reply cut off before any of its
  audio leaves no assistant message at all;
* the end of a reply is recorded only after the last sentence's audio was yielded (and, with
  an acknowledging transport, only once its last mark came back);
* tool calls are recorded with the text said before them, then each result, in order; a call
  cancelled by a barge-in is answered with a "cancelled" result, so the history stays valid.

"Yielded downstream" is when the agent hands a chunk on. Put the stage that plays the audio
(or paces it, :func:`voicekit.audio.paced`) right after the agent, so that this is when the
user hears it — or use a transport that acknowledges marks (below).

The outbound clock
------------------
The agent's audio has one timeline for the whole call: every chunk it yields is re-stamped
(a TTS counts each call's audio from 0). A reply's audio runs on without gaps, and each reply
starts at the later of the end of the agent's audio so far and the latest stream time seen on
the inbound stream (the ``TurnEnded`` that started it, or the caller's audio when it passes
through). So ``t`` never goes back, no reply overlaps the one before, and a reply is never
placed before the turn it answers. :func:`voicekit.audio.paced` plays that clock in real time;
when the agent goes quiet between replies (the caller speaks, the LLM thinks) it starts its
schedule again from the next reply's first chunk instead of releasing the late audio in a
burst. ``agent | audio.paced()`` therefore plays every reply in real time, and a barge-in
keeps only the sentences played before it. Both halves are needed: a reply's first chunk
always comes after its stamp (the LLM and the TTS take time), so a player that only caught up
would rush through the start of every reply; and a reply that follows a barge-in at once has no
idle gap to start again on, so only a clock that runs on keeps it from being rushed.

The transport contract: marks, acknowledgements, hang-ups
---------------------------------------------------------
A phone carrier buffers the audio it is sent, so "handed on" is not "heard". Data still flows
one way — the carrier's acknowledgements come back on the *inbound* stream, no callbacks:

* **What the agent yields.** A :class:`~voicekit.Mark` right after the last audio chunk of each
  sentence it speaks (the greeting's too; not the spoken error message or the filler), named
  ``"<reply>-<sentence>"`` (``"1-1"``, ``"1-2"``, ``"2-1"``…: unique within a run of the agent),
  with the sentence as ``text``. A transport sends it to the carrier (Twilio ``mark``, Plivo
  ``checkpoint``) after that audio. On a barge-in it yields :class:`~voicekit.Interrupted` at
  once — before the cancelled reply has finished closing — and the transport clears the
  carrier's buffer on it (Twilio ``clear``).
* **What the agent reads.** :class:`~voicekit.CallStarted` (the first inbound item): with
  ``acknowledges=True`` a sentence counts as heard only when a :class:`~voicekit.Played` with
  its mark's name comes back inbound; without it (or without a ``CallStarted``) the rule above
  stays: heard once its audio is yielded. Marks of a greeting already yielded when the
  ``CallStarted`` arrives wait for their ``Played`` too. A ``Played`` for a reply that was cut
  off, or for no mark of the reply in flight, is ignored — so a carrier may echo the marks still
  pending when it is cleared (Twilio does) or drop them (others do): either way only what was
  acknowledged before the interruption counts. A reply whose audio is all out but whose last
  marks are pending is still in flight: its ``SessionUpdated`` comes when they are all back; a
  ``TurnStarted``/``TurnEnded`` meanwhile is a barge-in (the caller spoke over audio still
  queued), and an inbound stream that ends records the reply as heard so far. A tool round's
  text is sent to the LLM as it was spoken, and kept in the Session only as far as it was
  heard. :class:`~voicekit.CallEnded` ends the agent at once: the reply in flight and any
  prepared one are cancelled, and it yields the ``CallEnded`` and a final ``SessionUpdated``
  with what was heard, then stops (it reads nothing more).

Call control: hang-up, transfer, keys
-------------------------------------
A tool acts on the call by returning a :class:`~voicekit.phone.CallAction` (or a bare
:class:`~voicekit.HangUp`, :class:`~voicekit.TransferCall`, :class:`~voicekit.SendDtmf`; the
ready-made tools are :func:`voicekit.phone.end_call`, :func:`~voicekit.phone.transfer_call` and
:func:`~voicekit.phone.send_dtmf`). A ``SendDtmf`` is yielded at once, after the tool's
``ToolResult``. A ``HangUp`` or ``TransferCall`` ends the reply's business: the reply goes on —
the action's ``say`` line spoken by the agent (no further LLM round), or else the LLM's next
round, its goodbye — and the event is yielded once the reply is recorded, right after its
``SessionUpdated``: after its last audio and ``Mark``, and with an acknowledging transport once
their ``Played`` came back (the transport acts once everything before it has played; the last
Session, with the record below, reaches it first). If the caller cuts the goodbye short, the
``Interrupted`` and the ``SessionUpdated`` come first and the event right after them: the call
still ends, after what was heard. From then on the call is over for the agent: it starts no
reply, cuts nothing, and passes the inbound items on until the stream ends. The Session records
it in ``memory["call_end"]``: ``{"action": "hang_up" | "transfer", "by": <tool name or
"idle">, "line": <what was heard of the reply>, "reason" | "to": …, "interrupted": bool}``; a
line the agent said itself is an assistant message with ``"kind": "call_line"``
(``"idle_reprompt"``, ``"idle_goodbye"`` for the idle policy's), a voicekit-only key the LLM
adapters leave out.

Idle callers (``idle=``): see :func:`voicekit.phone.idle`. Its timer starts when a reply has
been recorded — at its last ``Played`` with an acknowledging transport, else at the end of its
audio on the outbound clock — and it fires when the inbound stream time passes that plus
``after`` with no reply or tool running and the caller neither speaking (``SpeechStarted`` to
``SpeechStopped``) nor in a turn (``TurnStarted`` to ``TurnEnded``); a caller's speech, turn or
key press moves its start to that moment and resets the count of reprompts.

Preemptive replies
------------------
A turn detector knows the user's words a while before it declares the turn over: it waits
(0.6 s by default) to see whether they go on. :func:`voicekit.turns.turns` says so with a
:class:`~voicekit.TurnPending` (passed on in its place). With ``preemptive=True`` (the default)
the agent then starts the reply to ``session + user(text)`` at once, *speculatively*: the LLM
and the TTS run, but every output is held — nothing is yielded, nothing is heard, nothing is
recorded — and tools are never run: when the LLM asks for one, the reply waits there.

* A ``TurnEnded`` with the same words (whitespace aside) *promotes* it: ``ReplyStarted``, then
  the held output, then the rest live, exactly as if the reply had started at the
  ``TurnEnded`` (the user message holds the ``TurnEnded``'s text; an LLM error that happened
  while it was held is reported, and the error message spoken, only now).
* Anything that says the user went on — ``SpeechStarted``, ``TurnStarted``, a
  ``TurnPending`` or ``TurnEnded`` with other words — cancels it silently: its LLM request and
  TTS call are closed, and a ``TurnEnded`` with other words gets a fresh reply.
* A speculation starts only when no reply is in flight, and is promoted only if the Session is
  still the one it started from.

The cost is LLM (and TTS) work thrown away when the user resumes after a pause; the gain is
the LLM's time to first token, hidden in the turn detector's wait. ``preemptive=False`` ignores
``TurnPending``.

Errors
------
An error of the LLM is yielded as :class:`~voicekit.ReplyFailed` and logged. If it happened
before any audio of the reply was yielded (partial tokens count for nothing: only audio does),
``llm_error_message`` — when given — is spoken through the same TTS path; it is not recorded
in the history. A TTS error is reported the same way, without the spoken fallback. An error
caused by a barge-in is no error: it is never reported and never spoken about.

A turn never ends in silence without a word. A reply that gave no audio at all (the LLM's
text was empty, blank or had nothing speakable) is a ``ReplyFailed("llm", ...)`` with the
fallback spoken; so is a model that still calls a tool when it must answer (after
``max_tool_rounds`` rounds; those calls get :data:`OVER_LIMIT_RESULT` and are not run) — then
the fallback is spoken even if something was said before, since the turn got no answer. An
empty last round after a spoken tool round ("I set your alarm." + a call) is no failure. A tool
call when the agent has no tools is answered with :data:`NOT_OFFERED_RESULT` and the LLM is
asked again (at most ``max_tool_rounds`` times).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from ._agent_tools import CallAction, Tool, run_tool_action, tool, tools_of
from ._compute import settle
from ._errors import ConfigError, ProviderResponseError, ProviderTimeout, StageError
from ._http import new_client
from ._interruption import Interruption
from ._observe import observed
from ._secrets import redact
from ._tracing import resolve_tracer
from .events import (
    AudioChunk,
    CallEnded,
    CallStarted,
    Continuity,
    Dtmf,
    HangUp,
    Interrupted,
    Mark,
    NoWords,
    Played,
    ReplyFailed,
    ReplyStarted,
    SendDtmf,
    Sentence,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    Token,
    ToolCall,
    ToolResult,
    Transcript,
    TurnEnded,
    TurnPending,
    TurnStarted,
)
from .llm import chat
from .llm._responses_ws import ResponsesState, Restarted
from .llm._signature import accepted_context, call_llm
from .llm.endpoint import Endpoint
from .ops import Flow, Stage, tap
from .phone._digits import Digits
from .phone._idle import Idle
from .session import HistoryOption, HistoryWindow, Session
from .text import sentences, split_sentences
from .turns import recommended_stop_strategies
from .turns import turns as make_turns
from .vad import vad as make_vad

__all__ = [
    "CANCELLED_RESULT",
    "LLM",
    "NOT_OFFERED_RESULT",
    "OVER_LIMIT_RESULT",
    "Tool",
    "agent",
    "tool",
    "voice_agent",
]

_log = logging.getLogger("voicekit.agent")

LLM = Endpoint | Callable[..., Any]
"""What the agent's ``llm`` can be: an :class:`~voicekit.llm.Endpoint` (spoken to with
:func:`voicekit.llm.chat`) or any async-generator function of the messages (see
:mod:`voicekit.llm._signature` for the context values it may declare)."""

CANCELLED_RESULT = json.dumps({"error": "cancelled: the user interrupted before it finished"})
"""The tool result recorded for a call that a barge-in cancelled."""

OVER_LIMIT_RESULT = json.dumps({"error": "not run: too many tool rounds in one turn"})
"""The tool result recorded for a call made after ``max_tool_rounds`` rounds."""

NOT_OFFERED_RESULT = json.dumps({"error": "no such tool: tools were not offered"})
"""The tool result recorded for a call made when the agent has no tools."""


_DEFAULT_INTERRUPTION = Interruption()


@dataclass(frozen=True, slots=True)
class _Config:
    llm: Callable[..., Any]
    tts: Stage[Any, Any]
    session: Session
    system: str | None
    tools: tuple[Tool, ...]
    first_message: str | None
    llm_error_message: str | None
    max_tool_rounds: int
    client: httpx.AsyncClient | None
    wants_client: bool
    preemptive: bool = False
    first_audio_deadline: float | None = None
    llm_deadline: float | None = None
    filler: str | None = None
    filler_after: float = 1.5
    history: HistoryWindow | None = None  # what of the Session is sent to the LLM
    interruption: Interruption = _DEFAULT_INTERRUPTION
    idle: Idle | None = None  # the idle-caller policy (voicekit.phone.idle)


class _Heard:
    """Private marker put after each sentence into the TTS: it comes out after that audio.

    ``number`` counts the sentences of a reply, so that a marker a TTS passes on twice (two
    :func:`~voicekit.ops.parallel` branches that both pass it through) counts once.
    """

    __slots__ = ("number", "text")

    def __init__(self, text: str, number: int) -> None:
        self.text = text
        self.number = number


class _Fill:
    """Private wrapper of an item of the filler: heard, but not the reply's own audio."""

    __slots__ = ("item",)

    def __init__(self, item: Any) -> None:
        self.item = item


def _join(parts: Sequence[str]) -> str:
    return " ".join(p for p in parts if p)


def _call_json(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


class _Reply:
    """The state of one reply, shared by its generator and the loop that yields its output.

    ``base`` is the Session so far (the user's turn, finished tool rounds); ``spoken`` the
    sentences whose audio was all yielded downstream, each with its mark's name and its tool
    round; ``acked`` the names of those that count as heard (at once, or when the transport's
    :class:`~voicekit.Played` came back); ``spoke`` whether any audio of the current round was
    yielded; ``audio`` whether any audio of the whole reply was.
    """

    __slots__ = (
        "acked",
        "acted",
        "action",
        "audio",
        "base",
        "begun",
        "by",
        "cancelled",
        "committed",
        "ended",
        "heard_upto",
        "kind",
        "last_ack",
        "live",
        "llm_error",
        "number",
        "pending",
        "recording",
        "round",
        "sentences",
        "spoke",
        "spoken",
        "started",
        "text",
        "tool",
    )

    def __init__(self, base: Session) -> None:
        self.base = base
        self.spoken: list[tuple[str, str, int]] = []  # (mark name, sentence, round)
        self.acked: set[str] = set()
        self.round = 0  # tool rounds finished so far
        self.committed: list[int] = []  # where each finished round's message is in ``base``
        self.number: int | None = None  # the reply's number in the call, for mark names
        self.ended = False  # the reply's generator has given its last output
        self.heard_upto = 0  # the number of the last _Heard marker counted
        self.spoke = False
        self.audio = False
        self.recording = True  # False while the error message is spoken
        self.cancelled = False
        self.llm_error: BaseException | None = None
        self.pending: list[ToolCall] = []
        self.text: list[str] = []  # the LLM's text so far, all rounds
        self.tool: str | None = None  # the tool running now
        self.sentences: list[str] = []  # the sentences given to the TTS so far
        # when the reply began for the caller (its ReplyStarted), on the loop's clock
        self.started: float | None = None
        self.begun = asyncio.Event()
        # clear while the reply is speculative, and after its promotion until its held output
        # is handled: what depends on what was heard (tool rounds, errors, the end) waits
        self.live = asyncio.Event()
        self.live.set()
        # call control (voicekit.phone): a hang-up or transfer a tool asked for, and who asked;
        # yielded after the reply's audio and recorded in session.memory["call_end"]
        self.action: CallAction | None = None
        self.acted = False  # its event was yielded
        self.by = ""
        self.kind: str | None = None  # the last message is not the LLM's words: what it is
        self.last_ack: float | None = None  # stream time of the last Played of this reply

    def begin(self) -> None:
        """The reply starts for the caller now: its deadlines count from here."""
        if self.started is None:
            self.started = asyncio.get_running_loop().time()
            self.begun.set()

    def note(self, item: Any) -> None:
        """Note a sentence on its way to the TTS (for the error of a missed deadline)."""
        if isinstance(item, Sentence):
            self.sentences.append(item.text)

    def heard(self, round: int) -> list[str]:
        """The sentences of tool round ``round`` that were heard."""
        return [text for name, text, r in self.spoken if r == round and name in self.acked]

    @property
    def said(self) -> list[str]:
        """Every sentence of the reply heard so far, all rounds."""
        return [text for name, text, _ in self.spoken if name in self.acked]

    @property
    def unheard(self) -> list[str]:
        """The names of the marks yielded and not acknowledged yet."""
        return [name for name, _, _ in self.spoken if name not in self.acked]

    def ack(self, name: str) -> None:
        """The transport played the audio up to mark ``name`` (ignored if not this reply's)."""
        if any(name == spoken for spoken, _, _ in self.spoken):
            self.acked.add(name)

    def commit_calls(self, calls: Sequence[ToolCall]) -> None:
        # the LLM is told what was sent out; finish() keeps only what was heard of it
        text = _join([t for _, t, r in self.spoken if r == self.round]) or None
        self.committed.append(len(self.base.messages))
        self.base = self.base.add_assistant(text, tool_calls=[_call_json(c) for c in calls])
        self.round += 1
        self.heard_upto = 0  # the next round's markers count from 1 again
        self.spoke = False
        self.pending = list(calls)

    def add_result(self, call: ToolCall, content: str) -> None:
        self.base = self.base.add_tool_result(call.id, content, name=call.name)
        self.pending.remove(call)

    def finish(self, *, interrupted: bool) -> Session:
        session = self.base
        if self.committed and self.unheard:  # a round's text was sent out but not all heard
            messages = list(session.messages)
            for round, index in enumerate(self.committed):
                message = messages[index]
                heard = _join(self.heard(round)) or None
                if message.get("content") != heard:
                    messages[index] = {**message, "content": heard}
            session = session.with_messages(messages)
        for call in self.pending:
            session = session.add_tool_result(call.id, CANCELLED_RESULT, name=call.name)
        text = _join(self.heard(self.round))
        if self.kind is not None and (text or (interrupted and self.spoke)):
            said: dict[str, Any] = {"role": "assistant", "content": text, "kind": self.kind}
            session = session.add({**said, "interrupted": True} if interrupted else said)
        elif interrupted and (text or self.spoke):
            session = session.add_assistant(text, interrupted=True)
        elif text:
            session = session.add_assistant(text)
        if self.action is not None and self.action.ends_call:
            session = session.remember(call_end=_call_end(self, interrupted))
        return session


def _call_end(reply: _Reply, interrupted: bool) -> dict[str, Any]:
    """What the Session keeps of a hang-up or transfer: what, by whom, the line heard."""
    assert reply.action is not None
    event = reply.action.event
    record: dict[str, Any] = {"by": reply.by, "line": _join(reply.said)}
    if isinstance(event, HangUp):
        record.update(action="hang_up", reason=event.reason)
    else:
        record.update(action="transfer", to=getattr(event, "to", ""))
    record["interrupted"] = interrupted
    return record


def _due_action(reply: _Reply) -> Any:
    """The hang-up or transfer of ``reply`` to yield now, once (None if there is none)."""
    action = reply.action
    if action is None or not action.ends_call or reply.acted:
        return None
    reply.acted = True
    return action.event


# ---------------------------------------------------------------------------------------------
# One reply


async def _mark_heard(source: AsyncIterable[Any], /) -> AsyncIterator[Any]:
    number = 0
    async for item in source:
        yield item
        if isinstance(item, Sentence):
            number += 1
            yield _Heard(item.text, number)


_SPEAKABLE: Stage[Any, Any] = sentences() | Stage.of(_mark_heard, "mark_heard")


async def _llm_events(
    cfg: _Config, reply: _Reply, tools: list[dict[str, Any]] | None, client: Any
) -> AsyncIterator[Any]:
    """The LLM's stream for the Session so far, plain strings as Tokens; notes its error."""
    session = reply.base
    context = {
        "tools": tools,
        "session": session,
        "client": client,
        "system": cfg.system,
        "call_id": session.call_id,
        "caller": session.caller,
        "callee": session.callee,
    }
    try:
        stream = call_llm(cfg.llm, session.messages_json(cfg.history), context=context)
    except Exception as exc:
        reply.llm_error = exc
        raise
    replay = _Replay()
    loop = asyncio.get_running_loop()
    ends = None if cfg.llm_deadline is None else loop.time() + cfg.llm_deadline
    try:
        while True:
            limit = asyncio.timeout_at(ends)
            try:
                async with limit:
                    event = await anext(stream)
            except StopAsyncIteration:
                return
            except Exception as exc:
                if isinstance(exc, TimeoutError) and limit.expired():
                    exc = _late_llm(cfg, reply)
                reply.llm_error = exc
                raise exc from None
            if isinstance(event, str):
                event = Token(event)
            elif isinstance(event, ResponsesState | Continuity):
                reply.base = event.apply(reply.base)
            for out in replay.filter(event):
                if isinstance(out, Token):
                    reply.text.append(out.text)
                yield out
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


class _Replay:
    """Reconciles an LLM stream that starts its reply over (a :class:`Restarted` event).

    What was yielded before the restart is already on its way to the caller's ears and cannot be
    taken back. So the restarted reply's text is skipped for as long as it repeats what was
    already yielded, and only what goes beyond it is passed on; a tool call identical to one
    already passed on is dropped, so it cannot run twice. If the new text diverges from the old,
    the rest of the new text is passed on from the point where they differ.
    """

    __slots__ = ("calls", "said", "skipped", "skipping")

    def __init__(self) -> None:
        self.said: list[str] = []  # text yielded so far, across restarts
        self.calls: set[tuple[str, str]] = set()
        self.skipping = False
        self.skipped = 0  # characters of ``said`` the restarted reply has repeated so far

    def filter(self, event: Any) -> list[Any]:
        if isinstance(event, Restarted):
            self.skipping = bool(self.said)
            self.skipped = 0
            _log.info("the LLM restarted its reply (%s); skipping what was said", event.reason)
            return [event]
        if isinstance(event, ToolCall):
            key = (event.name, event.arguments)
            if key in self.calls:
                return []
            self.calls.add(key)
            return [event]
        if not isinstance(event, Token):
            return [event]
        if self.skipping:
            said = "".join(self.said)
            text = event.text
            common = 0
            while (
                common < len(text)
                and self.skipped + common < len(said)
                and text[common] == said[self.skipped + common]
            ):
                common += 1
            self.skipped += common
            rest = text[common:]
            if self.skipped < len(said) and not rest:
                return []  # still repeating what was said
            self.skipping = False  # caught up with (or diverged from) what was said
            if not rest:
                return []
            event = Token(rest)
        self.said.append(event.text)
        return [event]


def _late_llm(cfg: _Config, reply: _Reply) -> ProviderTimeout:
    """The error for an LLM request that outlived ``llm_deadline``."""
    text = "".join(reply.text)
    got = f"{len(text)} characters of text so far" if text.strip() else "no text at all"
    return ProviderTimeout(
        f"the LLM's reply was not finished within {cfg.llm_deadline:g} s (llm_deadline): {got}",
        provider="llm",
    )


def _original(exc: BaseException) -> BaseException:
    return exc.original if isinstance(exc, StageError) else exc


async def _fail(
    cfg: _Config,
    reply: _Reply,
    exc: BaseException,
    *,
    unanswered: bool = False,
    source: str | None = None,
) -> AsyncIterator[Any]:
    """Report a failed reply; speak the error message if nothing was heard of it yet (or, with
    ``unanswered``, if the turn got no answer although something was said before it failed).
    ``source`` names what failed when it was not the LLM's error (a missed deadline)."""
    await reply.live.wait()  # a speculative reply's failure is news only once it is promoted
    from_llm = reply.llm_error is not None
    error = reply.llm_error if reply.llm_error is not None else _original(exc)
    speak = bool(from_llm and cfg.llm_error_message and (unanswered or not reply.audio))
    where = source or ("llm" if from_llm else "tts")
    text = redact(f"{type(error).__name__}: {error}")
    _log.warning("reply failed (%s): %s", where, text)
    yield ReplyFailed(where, text, speak, error)
    if speak:
        reply.recording = False
        try:
            async with (Flow([Sentence(str(cfg.llm_error_message))]) | cfg.tts).open() as items:
                async for item in items:
                    yield item
        except Exception as tts_exc:
            if reply.cancelled:
                raise
            tts_error = _original(tts_exc)
            text = redact(f"{type(tts_error).__name__}: {tts_error}")
            _log.warning("the error message could not be spoken: %s", text)
            yield ReplyFailed("tts", text, False, tts_error)


async def _answer(cfg: _Config, reply: _Reply, client: Any) -> AsyncIterator[Any]:
    """Reply to the user turn at the end of ``reply.base``: LLM, tool rounds, speech."""
    by_name = {t.name: t for t in cfg.tools}
    specs = [t.spec for t in cfg.tools] or None
    rounds = 0
    while True:
        offer = specs if rounds < cfg.max_tool_rounds else None
        calls: list[ToolCall] = []
        try:
            flow = (
                Flow(_llm_events(cfg, reply, offer, client))
                | _SPEAKABLE
                | tap(reply.note, name="note")
                | cfg.tts
            )
            async with flow.open() as items:
                async for item in items:
                    if isinstance(item, ToolCall):
                        if any(item is call for call in calls):
                            continue  # the same call passed on twice by the TTS
                        calls.append(item)
                    yield item
        except Exception as exc:
            if reply.cancelled:
                raise
            async for item in _fail(cfg, reply, exc):
                yield item
            break
        if not calls:
            await reply.live.wait()
            if not reply.audio:  # the turn gets no answer at all: a failure to hear about
                reply.llm_error = _empty(reply)
                async for item in _fail(cfg, reply, reply.llm_error):
                    yield item
            break
        await reply.live.wait()  # never run a tool for a turn that has not ended
        reply.commit_calls(calls)
        if offer is None and specs is not None:
            for call in calls:
                reply.add_result(call, OVER_LIMIT_RESULT)
                yield ToolResult(call.id, call.name, OVER_LIMIT_RESULT)
            reply.llm_error = _looped(rounds + 1)
            async for item in _fail(cfg, reply, reply.llm_error, unanswered=True):
                yield item
            break
        for call in calls:
            action = None
            if specs is None:
                content = NOT_OFFERED_RESULT
            else:
                reply.tool = call.name
                try:
                    content, _, action = await run_tool_action(by_name, call)
                finally:
                    reply.tool = None
            reply.add_result(call, content)
            yield ToolResult(call.id, call.name, content)
            # call control (voicekit.phone): keys are pressed at once; a hang-up or transfer
            # waits for the end of the reply (the loop yields it after the last audio)
            if action is not None and isinstance(action.event, SendDtmf):
                yield action.event
            elif action is not None and reply.action is None:
                reply.action, reply.by = action, call.name
        rounds += 1
        if reply.action is not None and reply.action.say is not None:
            # the tool's own line ends the reply: the LLM is not asked again
            reply.kind = "call_line"
            async for item in _greet(cfg, reply, reply.action.say, last=False):
                yield item
            break
        if specs is None and rounds > cfg.max_tool_rounds:
            reply.llm_error = _looped(rounds, offered=False)
            async for item in _fail(cfg, reply, reply.llm_error, unanswered=True):
                yield item
            break
    await reply.live.wait()
    yield SessionUpdated(reply.finish(interrupted=False))


async def _watched(cfg: _Config, reply: _Reply, inner: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """``inner`` (a reply), abandoned if it gives no audio within ``first_audio_deadline`` of
    its start; the filler spoken once if no text has come by ``filler_after``."""
    loop = asyncio.get_running_loop()
    deadline = cfg.first_audio_deadline
    filled = cfg.filler is None
    produced = False  # whether the reply has given audio
    pull: asyncio.Future[Any] | None = None
    try:
        while True:
            if pull is None:
                pull = asyncio.ensure_future(anext(inner))
            if produced or (deadline is None and filled):
                item = await pull  # nothing more to watch
                pull = None
                yield item
                continue
            begun = None
            timeout = None
            if reply.started is None:  # a speculation: its time has not started yet
                begun = asyncio.ensure_future(reply.begun.wait())
            else:
                ends = [] if deadline is None else [reply.started + deadline]
                if not filled:
                    ends.append(reply.started + cfg.filler_after)
                timeout = max(0.0, min(ends) - loop.time())
            waiting = {pull} if begun is None else {pull, begun}
            try:
                await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                await settle(begun)
            if pull.done():
                done, pull = pull, None
                item = done.result()  # StopAsyncIteration ends this generator too
                if isinstance(item, AudioChunk):
                    produced = True
                yield item
                continue
            if reply.started is None:
                continue
            now = loop.time()
            if deadline is not None and now >= reply.started + deadline:
                error, where = _dead_air(deadline, reply)  # before closing: what it waits on
                await settle(pull)
                pull = None
                aclose = getattr(inner, "aclose", None)
                if aclose is not None:
                    await aclose()
                reply.llm_error = error
                _log.info("reply abandoned: %s", error)
                async for item in _fail(cfg, reply, error, source=where):
                    yield item
                yield SessionUpdated(reply.finish(interrupted=False))
                return
            if not filled and now >= reply.started + cfg.filler_after:
                filled = True
                if not "".join(reply.text).strip():  # the first token is late: hold the line
                    async for item in _filler(cfg, reply):
                        yield item
    except StopAsyncIteration:
        return
    finally:
        await settle(pull)
        aclose = getattr(inner, "aclose", None)
        if aclose is not None:
            await aclose()


async def _filler(cfg: _Config, reply: _Reply) -> AsyncIterator[Any]:
    """Speak the filler: heard, but not the LLM's words, so never recorded."""
    try:
        async with (Flow([Sentence(str(cfg.filler))]) | cfg.tts).open() as items:
            async for item in items:
                yield _Fill(item)
    except Exception as exc:
        if reply.cancelled:
            raise
        _log.warning("the filler could not be spoken: %s", redact(str(_original(exc))))


def _dead_air(deadline: float, reply: _Reply) -> tuple[ProviderTimeout, str]:
    """The error for a reply that gave no audio in time, naming what it was waiting on."""
    head = f"no audio within {deadline:g} s"
    text = "".join(reply.text)
    if reply.tool is not None:
        what, where = f"the tool {reply.tool!r} was still running", "tool"
    elif reply.sentences:
        what, where = f"the TTS gave no audio for {reply.sentences[0][:60]!r}", "tts"
    elif text.strip():
        what, where = (
            f"the LLM sent {len(text)} characters ({text[:40]!r}) but no whole sentence",
            "llm",
        )
    else:
        what, where = "the LLM sent no text (nothing at all, or only keep-alives)", "llm"
    return ProviderTimeout(f"{head}: {what}", provider=where), where


def _empty(reply: _Reply) -> ProviderResponseError:
    """The error for a reply that ended with nothing spoken."""
    text = "".join(reply.text).strip()
    if not text:
        what = "the LLM's reply was empty"
    else:
        what = f"the LLM's reply had nothing to speak: {text[:60]!r}"
    return ProviderResponseError(what, provider="llm")


def _looped(rounds: int, *, offered: bool = True) -> ProviderResponseError:
    """The error for a reply that was still calling tools when it had to answer."""
    if offered:
        what = (
            f"the LLM called tools in every round ({rounds} rounds) and never answered; "
            "the calls made when no more tools were offered were not run"
        )
    else:
        what = f"the LLM called tools in {rounds} rounds although no tools were offered"
    return ProviderResponseError(what, provider="llm")


async def _greet(
    cfg: _Config, reply: _Reply, line: str | None = None, *, last: bool = True
) -> AsyncIterator[Any]:
    """Speak the first message (or ``line``: a tool's or the idle policy's), sentence by
    sentence, so that a barge-in keeps what was heard; ``last``: end the reply after it."""
    text = str(cfg.first_message) if line is None else line
    try:
        flow = Flow([Sentence(s) for s in split_sentences(text)]) | Stage.of(_mark_heard) | cfg.tts
        async with flow.open() as items:
            async for item in items:
                yield item
    except Exception as exc:
        if reply.cancelled:
            raise
        async for item in _fail(cfg, reply, exc):
            yield item
    if last:
        yield SessionUpdated(reply.finish(interrupted=False))


# ---------------------------------------------------------------------------------------------
# The loop over turns


class _Running:
    """A reply in flight: its state, its generator, the pull in progress and the outputs pulled
    but not handled yet (a promoted speculation's held output)."""

    __slots__ = ("buffer", "gen", "pull", "state")

    def __init__(self, state: _Reply, gen: AsyncIterator[Any]) -> None:
        self.state = state
        self.gen = gen
        self.pull: asyncio.Future[Any] | None = None
        self.buffer: deque[asyncio.Future[Any]] = deque()

    def ready(self) -> asyncio.Future[Any] | None:
        """The next output to handle, if one is in: held ones first, then the pull."""
        if self.buffer:
            return self.buffer.popleft()
        if self.pull is not None and self.pull.done():
            pulled, self.pull = self.pull, None
            return pulled
        return None

    async def close(self) -> None:
        """Cancel the reply at once, if it is still running."""
        self.state.cancelled = True
        await settle(self.pull)
        self.pull = None
        for held in self.buffer:
            await settle(held)  # done already: only marks an error as seen
        self.buffer.clear()
        aclose = getattr(self.gen, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception as exc:  # an error while closing a cancelled reply is not news
                _log.debug("closing a cancelled reply: %r", exc)

    async def stop(self) -> Session:
        """Cancel the reply at once; the Session with what was heard of it."""
        await self.close()
        return self.state.finish(interrupted=True)


def _same_text(a: str, b: str) -> bool:
    return a.split() == b.split()


def _retext(session: Session, index: int, text: str) -> Session:
    """``session`` with the user message at ``index`` reading ``text`` (same words)."""
    messages = list(session.messages)
    if index >= len(messages):
        return session
    message = messages[index]
    content = message.get("content")
    if message.get("role") != "user" or not isinstance(content, str):
        return session
    if content == text or not _same_text(content, text):
        return session
    messages[index] = {**message, "content": text}
    return session.with_messages(messages)


class _Speculation(_Running):
    """A reply started on a :class:`TurnPending`: it runs (LLM, TTS) but every output is held,
    and it runs no tool, until its turn ends with the same text and it is promoted.

    ``origin`` is the Session it replies from; it is promoted only if that is still the Session
    when the turn ends (a reply cut in between changed it).
    """

    __slots__ = ("index", "origin", "text")

    def __init__(self, cfg: _Config, origin: Session, text: str, client: Any) -> None:
        state = _Reply(origin.add_user(text))
        state.live.clear()
        super().__init__(state, _watched(cfg, state, _answer(cfg, state, client)))
        self.origin = origin
        self.index = len(origin.messages)  # where the user's message is
        self.text = text

    def exhausted(self) -> bool:
        """Whether the reply has given all it will give (its last output is held)."""
        if not self.buffer:
            return False
        last = self.buffer[-1]
        if last.cancelled() or last.exception() is not None:
            return True
        return isinstance(last.result(), SessionUpdated)

    def hold(self) -> bool:
        """Hold the output just pulled, if any; True if there was one."""
        if self.pull is None or not self.pull.done():
            return False
        pulled, self.pull = self.pull, None
        self.buffer.append(pulled)
        return True

    def promote(self, text: str) -> None:
        """The turn ended with this reply's text (``text``, maybe spaced otherwise): it is the
        reply now. It goes live once its held output has been handled (see :func:`_run`)."""
        if text != self.text:
            self.state.base = _retext(self.state.base, self.index, text)
            self.text = text


class _Pause:
    """A reply paused because the user started to speak over it, until the strategy says
    whether that was an interruption (``"cut"``) or not (``"resume"``).

    ``t`` is when the speech began; ``since`` when the current stretch of speech began and
    ``stopped`` when it stopped (stream time); ``answered`` whether the recogniser's answer to
    that speech came (a final transcript with no words that count, or a ``NoWords``: its ``t``,
    the utterance's onset, not before ``since``).
    """

    __slots__ = ("answered", "since", "speaking", "stopped", "t")

    def __init__(self, t: float) -> None:
        self.t = t
        self.since = t
        self.speaking = True
        self.stopped: float | None = None
        self.answered = False

    def judge(self, item: Any, strategy: Interruption, now: float, answers: bool) -> str | None:
        """What ``item`` (an inbound item; ``now`` is the stream time) says: "cut", "resume"
        or None (not known yet). ``answers``: the recogniser is known to answer every
        utterance, so the pause waits for its answer (up to ``max_pause``)."""
        if isinstance(item, SpeechStarted):
            if not self.speaking:
                self.speaking, self.since, self.stopped, self.answered = True, item.t, None, False
        elif isinstance(item, SpeechStopped):
            self.speaking, self.stopped, self.answered = False, item.t, False
        elif isinstance(item, Transcript | TurnPending | TurnEnded):
            if strategy.confirms(item.text):
                return "cut"
            if isinstance(item, TurnEnded):
                return "resume"  # the turn is over, and it was no interruption
            if isinstance(item, Transcript) and item.final and not self.speaking:
                self.answered = item.t >= self.since - 1e-6 or self.answered
        elif isinstance(item, NoWords) and not self.speaking:
            self.answered = item.t >= self.since - 1e-6 or self.answered
        if self.speaking:
            if strategy.min_speech is not None and now - self.since >= strategy.min_speech:
                return "cut"
            return None
        if self.answered:
            return "resume"
        wait = strategy.max_pause if answers else strategy.resume_after
        if self.stopped is not None and now - self.stopped >= wait:
            return "resume"
        return None


async def _run(source: AsyncIterable[Any], /, *, cfg: _Config) -> AsyncIterator[Any]:
    session = cfg.session
    client: Any = cfg.client
    own_client = None
    if client is None and cfg.wants_client:
        client = own_client = new_client()
    src = aiter(source)
    pull_src: asyncio.Future[Any] | None = None
    clock = _Clock()
    running: _Running | None = None
    spec: _Speculation | None = None
    acks = False  # whether the transport acknowledges marks (CallStarted.acknowledges)
    replies = 0  # replies that have yielded a mark so far (for mark names)
    strategy = cfg.interruption
    pause: _Pause | None = None  # the reply in flight is paused: the user speaks over it
    answers = False  # the recogniser has shown it answers every utterance (NoWords or a final)
    skip_turn = False  # the turn in progress was a backchannel over a reply: no answer to it
    # call control and idle callers (voicekit.phone): once a hang-up or transfer is yielded the
    # call is over for the agent (``closing``: no more replies, nothing cut); the idle timer
    # runs from ``idle_since`` (stream time the agent finished speaking) while nobody speaks
    closing = False
    idle = cfg.idle
    idle_since: float | None = None
    idle_count = 0  # reprompts said since the caller was last heard
    speaking = turn_open = False  # the caller is speaking / a user turn is open
    try:
        if cfg.first_message:
            state = _Reply(session)
            running = _Running(state, _greet(cfg, state))
            yield ReplyStarted(None)
        pull_src = asyncio.ensure_future(anext(src))
        while pull_src is not None or running is not None:
            if running is not None and running.state.ended and pause is None:
                # its last output is in: it is recorded once all it said was heard (or never
                # can be: the inbound stream is over). Not while paused: the user began to
                # speak over it, and their words still decide whether it was interrupted
                # (its audio may all be out and heard by now: a carrier plays what it holds)
                ended = running.state
                if not (acks and ended.unheard and pull_src is not None):
                    finished, running = running, None
                    await finished.close()
                    session = ended.finish(interrupted=bool(ended.unheard))
                    yield SessionUpdated(session)
                    due = _due_action(ended)  # a hang-up or transfer: once all of it was heard
                    if due is not None:
                        closing = True
                        yield due
                    if idle is not None and not closing:  # finished speaking: the timer starts
                        heard_at = ended.last_ack if acks else None
                        idle_since = clock.end if heard_at is None else heard_at
                    continue
            if (
                idle is not None
                and idle_since is not None
                and running is None
                and spec is None
                and pull_src is not None
                and not (closing or speaking or turn_open)
                and clock.inbound >= idle_since + idle.after
            ):
                # nobody spoke: the idle policy's line, recorded as what it is (not the LLM's)
                at, idle_since = idle_since + idle.after, None
                state = _Reply(session)
                state.by = "idle"
                if idle_count < idle.reprompts:
                    idle_count += 1
                    state.kind, line = "idle_reprompt", idle.reprompt
                else:
                    state.kind, line = "idle_goodbye", idle.goodbye
                    state.action = CallAction(HangUp("idle"), say=line or None)
                running = _Running(state, _greet(cfg, state, line))
                yield ReplyStarted(None, at)
                continue
            # the user first: an item of the source wins over reply output that is ready too
            if pull_src is None or not pull_src.done():
                if running is not None and not running.buffer and not running.state.live.is_set():
                    running.state.live.set()  # a promoted reply has caught up: on it goes
                if (
                    running is not None
                    and running.pull is None
                    and not running.buffer
                    and not running.state.ended
                ):
                    running.pull = asyncio.ensure_future(anext(running.gen))
                if spec is not None and spec.pull is None and not spec.exhausted():
                    spec.pull = asyncio.ensure_future(anext(spec.gen))
                waiting = [
                    f
                    for f in (
                        pull_src,
                        running.pull if running is not None and pause is None else None,
                        spec.pull if spec is not None else None,
                    )
                    if f is not None
                ]
                held = running is not None and bool(running.buffer) and pause is None
                if waiting and not held and not any(f.done() for f in waiting):
                    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if pull_src is not None and pull_src.done():
                done, pull_src = pull_src, None
                try:
                    item = done.result()
                except StopAsyncIteration:
                    pause = None  # nothing more can say it was an interruption: on it goes
                    continue  # the source ended: the reply in flight may finish
                pull_src = asyncio.ensure_future(anext(src))
                clock.see(item)
                if isinstance(item, SpeechStarted | SpeechStopped):
                    speaking = isinstance(item, SpeechStarted)
                elif isinstance(item, TurnStarted | TurnEnded):
                    turn_open = isinstance(item, TurnStarted)
                if isinstance(item, SpeechStarted | TurnStarted | Dtmf | Digits):
                    idle_count = 0  # the caller is there
                if idle_since is not None and isinstance(
                    item, SpeechStarted | SpeechStopped | TurnStarted | TurnEnded | Dtmf | Digits
                ):
                    idle_since = max(idle_since, item.t)  # silence counts from the caller's end
                if spec is not None and _user_went_on(item, spec):
                    await spec.close()  # silently: nothing of it was heard or recorded
                    spec = None
                # the barge-in strategy: pause on speech over a reply, then cut or resume
                if isinstance(item, NoWords) or (isinstance(item, Transcript) and item.final):
                    answers = True
                verdict = None
                if running is None or closing:  # nothing to cut once the call is ending
                    pause = None
                elif strategy.cuts_at_once:
                    if isinstance(item, TurnStarted | TurnEnded):
                        verdict = "cut"
                else:
                    if pause is None and isinstance(item, SpeechStarted | TurnStarted):
                        pause = _Pause(item.t)
                    if pause is not None:
                        verdict = pause.judge(item, strategy, clock.inbound, answers)
                    elif isinstance(item, TurnEnded):  # a turn with no start seen: its words
                        verdict = "cut" if strategy.confirms(item.text) else "resume"
                if verdict == "resume":
                    pause = None
                    skip_turn = True  # the turn it belongs to gets no answer
                    clock.end = max(clock.end, clock.inbound)  # on it goes from now
                elif isinstance(item, TurnStarted):
                    skip_turn = False  # a new turn
                if isinstance(item, TurnEnded | TurnPending) and skip_turn:
                    skip = verdict == "resume" or not strategy.confirms(item.text)
                else:
                    skip = False
                if isinstance(item, TurnEnded):
                    skip_turn = False
                if verdict == "cut" and running is not None:
                    # Interrupted at once (a transport clears the line on it); then the reply
                    # is closed and recorded as heard up to here. Nothing was sent since the
                    # pause, so what was heard is what was heard when the user began.
                    cut, heard = running, _join(running.state.said)
                    at = pause.t if pause is not None else getattr(item, "t", clock.inbound)
                    pause = None
                    cut.state.cancelled = True
                    if cut.pull is not None:
                        cut.pull.cancel()  # nothing more of it runs (no tool starts)
                    if isinstance(item, TurnStarted | TurnEnded):
                        yield item
                    yield Interrupted(heard, at)
                    running = None
                    session = await cut.stop()
                    yield SessionUpdated(session)
                    due = _due_action(cut.state)  # a goodbye cut short: still hang up, after
                    if due is not None:  # what was heard of it (the transport waits for that)
                        closing = True
                        yield due
                    if not isinstance(item, TurnStarted | TurnEnded):
                        if not isinstance(item, AudioChunk):
                            yield item
                        continue
                    cut_here = True
                else:
                    cut_here = False
                if isinstance(item, TurnPending):
                    yield item
                    if (
                        cfg.preemptive
                        and spec is None
                        and running is None
                        and item.text.strip()
                        and not skip
                        and not closing
                    ):
                        spec = _Speculation(cfg, session, item.text, client)
                elif isinstance(item, TurnStarted | TurnEnded):
                    if not cut_here:
                        yield item
                    if (
                        isinstance(item, TurnEnded)
                        and item.text.strip()
                        and running is None
                        and not skip
                        and not closing
                    ):
                        if spec is not None and spec.origin is session:
                            spec.promote(item.text)  # same words: _user_went_on kept it
                            running, spec = spec, None
                        else:
                            state = _Reply(session.add_user(item.text))
                            running = _Running(
                                state, _watched(cfg, state, _answer(cfg, state, client))
                            )
                        running.state.begin()
                        yield ReplyStarted(item.text, item.t)
                    if spec is not None:
                        await spec.close()
                        spec = None
                elif isinstance(item, CallEnded):
                    # the call is over: nothing more can be heard; the Session as it stands
                    if running is not None:
                        cut, running = running, None
                        session = await cut.stop()
                    if spec is not None:
                        await spec.close()
                        spec = None
                    yield item
                    yield SessionUpdated(session)
                    return
                elif not isinstance(item, AudioChunk):
                    if isinstance(item, CallStarted) and item.acknowledges and not acks:
                        acks = True
                        if running is not None:  # a greeting already under way: the
                            running.state.acked.clear()  # transport acknowledges its marks too
                    elif isinstance(item, Played) and acks and running is not None:
                        running.state.ack(item.name)
                        if item.name in running.state.acked:
                            running.state.last_ack = item.t
                    yield item
                continue
            if spec is not None and spec.hold():
                continue
            if pause is not None:
                continue  # the reply's output waits (its pull stays done, unhandled)
            pulled = running.ready() if running is not None else None
            if running is not None and pulled is not None:
                try:
                    out = pulled.result()
                except StopAsyncIteration:
                    running = None
                    continue
                state = running.state
                if isinstance(out, _Heard):
                    if state.recording and out.number > state.heard_upto:
                        state.heard_upto = out.number
                        if state.number is None:
                            replies += 1
                            state.number = replies
                        name = f"{state.number}-{len(state.spoken) + 1}"
                        state.spoken.append((name, out.text, state.round))
                        if not acks:
                            state.acked.add(name)
                        yield Mark(name, out.text)
                    continue
                filler = isinstance(out, _Fill)
                if filler:
                    out = out.item
                if isinstance(out, AudioChunk) and not filler:
                    state.audio = True
                    if state.recording:
                        state.spoke = True
                if isinstance(out, AudioChunk):
                    if not clock.placed(state):
                        clock.start(state)
                    out = clock.stamp(out)
                elif isinstance(out, SessionUpdated):  # always a reply's last item
                    state.ended = True  # recorded at the top of the loop, once all was heard
                    continue
                yield out
    finally:
        await settle(pull_src)
        if spec is not None:
            await spec.close()
        if running is not None:
            await running.close()
        if own_client is not None:
            await own_client.aclose()


class _Clock:
    """The outbound clock: the stream time of the agent's audio, one timeline for the call.

    Every chunk the agent yields is re-stamped (a TTS counts each call's audio from 0): a
    reply's audio runs on without gaps, and each reply starts at the later of the end of the
    agent's audio so far and the latest stream time seen on the inbound stream (the turn that
    started it, or the caller's audio when it passes through): a reply is never placed before
    the turn it answers, nor over the previous reply.
    """

    __slots__ = ("end", "inbound", "reply")

    def __init__(self) -> None:
        self.end = 0.0  # where the agent's audio so far ends
        self.inbound = 0.0  # the latest stream time seen on the inbound stream
        self.reply: _Reply | None = None  # the reply whose audio was placed last

    def see(self, item: Any) -> None:
        """Note the stream time of an inbound item."""
        t: Any = item.end if isinstance(item, AudioChunk) else getattr(item, "t", None)
        if isinstance(t, bool) or not isinstance(t, int | float):
            return
        if t > self.inbound:
            self.inbound = float(t)

    def placed(self, reply: _Reply) -> bool:
        return self.reply is reply

    def start(self, reply: _Reply) -> None:
        """``reply``'s first audio: it starts now on the outbound clock."""
        self.reply = reply
        self.end = max(self.end, self.inbound)

    def stamp(self, chunk: AudioChunk) -> AudioChunk:
        """``chunk`` placed where the outbound audio has got to."""
        out = AudioChunk(chunk.samples, chunk.rate, self.end)
        self.end = out.end
        return out


def _user_went_on(item: Any, spec: _Speculation) -> bool:
    """Whether ``item`` says the speculative reply is not the reply to the turn."""
    if isinstance(item, SpeechStarted | TurnStarted):
        return True
    if isinstance(item, TurnPending | TurnEnded):
        return not _same_text(item.text, spec.text)
    return False


def _seconds(name: str, value: Any, *, none: bool = True) -> float | None:
    """An option in seconds: a positive finite number (or None where allowed)."""
    if value is None and none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        allowed = " or None" if none else ""
        raise ConfigError(
            f"agent: {name} must be a positive number of seconds{allowed}, got {value!r}"
        )
    return float(value)


def agent(
    *,
    llm: LLM,
    tts: Stage[Any, Any],
    session: Session | None = None,
    system: str | None = None,
    tools: Sequence[Tool | Callable[..., Any]] | None = None,
    first_message: str | None = None,
    llm_error_message: str | None = None,
    max_tool_rounds: int = 5,
    client: httpx.AsyncClient | None = None,
    preemptive: bool = True,
    history: HistoryOption = None,
    idle: Idle | None = None,
    first_audio_deadline: float | None = 5.0,
    llm_deadline: float | None = 30.0,
    filler: str | None = None,
    filler_after: float = 1.5,
    interruption: Interruption | None = None,
    metrics: bool = False,
    tracer: Any = None,
) -> Stage[Any, Any]:
    """The conversation loop as a stage: user turns in, reply audio and events out.

    ``llm``: an :class:`~voicekit.llm.Endpoint` or an async-generator function of the messages
    yielding ``str``/``Token``, ``ToolCall`` and other events; it receives only the context
    values it declares (``tools``, ``session``, ``client``, ``system``, ``call_id``,
    ``caller``, ``callee``). ``tts``: a TTS stage (:func:`voicekit.tts.piper`,
    :func:`voicekit.tts.tones`…). ``session``: where the conversation starts (a new
    :class:`~voicekit.Session` by default). ``system``: the system instruction. ``tools``:
    functions (or :func:`tool` values) the LLM may call; after a round of calls the LLM is
    asked again, at most ``max_tool_rounds`` times per turn (then once more without tools).
    ``first_message``: a greeting spoken at start and recorded as the assistant's.
    ``llm_error_message``: spoken when the LLM fails before any audio of the reply (default:
    silence). ``client``: an ``httpx.AsyncClient`` for the LLM (one is made per run when the
    LLM takes a ``client`` and none is given). ``preemptive``: start preparing the reply on a
    :class:`~voicekit.TurnPending`, holding its output until the turn ends (see below).
    ``history``: what of the Session the LLM is sent — a :class:`~voicekit.HistoryWindow` (the
    last turns, or a token budget) or a number of turns; None (the default) sends it all. The
    Session keeps everything either way.

    Dead air is bounded. ``first_audio_deadline``: seconds from a reply's start (its
    ``ReplyStarted``) within which its first audio must come — the LLM's first token, the first
    whole sentence, the tools and the TTS all count against it — else the reply is abandoned
    as a ``ReplyFailed`` and ``llm_error_message`` is spoken. ``llm_deadline``: seconds one LLM
    request may take from start to end, however steadily it trickles or sends keep-alives.
    None turns either off. ``filler`` (e.g. ``"One moment."``): spoken once in a reply whose
    first token has not come ``filler_after`` seconds after its start; heard, but never
    recorded as the LLM's words (it does not stop the deadline's clock).

    ``idle``: what to do when the caller says nothing after the agent has finished speaking —
    a :func:`voicekit.phone.idle` policy (reprompt, then goodbye and hang up); None: wait.
    A tool may end, transfer or key the call (:mod:`voicekit.phone`): see the module
    documentation, "Call control".

    ``interruption``: the barge-in strategy, an :class:`~voicekit.Interruption` (the default,
    ``Interruption()``, pauses the reply when the user speaks over it, cuts it on a word that
    is not a backchannel and resumes it otherwise); ``Interruption.immediate()`` cuts it at the
    first ``TurnStarted``.

    ``metrics=True``: right after the ``SessionUpdated`` that ends each reply to a user turn,
    yield a :class:`~voicekit.TurnMetrics` of that turn (its milestones, tokens, tool time,
    barge-in, failures, call id). ``tracer``: an OpenTelemetry tracer (or ``True`` for the
    global provider's; ``pip install voicekit[otel]``) that gets a span per call, turn, LLM
    request, TTS sentence, STT wait and tool call. Both are off by default and then cost
    nothing: see :mod:`voicekit._observe`.

    See the module documentation for what comes out and how history is recorded.

    >>> import asyncio
    >>> from voicekit.events import TurnEnded, TurnStarted
    >>> from voicekit.tts import tones
    >>> async def llm(messages):
    ...     yield f"You said {messages[-1]['content']}."
    >>> bot = agent(llm=llm, tts=tones(), session=Session(call_id="demo"))
    >>> out = asyncio.run(([TurnStarted(), TurnEnded("hello")] | bot).list())
    >>> out[-1].session.messages_json()
    [{'role': 'user', 'content': 'hello'}, {'role': 'assistant', 'content': 'You said hello.'}]
    """
    if isinstance(llm, Endpoint):
        fn: Callable[..., Any] = functools.partial(chat, llm)
    elif callable(llm):
        fn = llm
    else:
        raise ConfigError(
            f"agent: llm must be an Endpoint or an async generator function, got {type(llm)!r}"
        )
    if not isinstance(tts, Stage):
        raise ConfigError(f"agent: tts must be a Stage (e.g. voicekit.tts.tones()), got {tts!r}")
    if session is None:
        session = Session()
    elif not isinstance(session, Session):
        raise ConfigError(f"agent: session must be a Session, got {type(session).__name__}")
    if isinstance(max_tool_rounds, bool) or not isinstance(max_tool_rounds, int):
        raise ConfigError(f"agent: max_tool_rounds must be an int ≥ 0, got {max_tool_rounds!r}")
    if max_tool_rounds < 0:
        raise ConfigError(f"agent: max_tool_rounds must be ≥ 0, got {max_tool_rounds}")
    if not isinstance(preemptive, bool):
        raise ConfigError(f"agent: preemptive must be True or False, got {preemptive!r}")
    first_audio_deadline = _seconds("first_audio_deadline", first_audio_deadline)
    llm_deadline = _seconds("llm_deadline", llm_deadline)
    after = _seconds("filler_after", filler_after, none=False)
    if filler is not None and not isinstance(filler, str):
        raise ConfigError(f"agent: filler must be a str or None, got {type(filler).__name__}")
    if interruption is None:
        interruption = _DEFAULT_INTERRUPTION
    elif not isinstance(interruption, Interruption):
        raise ConfigError(
            "agent: interruption must be an Interruption (e.g. voicekit.Interruption.immediate()), "
            f"got {type(interruption).__name__}"
        )
    if idle is not None and not isinstance(idle, Idle):
        raise ConfigError(
            f"agent: idle must be a voicekit.phone.idle(...) policy or None, got {idle!r}"
        )
    try:
        window = HistoryWindow.of(history)
    except ConfigError as exc:
        raise ConfigError(f"agent: {exc}") from None
    cfg = _Config(
        llm=fn,
        tts=tts,
        session=session,
        system=system,
        tools=tools_of(tools),
        first_message=first_message or None,
        llm_error_message=llm_error_message or None,
        max_tool_rounds=max_tool_rounds,
        client=client,
        wants_client="client" in accepted_context(fn),
        preemptive=preemptive,
        history=window,
        idle=idle,
        first_audio_deadline=first_audio_deadline,
        llm_deadline=llm_deadline,
        filler=filler.strip() or None if filler is not None else None,
        filler_after=after or 0.0,
        interruption=interruption,
    )
    if not isinstance(metrics, bool):
        raise ConfigError(f"agent: metrics must be True or False, got {metrics!r}")
    tracer = resolve_tracer(tracer)
    if metrics or tracer is not None:
        return Stage.of(observed, "agent", cfg=cfg, run=_run, metrics=metrics, tracer=tracer)
    return Stage.of(_run, "agent", cfg=cfg)


def voice_agent(
    *,
    llm: LLM,
    tts: Stage[Any, Any],
    stt: Stage[Any, Any],
    vad: Stage[Any, Any] | None = None,
    turns: Stage[Any, Any] | None = None,
    session: Session | None = None,
    **options: Any,
) -> Stage[Any, Any]:
    """The whole pipeline from caller audio to reply audio: ``vad | stt | turns | agent``.

    ``vad`` defaults to :func:`voicekit.vad.vad` (Silero), ``turns`` to
    :func:`voicekit.turns.turns` with :func:`~voicekit.turns.recommended_stop_strategies`
    (Smart Turn v3 when ``voicekit[turn]`` is installed and the STT is given
    ``pass_audio=True``, the speech timeout otherwise); ``options`` go to :func:`agent`.
    """
    if vad is None:
        vad = make_vad()
    if turns is None:
        turns = make_turns(stop=recommended_stop_strategies(stt))
    return vad | stt | turns | agent(llm=llm, tts=tts, session=session, **options)
