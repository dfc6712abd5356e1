"""The values that flow through voicekit streams.

A small, closed set of frozen dataclasses. Each stage's signature says which of them it consumes
and which it yields; a stage passes on, unchanged, any item it does not handle.

Audio travels as :class:`AudioChunk` (mono int16 samples, their rate and their start time).
Text travels as :class:`Transcript` (from speech recognition), :class:`Token` (from an LLM) and
:class:`Sentence` (ready for speech synthesis).

>>> import numpy as np
>>> chunk = AudioChunk(np.zeros(320, dtype=np.int16), rate=16000, t=0.5)
>>> chunk.duration, chunk.end
(0.02, 0.52)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ._errors import AudioError

__all__ = [
    "AudioChunk",
    "CallEnded",
    "CallStarted",
    "Continuity",
    "Dtmf",
    "Event",
    "Finish",
    "HangUp",
    "Interrupted",
    "Mark",
    "NoWords",
    "Played",
    "ReplyFailed",
    "ReplyStarted",
    "SendDtmf",
    "Sentence",
    "SessionUpdated",
    "SpeechStarted",
    "SpeechStopped",
    "Switched",
    "Token",
    "ToolCall",
    "ToolResult",
    "Transcript",
    "TransferCall",
    "TurnEnded",
    "TurnPending",
    "TurnStarted",
    "Usage",
]


@dataclass(frozen=True, slots=True, eq=False)
class AudioChunk:
    """Mono 16-bit PCM samples at ``rate`` Hz, starting ``t`` seconds into the stream.

    ``samples`` is a read-only, one-dimensional ``int16`` numpy array; ``rate`` a positive int
    (not a bool), so ``duration`` is never negative; ``t`` a finite float. Anything else is an
    :class:`~voicekit.AudioError`. Two chunks are equal when their rate, start time and samples
    are equal.

    >>> AudioChunk(np.zeros(8, dtype=np.int16), rate=True)
    Traceback (most recent call last):
    ...
    voicekit._errors.AudioError: AudioChunk rate must be a positive integer number of Hz, got True
    """

    samples: npt.NDArray[np.int16]
    rate: int
    t: float = 0.0

    def __post_init__(self) -> None:
        samples = self.samples
        if not isinstance(samples, np.ndarray):
            raise AudioError(
                f"AudioChunk samples must be a numpy array, got {type(samples).__name__}"
            )
        if samples.dtype != np.int16:
            raise AudioError(
                f"AudioChunk samples must be int16, got {samples.dtype}; "
                "convert with voicekit.audio.to_int16()"
            )
        if samples.ndim != 1:
            raise AudioError(f"AudioChunk samples must be mono (1-D), got shape {samples.shape}")
        rate, t = self.rate, self.t
        if isinstance(rate, bool) or not isinstance(rate, int | np.integer) or rate <= 0:
            raise AudioError(
                f"AudioChunk rate must be a positive integer number of Hz, got {rate!r}"
            )
        if type(rate) is not int:
            object.__setattr__(self, "rate", int(rate))
        if (
            isinstance(t, bool)
            or not isinstance(t, int | float | np.integer | np.floating)
            or not math.isfinite(t)
        ):
            raise AudioError(f"AudioChunk t must be a finite number of seconds, got {t!r}")
        if type(t) is not float:
            object.__setattr__(self, "t", float(t))
        if samples.flags.writeable:
            samples = samples.view()
            samples.flags.writeable = False
            object.__setattr__(self, "samples", samples)

    @property
    def frames(self) -> int:
        """Number of samples."""
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.samples.shape[0] / self.rate

    @property
    def end(self) -> float:
        """Time at which this chunk ends, in seconds."""
        return self.t + self.duration

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AudioChunk):
            return NotImplemented
        return (
            self.rate == other.rate
            and self.t == other.t
            and np.array_equal(self.samples, other.samples)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"AudioChunk({self.frames} samples, rate={self.rate}, t={self.t:.3f}, "
            f"duration={self.duration * 1000:.1f} ms)"
        )


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """Voice activity began at ``t`` seconds; ``params`` are the detector settings used."""

    t: float
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    """Voice activity ended at ``t`` seconds; ``params`` are the detector settings used."""

    t: float
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Transcript:
    """Recognised speech. ``final`` is False for a partial hypothesis that may still change."""

    text: str
    final: bool = True
    t: float = 0.0


@dataclass(frozen=True, slots=True)
class NoWords:
    """The recogniser found no words in the utterance whose speech began at ``t`` (a cough, a
    click, a laugh): its recognition is done and no :class:`Transcript` of it will come.
    voicekit's STT stages yield one where they would otherwise stay silent, so that an agent can
    tell "no words" from "no answer yet" (see :class:`~voicekit.Interruption`)."""

    t: float = 0.0


@dataclass(frozen=True, slots=True)
class TurnStarted:
    """The user has taken the floor (barge-in point) at ``t`` seconds."""

    t: float = 0.0


@dataclass(frozen=True, slots=True)
class TurnEnded:
    """The user finished a turn; ``text`` is everything they said in it."""

    text: str
    t: float = 0.0


@dataclass(frozen=True, slots=True)
class Token:
    """A piece of generated text, as an LLM streams it."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete request from the LLM to call a tool. ``arguments`` is the raw JSON text."""

    id: str
    name: str
    arguments: str = "{}"


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The result of running a tool call, as text for the LLM."""

    call_id: str
    name: str
    content: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts for one LLM response. ``cached_tokens`` is part of ``prompt_tokens``."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Finish:
    """The LLM response ended, for ``reason`` ("stop", "tool_calls", "length", …)."""

    reason: str | None = "stop"
    response_id: str | None = None


@dataclass(frozen=True, slots=True)
class Sentence:
    """Text ready to be spoken."""

    text: str


@dataclass(frozen=True, slots=True)
class Interrupted:
    """A reply was cut off by the user; ``heard`` is the part that was played out."""

    heard: str = ""
    t: float = 0.0


@dataclass(frozen=True, slots=True)
class Switched:
    """A failover moved from one provider to the next because the first one failed."""

    from_name: str
    to_name: str
    error: str


@dataclass(frozen=True, slots=True)
class ReplyStarted:
    """The agent began a reply: to the user turn ``turn`` (None for the first message)."""

    turn: str | None = None
    t: float = 0.0


@dataclass(frozen=True, slots=True)
class ReplyFailed:
    """A reply failed. ``source`` says what failed (``"llm"``, ``"tts"``), ``error`` how;
    ``fallback`` is True when the spoken error message was played instead.
    ``exception`` is the exception itself (not compared)."""

    source: str
    error: str
    fallback: bool = False
    exception: BaseException | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class SessionUpdated:
    """The conversation's new state after a turn (or the first message): ``session`` is the
    :class:`~voicekit.Session` value to keep."""

    session: Any


@dataclass(frozen=True, slots=True)
class Continuity:
    """A provider's new continuity state, to be kept in the Session (``None`` drops it).

    LLM functions are stateless: what they need to remember across turns they yield as a
    Continuity event, and the conversation loop stores it with :meth:`apply`.
    """

    provider: str
    state: Mapping[str, Any] | None

    def apply(self, session: Any) -> Any:
        """``session`` with this state stored under ``provider``."""
        return session.with_continuity(self.provider, self.state)


@dataclass(frozen=True, slots=True)
class TurnPending:
    """The user has paused with ``text`` recognised: the turn will end with this text unless
    they go on. A hint, ``t`` seconds into the stream, that a reply may be prepared (not spoken).

    :func:`voicekit.turns.turns` emits at most one per distinct text of a turn, always before
    that turn's :class:`TurnEnded`; if the user resumes, the turn's ``TurnEnded`` (or a later
    ``TurnPending``) carries different text. It may be ignored: ``TurnEnded`` remains the end.
    """

    text: str
    t: float = 0.0


@dataclass(frozen=True, slots=True)
class Mark:
    """A point in the agent's outbound audio: everything before it is sentence ``text`` (or the
    sentences before it) of the current reply. ``name`` is unique within a conversation.

    A transport that plays audio with a delay (a phone carrier buffers it) sends the mark along
    with the audio and reports, on the *inbound* stream, a :class:`Played` with the same name
    when the caller has heard the audio up to it.
    """

    name: str
    text: str = ""


@dataclass(frozen=True, slots=True)
class Played:
    """The audio up to :class:`Mark` ``name`` has been played to the caller (an acknowledgement
    from the transport, on the inbound stream, ``t`` seconds into it)."""

    name: str
    t: float = 0.0


@dataclass(frozen=True, slots=True)
class CallStarted:
    """A transport connected a call (the first item of its inbound stream).

    ``call_id`` is the carrier's id of the call, ``carrier`` the transport's name (``"twilio"``,
    ``"ws"``…). ``acknowledges`` is True when the transport reports a :class:`Played` for every
    :class:`Mark` of the outbound audio: the agent then counts a sentence as heard only when its
    ``Played`` comes back, not when its audio is handed on.
    """

    call_id: str
    carrier: str = ""
    acknowledges: bool = False
    t: float = 0.0
    caller: str = ""
    callee: str = ""
    stream_id: str = ""
    parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Dtmf:
    """The caller pressed keypad key ``digit`` (``"0"``–``"9"``, ``"*"``, ``"#"``, ``"A"``–``"D"``),
    ``t`` seconds into the inbound stream."""

    digit: str
    t: float = 0.0


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The call is over (the last item of a transport's inbound stream). ``reason`` says why:
    ``"hangup"`` (the caller or carrier ended it), ``"closed"`` (we ended it), ``"dropped"`` (the
    connection was lost) or ``"error"`` (a protocol error, described in ``detail``)."""

    reason: str = "hangup"
    detail: str = ""
    t: float = 0.0


