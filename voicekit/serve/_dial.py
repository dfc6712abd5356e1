"""Outbound calls and the carrier-side routes of call control.

:func:`dial` places a call through the carrier's REST API; the carrier then fetches the same
answer route as an inbound call (``/twilio/voice``, ``/telnyx/voice``, ``/plivo/voice``), which
connects it to the stream route with a signed single-call token, so an outbound call reaches
``on_call`` exactly like an inbound one.

Answering machines (``voicemail``):

* ``"message"`` — leave a message after the beep. Twilio: synchronous detection
  with ``MachineDetection=DetectMessageEnd``: the carrier fetches the answer route once a
  person answered or a machine's greeting ended (its beep), with ``AnsweredBy`` in the form;
  the answer route passes it on as the start parameter ``answered_by`` (``human``,
  ``machine_end_beep``, ``machine_end_silence``, ``machine_end_other``, ``fax``,
  ``unknown``), so the agent reads ``call.started.parameters["answered_by"]`` — no extra event.
* ``"hangup"`` — hang up on machines. Twilio: asynchronous detection
  (``AsyncAmd=true``): the call is connected at once (a person hears the agent without delay)
  and the result is posted to ``/twilio/amd`` (:func:`amd_route`), which hangs up through the
  REST API when a machine (or a fax) answered. Telnyx (TeXML): the same asynchronous detection,
  its result posted to ``/telnyx/amd``, which hangs up through Call Control. Plivo:
  ``machine_detection=hangup``, Plivo hangs up itself.

Telnyx and Plivo do not tell the answer route who answered, so ``"message"`` is Twilio's only.

>>> r = dial_request("twilio", "+15550001111", "+15550002222",
...                  public_url="https://vk.example", account="AC1", voicemail="hangup")
>>> r.path, r.form["Url"], r.form["AsyncAmd"]
('/2010-04-01/Accounts/AC1/Calls.json', 'https://vk.example/twilio/voice', 'true')
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from .._errors import ConfigError
from .._secrets import redact
from ..events import CallStarted
from ..session import Session
from ..transports import twilio
from ..transports._control import outcome, telnyx_action, twilio_hangup
from ..transports._rest import CarrierApi, RestRequest, api_from_env, send, status_error
from ..transports._token import make_token

__all__ = [
    "MACHINE_ANSWERS",
    "VOICEMAIL",
    "Dialed",
    "DtmfResumes",
    "amd_route",
    "dial",
    "dial_request",
    "plivo_transfer_route",
    "signed_transfer_url",
    "stream_url_of",
    "twilio_resume",
]

_log = logging.getLogger("voicekit.serve")

VOICEMAIL = ("message", "hangup")
"""The voicemail policies of :func:`dial`."""
MACHINE_ANSWERS = frozenset(
    {"machine", "machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other",
     "fax"}
)
"""The ``AnsweredBy`` values (Twilio's, and Telnyx TeXML's, which adds ``machine``) that are
not a person."""
_NUMBER = re.compile(r"\+?[0-9]{3,15}")


@dataclass(frozen=True, slots=True)
class Dialed:
    """A call the carrier accepted to place: ``call_id`` is its id (Twilio's CallSid,
    Telnyx's call sid, Plivo's request uuid), ``status`` what the carrier said (``queued``)."""

    carrier: str
    call_id: str
    status: str = ""


def _party(value: str, what: str) -> str:
    if isinstance(value, str) and (_NUMBER.fullmatch(value) or value.startswith("sip:")):
        return value
    raise ConfigError(f"dial: {what} must be a phone number (+15551230000) or sip:…, got {value!r}")


def _base(public_url: str) -> str:
    if not isinstance(public_url, str) or not public_url.startswith(("https://", "http://")):
        raise ConfigError(
            "dial: public_url must be the http(s):// address of the voicekit server the "
            f"carrier can reach, got {public_url!r}"
        )
    return public_url.rstrip("/")


def dial_request(
    carrier: str,
    to: str,
    from_: str,
    *,
    public_url: str,
    account: str = "",
    voicemail: str | None = None,
    machine_detection: str | None = None,
    app_id: str = "",
) -> RestRequest:
    """The REST request that places a call from ``from_`` to ``to`` whose answer is
    ``{public_url}/{carrier}/voice`` (pure; see the module docstring for ``voicemail``).
    ``machine_detection`` overrides Twilio/Telnyx's ``MachineDetection`` (``Enable`` or
    ``DetectMessageEnd``); ``app_id`` is the Telnyx TeXML application id."""
    to, from_ = _party(to, "to"), _party(from_, "from_")
    base = _base(public_url)
    if voicemail is not None and voicemail not in VOICEMAIL:
        raise ConfigError(f"dial: voicemail must be one of {VOICEMAIL} or None, got {voicemail!r}")
    if machine_detection not in (None, "Enable", "DetectMessageEnd"):
        raise ConfigError(
            f"dial: machine_detection must be Enable or DetectMessageEnd, got {machine_detection!r}"
        )
    answer = f"{base}/{carrier}/voice"
    if carrier == "telnyx" and voicemail == "message":
        raise ConfigError(
            "dial: telnyx does not tell the answer route who answered; voicemail='message' "
            "works on twilio (telnyx: 'hangup' or None)"
        )
    if carrier in ("twilio", "telnyx"):
        form: dict[str, Any] = {"To": to, "From": from_, "Url": answer, "Method": "POST"}
        if voicemail == "message":
            form["MachineDetection"] = machine_detection or "DetectMessageEnd"
        elif voicemail == "hangup":
            form.update(MachineDetection=machine_detection or "Enable", AsyncAmd="true",
                        AsyncAmdStatusCallback=f"{base}/{carrier}/amd",
                        AsyncAmdStatusCallbackMethod="POST")
        elif machine_detection:
            form["MachineDetection"] = machine_detection
        if carrier == "twilio":
            if not account:
                raise ConfigError("dial: twilio needs the account SID (TWILIO_ACCOUNT_SID)")
            path = f"/2010-04-01/Accounts/{quote(account, safe='')}/Calls.json"
            return RestRequest("POST", path, form=form, action="dial")
        if not app_id:
            raise ConfigError("dial: telnyx needs the TeXML application id (TELNYX_APP_ID)")
        if "AsyncAmd" in form:
            form["AsyncAmd"] = True  # a JSON boolean in Telnyx's API
        return RestRequest("POST", f"/v2/texml/calls/{quote(app_id, safe='')}", json=form,
                           action="dial")
    if carrier == "plivo":
        if not account:
            raise ConfigError("dial: plivo needs the auth id (PLIVO_AUTH_ID)")
        if voicemail == "message":
            raise ConfigError(
                "dial: plivo does not tell the answer route who answered; voicemail='message' "
                "works on twilio and telnyx (plivo: 'hangup' or None)"
            )
        body: dict[str, Any] = {"from": from_, "to": to, "answer_url": answer,
                                "answer_method": "POST"}
        if voicemail == "hangup":
            body["machine_detection"] = "hangup"
        return RestRequest("POST", f"/v1/Account/{quote(account, safe='')}/Call/", json=body,
                           action="dial")
    raise ConfigError(f"dial: carrier must be twilio, telnyx or plivo, got {carrier!r}")


def _call_id(body: Mapping[str, Any]) -> str:
    data = body.get("data") if isinstance(body.get("data"), dict) else body
    assert isinstance(data, Mapping)
    for key in ("sid", "call_sid", "request_uuid", "call_control_id", "CallSid"):
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, list) and value and isinstance(value[0], str):
            return value[0]
    return ""


async def dial(
    to: str,
    from_: str,
    *,
    carrier: str = "twilio",
    public_url: str,
    voicemail: str | None = None,
    machine_detection: str | None = None,
    api: CarrierApi | None = None,
    app_id: str | None = None,
) -> Dialed:
    """Place an outbound call from ``from_`` (your carrier number) to ``to`` through
    ``carrier``'s REST API; the call is answered by the voicekit server at ``public_url``
    (its ``/{carrier}/voice`` route, as an inbound call), so it reaches that server's
    ``on_call``. ``voicemail``: ``"message"``, ``"hangup"`` or None (no machine detection),
    see the module docstring. ``api``: where the REST API is and the credentials (default:
    the environment, :data:`voicekit.transports._rest.ENV`); ``app_id``: the Telnyx TeXML
    application (default ``TELNYX_APP_ID``).

    Raises :class:`~voicekit.ConfigError` for a bad number or a missing credential,
    :class:`~voicekit.ProviderStatusError` when the carrier refuses (its own words quoted),
    :class:`~voicekit.ProviderTimeout`/:class:`~voicekit.ProviderConnectError` when it does
    not answer.
    """
    api = api if api is not None else api_from_env(carrier)
    if api.carrier != carrier:
        raise ConfigError(f"dial: the api is {api.carrier}'s, not {carrier}'s")
    api.check()
    request = dial_request(
        carrier, to, from_, public_url=public_url, account=api.account, voicemail=voicemail,
        machine_detection=machine_detection,
        app_id=app_id if app_id is not None else os.environ.get("TELNYX_APP_ID", ""),
    )
    reply = await send(api, request)
    if not 200 <= reply.status < 300:
        raise status_error(api, request, reply)
    call_id = _call_id(reply.body)
    status = reply.body.get("status") or reply.body.get("message") or ""
    return Dialed(carrier, call_id, str(status))


# -- routes the serve app mounts ------------------------------------------------------------


def amd_route(
    *,
    verify: Callable[[Request, bytes, dict[str, str]], bool] | None,
    control: Callable[[], CarrierApi],
    carrier: str = "twilio",
) -> Route:
    """``POST /{carrier}/amd`` (Twilio, Telnyx TeXML): the asynchronous answering-machine
    result (``CallSid``, ``AnsweredBy``). When a machine answered, the call is hung up through
    the REST API (the ``"hangup"`` voicemail policy: Twilio's ``Status=completed``, Telnyx's
    Call Control ``hangup``; a call that already ended is fine); answers 204 (Telnyx: 200, which
    it asks for). ``verify(request, raw_body, form)`` checks the carrier's signature (None: dev
    mode)."""
    if carrier not in ("twilio", "telnyx"):
        raise ConfigError(f"amd_route: carrier must be twilio or telnyx, got {carrier!r}")

    async def amd(request: Request) -> Response:
        raw = await request.body()
        form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        if verify is not None and not verify(request, raw, form):
            _log.warning("%s AMD callback refused: bad signature", carrier)
            return PlainTextResponse("bad signature", status_code=403)
        call_sid, answered_by = form.get("CallSid", ""), form.get("AnsweredBy", "")
        if not call_sid or not answered_by:
            return PlainTextResponse("no CallSid or AnsweredBy", status_code=400)
        _log.info("%s call %s answered by %s", carrier, call_sid, answered_by)
        if answered_by in MACHINE_ANSWERS:
            api = control()
            try:
                if carrier == "twilio":
                    request_ = twilio_hangup(api.account, call_sid)
                else:
                    request_ = telnyx_action(call_sid, "hangup", {})
                reply = await send(api, request_)
                if outcome(carrier, reply, "hangup") == "failed":
                    raise status_error(api, request_, reply)
            except Exception as exc:  # the carrier cannot be reached: say it, answer anyway
                _log.error("%s: could not hang up on the machine at call %s: %s",
                           carrier, call_sid, redact(str(exc)))
                return PlainTextResponse("hang-up failed", status_code=502)
        return Response(status_code=204 if carrier == "twilio" else 200)

    return Route(f"/{carrier}/amd", amd, methods=["POST"])


def _mac(key: bytes, to: str) -> str:
    return hmac.new(key, f"transfer\n{to}".encode(), hashlib.sha256).hexdigest()[:32]


def signed_transfer_url(base: str, key: bytes, to: str) -> str:
    """The URL of :func:`plivo_transfer_route` that dials ``to`` (signed: the route dials
    nothing else).

    >>> signed_transfer_url("https://vk.example", b"k" * 32, "+15550001111")[:60]
    'https://vk.example/plivo/transfer?to=%2B15550001111&sig=12a2'
    """
    return f"{base.rstrip('/')}/plivo/transfer?to={quote(to, safe='')}&sig={_mac(key, to)}"


def plivo_transfer_route(key: bytes) -> Route:
    """``POST /plivo/transfer?to=…&sig=…``: the XML a Plivo call fetches on a transfer, a
    ``<Dial>`` to ``to`` (a number, or a ``sip:`` address) — only for URLs this server signed."""

    async def transfer(request: Request) -> Response:
        to = request.query_params.get("to", "")
        given = request.query_params.get("sig", "")
        if not to or not hmac.compare_digest(_mac(key, to), given):
            return PlainTextResponse("bad transfer link", status_code=403)
        target = f"<User>{escape(to)}</User>" if to.startswith("sip:") else (
            f"<Number>{escape(to)}</Number>")
        xml = f'<?xml version="1.0" encoding="UTF-8"?><Response><Dial>{target}</Dial></Response>'
        return Response(xml, media_type="application/xml")

    return Route("/plivo/transfer", transfer, methods=["GET", "POST"])


def twilio_resume(
    stream_url: str,
    key: bytes | None,
    ttl: float = 300.0,
    on_resume: Callable[[str], None] | None = None,
) -> Callable[[CallStarted], str]:
    """For a Twilio ``SendDtmf``: the ``<Connect><Stream>`` TwiML (with a fresh single-call
    token when ``key`` is given, and the start parameter ``resumed=dtmf``) that brings the call
    back to the stream after the digits played. The new stream is a new connection: a new
    ``on_call`` for the same call id, which :class:`DtmfResumes` hands the Session so far
    (``on_resume(call_id)`` is told each time)."""
    if not stream_url.startswith(("wss://", "ws://")):
        raise ConfigError(f"twilio: the stream URL must be ws(s)://…, got {stream_url!r}")

    def resume(started: CallStarted) -> str:
        parameters = {"caller": started.caller, "callee": started.callee, "resumed": "dtmf"}
        if key is not None:
            parameters[twilio.TOKEN_PARAMETER] = make_token(key, started.call_id, ttl=ttl)
        document = twilio.twiml(stream_url, parameters)
        start = document.index("<Connect>")
        if on_resume is not None:
            on_resume(started.call_id)
        return document[start : document.rindex("</Response>")]

    return resume


class DtmfResumes:
    """The Twilio calls that come back on a new stream after ``<Play digits>``: the final
    Session of the stream that ended is held (at most ``size`` calls, ``ttl`` seconds) and
    handed to the new stream of the same call (start parameter ``resumed=dtmf``), so the
    conversation goes on where it was."""

    __slots__ = ("_held", "_ready", "size", "ttl")

    def __init__(self, ttl: float = 60.0, size: int = 1000) -> None:
        self.ttl, self.size = ttl, size
        self._ready: dict[str, tuple[float, asyncio.Event]] = {}
        self._held: dict[str, Session] = {}

    def _prune(self) -> None:
        now = time.monotonic()
        for call_id in [c for c, (t, _) in self._ready.items() if now - t > self.ttl]:
            self._ready.pop(call_id, None)
            self._held.pop(call_id, None)
        while len(self._ready) > self.size:
            oldest = next(iter(self._ready))
            self._ready.pop(oldest)
            self._held.pop(oldest, None)

    def expect(self, call_id: str) -> None:
        """Digits were sent on ``call_id``: its stream will end and come back."""
        self._prune()
        self._ready[call_id] = (time.monotonic(), asyncio.Event())

    def ended(self, session: Session) -> None:
        """A stream ended with ``session``: held if its call is expected back."""
        entry = self._ready.get(session.call_id or "")
        if entry is not None:
            self._held[session.call_id or ""] = session
            entry[1].set()

    async def take(self, started: CallStarted, wait: float = 2.0) -> Session | None:
        """The Session to go on from, for a stream that says ``resumed=dtmf`` (waiting up to
        ``wait`` seconds for the old stream to end); None otherwise."""
        if started.parameters.get("resumed") != "dtmf":
            return None
        entry = self._ready.get(started.call_id)
        if entry is None:
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(entry[1].wait(), wait)
        self._ready.pop(started.call_id, None)
        return self._held.pop(started.call_id, None)


def stream_url_of(websocket: Any, public_url: str | None, path: str) -> str:
    """The ``ws(s)://`` URL of ``path`` on this server, as the carrier reaches it (``""`` when
    the request does not say where that is)."""
    if public_url:
        parts = urlsplit(public_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}{path}"
    headers = getattr(websocket, "headers", {})
    host = headers.get("host", "") if hasattr(headers, "get") else ""
    proto = headers.get("x-forwarded-proto", "") if hasattr(headers, "get") else ""
    scheme = "wss" if proto == "https" else getattr(getattr(websocket, "url", None), "scheme", "ws")
    return f"{scheme}://{host}{path}" if host else ""
