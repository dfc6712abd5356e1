"""Where an LLM lives and how to talk to it, as one frozen value.

An :class:`Endpoint` says everything :func:`voicekit.llm.chat` needs to reach an OpenAI-compatible
``/chat/completions`` service: base URL, model, key, timeouts, retry budget, extra headers, the
session signals the service keys its memory on, what the service understands (the ``developer``
role, ``max_completion_tokens``) and default sampling parameters. Build one with a preset from
:mod:`voicekit.llm.presets` (``custom(...)``, ``hermes()``, ``ollama()``…) or directly; change it
with :meth:`Endpoint.replace`, which returns a new, re-validated value.

>>> ep = Endpoint(base_url="http://127.0.0.1:11434/v1/", model="llama3.2", api_key="sk-secret")
>>> ep.base_url, ep.chat_url
('http://127.0.0.1:11434/v1', 'http://127.0.0.1:11434/v1/chat/completions')
>>> "sk-secret" in repr(ep), ep.has_key
(False, True)
>>> ep.replace(api_key="EMPTY").has_key
False
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from .._errors import ConfigError
from .._frozen import FrozenDict, freeze
from .._secrets import redact_url, remember

if TYPE_CHECKING:
    from ..session import Session

__all__ = ["DEFAULT_USER_AGENT", "KEYLESS", "NO_RETRY", "Endpoint", "RetryPolicy"]


def _version() -> str:
    try:
        return metadata.version("voicekit")
    except metadata.PackageNotFoundError:  # pragma: no cover - source checkout without install
        return "0"


DEFAULT_USER_AGENT = f"voicekit/{_version()}"
"""The ``User-Agent`` voicekit sends unless an endpoint says otherwise."""

KEYLESS = frozenset({"", "EMPTY"})
"""Key values that mean "no key": no ``Authorization`` header is sent at all."""

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_RESERVED_BODY_KEYS = frozenset({"model", "messages", "stream", "stream_options", "tools"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a request may be tried again, and when.

    A retry only ever happens *before* a response has started: once the service has answered
    with a 2xx status, nothing is retried (a second attempt would start a new generation).

    ``connect``: extra attempts after the connection could not be made (refused, reset, DNS).
    ``status``: extra attempts after one of ``statuses`` (off by default).
    ``backoff``: seconds to wait before each extra attempt — unless the service answered with
    a ``Retry-After`` header: then that long, if it is at most ``max_retry_after`` seconds
    (a longer wait is not worth a caller's silence: the error is raised at once).

    >>> RetryPolicy().connect, RetryPolicy().status
    (1, 0)
    """

    connect: int = 1
    status: int = 0
    statuses: frozenset[int] = frozenset({429, 502, 503, 504})
    backoff: float = 0.1
    max_retry_after: float = 10.0

    def __post_init__(self) -> None:
        for name in ("connect", "status"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 5:
                raise ConfigError(
                    f"RetryPolicy.{name} must be an integer from 0 to 5, got {value!r}"
                )
        if not isinstance(self.backoff, int | float) or not 0 <= self.backoff <= 30:
            raise ConfigError(f"RetryPolicy.backoff must be 0–30 seconds, got {self.backoff!r}")
        wait = self.max_retry_after
        if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait <= 300:
            raise ConfigError(f"RetryPolicy.max_retry_after must be 0–300 seconds, got {wait!r}")
        object.__setattr__(self, "statuses", frozenset(int(s) for s in self.statuses))


NO_RETRY = RetryPolicy(connect=0, status=0)
"""Never try a request twice."""

SessionKeyFactory = Callable[["Session"], "str | None"]
"""A function of the Session giving the memory-scope header value (falsy: header not sent)."""


def _optional_positive(name: str, value: Any) -> None:
    if value is not None and (
        not isinstance(value, int | float) or isinstance(value, bool) or value <= 0
    ):
        raise ConfigError(f"Endpoint {name} must be a positive number of seconds, got {value!r}")


@dataclass(frozen=True, slots=True, repr=False)
class Endpoint:
    """An OpenAI-compatible ``/chat/completions`` service, as a frozen value.

    Connection: ``base_url`` (``http(s)://host[:port]/prefix``, no ``/chat/completions``),
    ``model``, ``api_key`` (``None``, ``""`` or ``"EMPTY"`` mean keyless: no ``Authorization``
    header), ``timeout`` (seconds of silence allowed while reading; also the write and pool
    budget), ``connect_timeout`` (default ``min(timeout, 10)``), ``headers`` (sent on every
    request), ``retry`` and ``user_agent``. ``name`` labels errors and logs.

    Session signals (each independent, each off unless configured; an empty value is not sent):

    * ``user_prefix``: the body field ``user = user_prefix + call_id``;
    * ``session_id_header``: a header ``session_id_prefix + call_id``;
    * ``session_key_header``: a memory-scope header whose value is the static ``session_key``,
      or ``session_key_prefix + caller_hash`` when ``session_key_from="caller_hash"``, or
      ``session_key_factory(session)`` — at most one of the three.

    Capabilities: ``developer_role`` (the service accepts ``role: "developer"``; otherwise such
    messages are sent as ``user``) and ``max_tokens_param`` (the body key ``max_tokens`` is sent
    as).

    Sampling defaults (sent only when set): ``temperature``, ``max_tokens``, ``top_p``, ``seed``,
    ``stop``, ``tool_choice``, ``parallel_tool_calls``, ``response_format``,
    ``frequency_penalty``, ``presence_penalty``; anything else goes in ``extra_body``.
    """

    base_url: str
    model: str
    api_key: str | None = None
    name: str = "custom"
    timeout: float = 60.0
    connect_timeout: float | None = None
    headers: Mapping[str, str] = field(default_factory=FrozenDict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    user_agent: str = DEFAULT_USER_AGENT
    # session signals
    user_prefix: str | None = None
    session_id_header: str | None = None
    session_id_prefix: str = ""
    session_key_header: str | None = None
    session_key: str | None = None
    session_key_from: Literal["caller_hash"] | None = None
    session_key_prefix: str = "patter-caller-"
    session_key_factory: SessionKeyFactory | None = None
    # capabilities
    developer_role: bool = False
    max_tokens_param: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens"
    # sampling
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: str | Sequence[str] | None = None
    tool_choice: str | Mapping[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: Mapping[str, Any] | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    extra_body: Mapping[str, Any] = field(default_factory=FrozenDict)

    def __post_init__(self) -> None:
        label = f"endpoint {self.name!r}"
        self._check_url(label)
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"{label} needs a model name, got {self.model!r}")
        key = self.api_key
        if key is not None:
            if not isinstance(key, str):
                raise ConfigError(f"{label}: api_key must be a string or None")
            key = key.strip()
            object.__setattr__(self, "api_key", None if key in KEYLESS else key)
            remember(self.api_key)
        if not isinstance(self.timeout, int | float) or self.timeout <= 0:
            raise ConfigError(f"{label}: timeout must be a positive number, got {self.timeout!r}")
        _optional_positive("connect_timeout", self.connect_timeout)
        self._check_headers(label)
        if not isinstance(self.retry, RetryPolicy):
            raise ConfigError(f"{label}: retry must be a RetryPolicy, got {self.retry!r}")
        self._check_session(label)
        if self.max_tokens_param not in ("max_completion_tokens", "max_tokens"):
            raise ConfigError(
                f"{label}: max_tokens_param must be 'max_completion_tokens' or 'max_tokens', "
                f"got {self.max_tokens_param!r}"
            )
        if isinstance(self.stop, list | tuple):
            object.__setattr__(self, "stop", tuple(self.stop))
        for name in ("tool_choice", "response_format"):
            value = getattr(self, name)
            if isinstance(value, Mapping):
                object.__setattr__(self, name, freeze(value))
        extra = freeze(dict(self.extra_body))
        clash = sorted(_RESERVED_BODY_KEYS & set(extra))
        if clash:
            raise ConfigError(f"{label}: extra_body may not set {', '.join(clash)}")
        object.__setattr__(self, "extra_body", extra)

    def _check_url(self, label: str) -> None:
        url = self.base_url
        if not isinstance(url, str) or not url.strip():
            raise ConfigError(
                f"{label} needs a base_url such as 'http://127.0.0.1:11434/v1', got {url!r}"
            )
        url = url.strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ConfigError(
                f"{label}: base_url must start with http:// or https://, got {self.base_url!r}"
            )
        if not parts.hostname:
            raise ConfigError(f"{label}: base_url {self.base_url!r} has no host name")
        if parts.query or parts.fragment:
            raise ConfigError(f"{label}: base_url must not carry a query or fragment")
        if url.endswith("/chat/completions"):
            raise ConfigError(
                f"{label}: base_url should stop before /chat/completions "
                f"(for example {url[: -len('/chat/completions')]!r})"
            )
        object.__setattr__(self, "base_url", url)
        userinfo = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else ""
        remember(userinfo, userinfo.partition(":")[2])

    def _check_headers(self, label: str) -> None:
        headers = dict(self.headers or {})
        for key, value in headers.items():
            if not isinstance(key, str) or not _HEADER_NAME.match(key):
                raise ConfigError(f"{label}: {key!r} is not a valid header name")
            if not isinstance(value, str):
                raise ConfigError(f"{label}: header {key!r} must have a string value")
        object.__setattr__(self, "headers", FrozenDict(headers))
        for name in ("session_id_header", "session_key_header"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not _HEADER_NAME.match(value)):
                raise ConfigError(f"{label}: {name} {value!r} is not a valid header name")

    def _check_session(self, label: str) -> None:
        if self.session_key_from is not None and self.session_key_from != "caller_hash":
            raise ConfigError(
                f"{label}: session_key_from must be 'caller_hash' or None, "
                f"got {self.session_key_from!r}"
            )
        if self.session_key_factory is not None and not callable(self.session_key_factory):
            raise ConfigError(f"{label}: session_key_factory must be a function of the Session")
        sources = [
            name
            for name in ("session_key", "session_key_from", "session_key_factory")
            if getattr(self, name)
        ]
        if len(sources) > 1:
            raise ConfigError(
                f"{label}: give at most one of session_key, session_key_from and "
                f"session_key_factory (got {' and '.join(sources)})"
            )
        if sources and not self.session_key_header:
            raise ConfigError(f"{label}: {sources[0]} needs session_key_header (the header name)")
        for name in ("user_prefix", "session_id_prefix", "session_key_prefix", "session_key"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{label}: {name} must be a string, got {type(value).__name__}")

    # -- derived values --------------------------------------------------------------------------

    @property
    def has_key(self) -> bool:
        """True when requests carry ``Authorization: Bearer <key>``."""
        return self.api_key is not None

    @property
    def chat_url(self) -> str:
        """``{base_url}/chat/completions``."""
        return self.base_url + "/chat/completions"

    @property
    def models_url(self) -> str:
        """``{base_url}/models`` (what :func:`voicekit.llm.warmup` asks for)."""
        return self.base_url + "/models"

    @property
    def effective_connect_timeout(self) -> float:
        """``connect_timeout``, or ``min(timeout, 10)`` when unset."""
        if self.connect_timeout is not None:
            return float(self.connect_timeout)
        return float(min(self.timeout, 10.0))

    def replace(self, **changes: Any) -> Endpoint:
        """A copy with some fields changed (validated again).

        >>> Endpoint(base_url="http://h/v1", model="a").replace(model="b").model
        'b'
        """
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(
                f"Endpoint has no option {', '.join(map(repr, unknown))}; "
                f"options are: {', '.join(sorted(known))}"
            )
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        signals = []
        if self.user_prefix is not None:
            signals.append("user")
        if self.session_id_header:
            signals.append(self.session_id_header)
        if self.session_key_header:
            source = (
                "caller_hash"
                if self.session_key_from
                else "factory"
                if self.session_key_factory
                else "static"
                if self.session_key
                else "unset"
            )
            signals.append(f"{self.session_key_header}({source})")
        parts = [
            f"name={self.name!r}",
            f"base_url={redact_url(self.base_url)!r}",
            f"model={self.model!r}",
            f"key={'<set>' if self.has_key else '<none>'}",
            f"timeout={self.timeout}",
        ]
        if self.headers:
            parts.append(f"headers={sorted(self.headers)}")
        if signals:
            parts.append(f"session=[{', '.join(signals)}]")
        return f"Endpoint({', '.join(parts)})"

    __str__ = __repr__


def endpoint_options() -> tuple[str, ...]:
    """The names :class:`Endpoint` accepts (what presets take as ``**options``)."""
    return tuple(f.name for f in dataclasses.fields(Endpoint))
