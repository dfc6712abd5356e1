"""The exceptions voicekit raises, in one place.

Every error voicekit raises on purpose is a :class:`VoicekitError`. Errors about bad *input*
(a value the caller passed) are also ``ValueError``; errors about a remote service are also
``ConnectionError`` where that is what happened, so ``except ValueError`` keeps working for code
that does not know voicekit::

    VoicekitError
    ├── StageError            a stage raised a non-voicekit exception; the original is __cause__
    ├── AudioError            bad audio: corrupt/empty file, wrong dtype/rate, NaN (ValueError)
    ├── ConfigError           a bad endpoint, preset or option value (ValueError)
    ├── SessionError          an impossible Session update (ValueError)
    ├── ProtocolError         a peer sent a message out of sequence or malformed (ValueError)
    └── ProviderError         an LLM / STT / TTS service failed
        ├── ProviderConnectError   could not connect, or the connection dropped (ConnectionError)
        │   └── ProviderNoResponse connected, but closed without an answer (not retried)
        ├── ProviderTimeout        no answer in time (TimeoutError)
        ├── ProviderStatusError    non-2xx status; ``.status_code`` and a truncated ``.body``
        ├── ProviderStreamError    the stream itself was malformed or truncated
        │   └── EventTooLarge      one SSE event over the size cap (16 MiB)
        └── ProviderResponseError  the service reported an error inside a well-formed stream

Every :class:`VoicekitError` has a ``stage`` attribute: the name of the pipeline stage it came
out of, filled in by the stream core when the error crosses a stage (``None`` outside pipelines).

Audio that can be used but is not what it claims to be (a file shorter than its header says) is
an :class:`AudioWarning`, issued with :func:`warnings.warn`.
"""

from __future__ import annotations

from ._secrets import redact

__all__ = [
    "AudioError",
    "AudioWarning",
    "ConfigError",
    "EventTooLarge",
    "ProtocolError",
    "ProviderConnectError",
    "ProviderError",
    "ProviderNoResponse",
    "ProviderResponseError",
    "ProviderStatusError",
    "ProviderStreamError",
    "ProviderTimeout",
    "SessionError",
    "StageError",
    "VoicekitError",
]


class VoicekitError(Exception):
    """Base class of every error voicekit raises on purpose."""

    stage: str | None = None

    def __str__(self) -> str:
        message = super().__str__()
        if self.stage and not message.startswith(f"[{self.stage}]") and _public(self.stage):
            return f"[{self.stage}] {message}"
        return message


def _public(stage: str) -> bool:
    """A stage name worth showing: voicekit's own private helpers (``source _llm_events``)
    mean nothing to a user, so they stay in ``.stage`` but not in the message."""
    return not stage.rsplit(" ", 1)[-1].startswith("_")


class StageError(VoicekitError):
    """A stage raised an exception that is not a :class:`VoicekitError`.

    The original exception is ``__cause__`` (and ``.original``); the message names the stage.
    """

    def __init__(self, stage: str, original: BaseException) -> None:
        super().__init__(f"{type(original).__name__}: {original}")
        self.stage = stage
        self.original = original


class AudioError(VoicekitError, ValueError):
    """Audio that cannot be used as given: the message says what was wrong and where."""


class AudioWarning(UserWarning):
    """Audio that is used, but is not what it claims: e.g. a file shorter than its header says.

    Turn it into an error with ``warnings.simplefilter("error", voicekit.AudioWarning)``.
    """


class ConfigError(VoicekitError, ValueError):
    """A configuration value (endpoint, preset, option) that cannot work."""


class SessionError(VoicekitError, ValueError):
    """A Session update that would make the conversation inconsistent."""


class ProtocolError(VoicekitError, ValueError):
    """A peer sent a message that breaks the protocol (out of sequence, malformed)."""


class ProviderError(VoicekitError):
    """A remote or local model service (LLM, STT, TTS) failed.

    ``provider`` names the endpoint (never its key).
    """

    def __init__(self, message: str, *, provider: str | None = None) -> None:
        super().__init__(redact(message))  # an echoed key or a user:pass@ URL never shows
        self.provider = provider


class ProviderConnectError(ProviderError, ConnectionError):
    """The service could not be reached, or the connection dropped."""


class ProviderNoResponse(ProviderConnectError):
    """The service accepted the connection, then closed it without answering. Never retried:
    the request may have run on the server."""


class ProviderTimeout(ProviderError, TimeoutError):
    """The service did not answer in time."""


class ProviderStatusError(ProviderError):
    """The service answered with a non-2xx status."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: str = "",
        provider: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, provider=provider)
        self.status_code = status_code
        self.body = redact(body)
        self.retry_after = retry_after
        """Seconds the service asked to wait (its ``Retry-After`` header), if it said."""


class ProviderStreamError(ProviderError):
    """The response stream was malformed: bad JSON, wrong content type, cut off early."""


class EventTooLarge(ProviderStreamError):
    """One server-sent event (or one line of it) is longer than the decoder's cap
    (``voicekit.llm.MAX_EVENT_BYTES``, 16 MiB, by default)."""


class ProviderResponseError(ProviderError):
    """The service reported an error inside an otherwise well-formed stream."""

    def __init__(
        self, message: str, *, code: str | None = None, provider: str | None = None
    ) -> None:
        super().__init__(message, provider=provider)
        self.code = code