@dataclass(frozen=True, slots=True)
class HangUp:
    """The agent ends the call. A transport acts on it once everything the agent sent before it
    has been played (by the carrier's acknowledgements where there are some), so a goodbye is
    heard whole: Twilio/Telnyx/Plivo through the carrier's REST API, AudioHook with a
    ``disconnect``. ``variables`` are handed back to the platform where it takes them
    (AudioHook's ``outputVariables``: strings only)."""

    reason: str = "completed"
    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TransferCall:
    """The agent hands the call to ``to`` (a phone number or SIP address), after everything sent
    before it has been played: Twilio a REST update with ``<Dial>``, Telnyx a transfer,
    AudioHook a ``disconnect`` with ``action: transfer`` in ``outputVariables``."""

    to: str
    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SendDtmf:
    """The agent presses keypad keys ``digits`` on the call (to navigate a menu), where the
    carrier allows it."""

    digits: str


Event = (
    AudioChunk
    | SpeechStarted
    | SpeechStopped
    | Transcript
    | NoWords
    | TurnStarted
    | TurnEnded
    | Token
    | ToolCall
    | ToolResult
    | Usage
    | Finish
    | Sentence
    | Interrupted
    | Switched
    | ReplyStarted
    | ReplyFailed
    | SessionUpdated
    | Continuity
    | TurnPending
    | Mark
    | Played
    | CallStarted
    | Dtmf
    | CallEnded
    | HangUp
    | TransferCall
    | SendDtmf
)
"""Any item a voicekit stage yields."""
