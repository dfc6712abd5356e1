"""Call control on the carrier's side: what :class:`~voicekit.HangUp`,
:class:`~voicekit.TransferCall` and :class:`~voicekit.SendDtmf` become on each carrier.

Pure functions build each carrier's REST request (:class:`~._rest.RestRequest`) or stream
message; :func:`outcome` reads the carrier's answer (a call that has already ended is not an
error: Twilio's 404/20404, Telnyx's 90018, Plivo's 404); :func:`perform` is the thin layer the
connection calls once everything sent before the item has been played.

====================  ==========================  ==========================  =====================
carrier               hang up                     transfer                    send DTMF
====================  ==========================  ==========================  =====================
Twilio                REST ``Status=completed``   REST ``Twiml=<Dial>``       REST ``<Play digits>``
                                                                              then the stream again
Telnyx                Call Control ``hangup``     Call Control ``transfer``   ``send_dtmf``
Plivo                 REST ``DELETE`` the call    REST transfer (aleg_url)    ``sendDTMF`` (socket)
====================  ==========================  ==========================  =====================

>>> twilio_hangup("AC1", "CA9")
RestRequest(method='POST', path='/2010-04-01/Accounts/AC1/Calls/CA9.json', form={'Status': 'completed'}, json=None, action='hangup')
>>> print(dial_twiml("+15550001111"))
<?xml version="1.0" encoding="UTF-8"?><Response><Dial>+15550001111</Dial></Response>
>>> telnyx_action("v3:abc", "send_dtmf", {"digits": "12#"}).path
'/v2/calls/v3:abc/actions/send_dtmf'
>>> outcome("twilio", Reply(404, {"code": 20404, "message": "not found"}))
'ended'
"""  # noqa: E501

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

from .._errors import ConfigError
from ..events import CallStarted, HangUp, SendDtmf, TransferCall
from . import plivo
from ._rest import CarrierApi, Reply, RestRequest, api_from_env, send, status_error

__all__ = [
    "CallControl",
    "dial_twiml",
    "outcome",
    "perform",
    "play_digits_twiml",
    "plivo_hangup",
    "plivo_transfer",
    "telnyx_action",
    "twilio_hangup",
    "twilio_update",
]

_TWILIO_DIGITS = re.compile(r"[0-9*#wW]+")
_TELNYX_DIGITS = re.compile(r"[0-9*#A-DwW]+")
_PLIVO_DIGITS = re.compile(r"[0-9*#A-D]+")
_NUMBER = re.compile(r"\+?[0-9]{3,15}")


def _seg(value: str, what: str) -> str:
    """One path segment (an id), checked and quoted."""
    if not isinstance(value, str) or not value or "/" in value:
        raise ConfigError(f"call control: {what} must be a non-empty id, got {value!r}")
    return quote(value, safe=":")


def _target(to: str) -> str:
    """A transfer target: an E.164-ish number or a ``sip:`` address."""
    if isinstance(to, str) and (_NUMBER.fullmatch(to) or to.startswith(("sip:", "sips:"))):
        return to
    raise ConfigError(
        f"call control: transfer target must be a phone number or sip: URI, got {to!r}"
    )


def _digits(digits: str, pattern: re.Pattern[str], carrier: str, allowed: str) -> str:
    if not isinstance(digits, str) or not pattern.fullmatch(digits):
        raise ConfigError(f"{carrier}: send DTMF takes {allowed}, got {digits!r}")
    return digits


# -- Twilio ---------------------------------------------------------------------------------


def twilio_update(account: str, call_sid: str, form: Mapping[str, str], action: str) -> RestRequest:
    """Twilio's "update a call" request (``POST …/Calls/{sid}.json``) with ``form``."""
    account, sid = _seg(account, "account SID"), _seg(call_sid, "call SID")
    path = f"/2010-04-01/Accounts/{account}/Calls/{sid}.json"
    return RestRequest("POST", path, form=dict(form), action=action)


def twilio_hangup(account: str, call_sid: str) -> RestRequest:
    """End a Twilio call: update it with ``Status=completed``."""
    return twilio_update(account, call_sid, {"Status": "completed"}, "hangup")


def dial_twiml(to: str, *, caller_id: str = "") -> str:
    """The TwiML that transfers the call to ``to`` (a number, or a ``sip:`` address).

    >>> print(dial_twiml("sip:desk@pbx.example", caller_id="+15550002222"))
    <?xml version="1.0" encoding="UTF-8"?><Response><Dial callerId="+15550002222"><Sip>sip:desk@pbx.example</Sip></Dial></Response>
    """  # noqa: E501
    target = _target(to)
    inner = f"<Sip>{escape(target)}</Sip>" if target.startswith("sip") else escape(target)
    attrs = f" callerId={quoteattr(caller_id)}" if caller_id else ""
    return f'<?xml version="1.0" encoding="UTF-8"?><Response><Dial{attrs}>{inner}</Dial></Response>'


def play_digits_twiml(digits: str, then: str = "") -> str:
    """The TwiML that plays ``digits`` into the call (``w``: a half-second pause), then runs
    ``then`` (the ``<Connect><Stream>…</Connect>`` that brings the call back to the agent;
    without it the call ends after the digits).

    >>> print(play_digits_twiml("1w2#"))
    <?xml version="1.0" encoding="UTF-8"?><Response><Play digits="1w2#"/></Response>
    """
    keys = _digits(digits, _TWILIO_DIGITS, "twilio", "0-9, *, # and w (Twilio plays no A-D)")
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        f"<Play digits={quoteattr(keys)}/>{then}</Response>"
    )


# -- Telnyx ---------------------------------------------------------------------------------


def telnyx_action(call_control_id: str, action: str, body: Mapping[str, Any]) -> RestRequest:
    """A Telnyx Call Control command: ``POST /v2/calls/{id}/actions/{action}``."""
    path = f"/v2/calls/{_seg(call_control_id, 'call control id')}/actions/{action}"
    return RestRequest("POST", path, json=dict(body), action=action)


# -- Plivo ----------------------------------------------------------------------------------


def plivo_hangup(auth_id: str, call_uuid: str) -> RestRequest:
    """End a Plivo call: ``DELETE /v1/Account/{auth_id}/Call/{uuid}/``."""
    path = f"/v1/Account/{_seg(auth_id, 'auth id')}/Call/{_seg(call_uuid, 'call uuid')}/"
    return RestRequest("DELETE", path, action="hangup")


def plivo_transfer(auth_id: str, call_uuid: str, aleg_url: str) -> RestRequest:
    """Transfer a Plivo call: its A leg fetches new XML (a ``<Dial>``) from ``aleg_url``."""
    if not isinstance(aleg_url, str) or not aleg_url.startswith(("https://", "http://")):
        raise ConfigError(f"plivo: transfer needs an http(s) aleg_url, got {aleg_url!r}")
    path = f"/v1/Account/{_seg(auth_id, 'auth id')}/Call/{_seg(call_uuid, 'call uuid')}/"
    body = {"legs": "aleg", "aleg_url": aleg_url, "aleg_method": "POST"}
    return RestRequest("POST", path, json=body, action="transfer")


# -- the answer -----------------------------------------------------------------------------


def outcome(carrier: str, reply: Reply, action: str = "") -> str:
    """``"done"`` (2xx), ``"ended"`` (the call had already ended: not an error) or
    ``"failed"``.

    >>> outcome("telnyx", Reply(422, {"errors": [{"code": "90018", "title": "Call has already ended"}]}))
    'ended'
    >>> outcome("plivo", Reply(503, {}))
    'failed'
    """  # noqa: E501
    status, body = reply.status, reply.body
    if 200 <= status < 300:
        return "done"
    if carrier == "twilio":
        code = str(body.get("code", ""))
        if status == 404 or code == "20404" or (action == "hangup" and code == "21220"):
            return "ended"
    elif carrier == "telnyx":
        errors = body.get("errors")
        codes = {str(e.get("code")) for e in errors if isinstance(e, dict)} if isinstance(
            errors, list) else set()
        if status == 404 or (status == 422 and "90018" in codes):
            return "ended"
    elif status == 404:
        return "ended"
    return "failed"


@dataclass(frozen=True, slots=True)
class CallControl:
    """How a connection acts on call-control items. ``api``: the carrier's REST API (None:
    from the environment at first use, :func:`~._rest.api_from_env`); ``resume(started)``:
    Twilio only, the ``<Connect><Stream>`` TwiML that brings the call back to the stream after
    ``<Play digits>``; ``transfer_url(to)``: Plivo only, a URL answering with a ``<Dial>`` to
    ``to``; ``caller_id``: the number a Twilio transfer shows."""

    api: CarrierApi | None = None
    resume: Callable[[CallStarted], str] | None = field(default=None, compare=False)
    transfer_url: Callable[[str], str] | None = field(default=None, compare=False)
    caller_id: str = ""


def _request(
    control: CallControl, api: CarrierApi, started: CallStarted, item: Any
) -> RestRequest | None:
    call_id = started.call_id
    if api.carrier == "twilio":
        if isinstance(item, HangUp):
            return twilio_hangup(api.account, call_id)
        if isinstance(item, TransferCall):
            twiml = dial_twiml(item.to, caller_id=control.caller_id)
            return twilio_update(api.account, call_id, {"Twiml": twiml}, "transfer")
        then = control.resume(started) if control.resume is not None else ""
        twiml = play_digits_twiml(item.digits, then)
        return twilio_update(api.account, call_id, {"Twiml": twiml}, "send_dtmf")
    if api.carrier == "telnyx":
        if isinstance(item, HangUp):
            return telnyx_action(call_id, "hangup", {})
        if isinstance(item, TransferCall):
            return telnyx_action(call_id, "transfer", {"to": _target(item.to)})
        keys = _digits(item.digits, _TELNYX_DIGITS, "telnyx", "0-9, *, #, A-D, w and W")
        return telnyx_action(call_id, "send_dtmf", {"digits": keys, "duration_millis": 250})
    if isinstance(item, HangUp):
        return plivo_hangup(api.account, call_id)
    if isinstance(item, TransferCall):
        if control.transfer_url is None:
            raise ConfigError(
                "plivo: a transfer needs a URL that answers with <Dial> (serve.app with a "
                "public_url serves one at /plivo/transfer)"
            )
        return plivo_transfer(api.account, call_id, control.transfer_url(_target(item.to)))
    return None  # Plivo's DTMF goes on the stream socket


async def perform(
    control: CallControl,
    started: CallStarted,
    item: HangUp | TransferCall | SendDtmf,
    send_wire: Callable[[str], Awaitable[bool]],
) -> str:
    """Carry out ``item`` on the call ``started`` now: ``"done"``, or ``"ended"`` when the
    carrier says the call had already ended. A refusal or an unreachable API raises
    (:class:`~voicekit.ProviderStatusError`, :class:`~voicekit.ProviderTimeout`,
    :class:`~voicekit.ProviderConnectError`; a missing credential
    :class:`~voicekit.ConfigError`)."""
    carrier = started.carrier
    if carrier == "plivo" and isinstance(item, SendDtmf):
        sent = await send_wire(plivo.dtmf_message(item.digits))
        return "done" if sent else "ended"
    api = control.api if control.api is not None else api_from_env(carrier)
    if api.carrier != carrier:
        raise ConfigError(f"call control: a {carrier} call cannot use the {api.carrier} API")
    api.check()
    request = _request(control, api, started, item)
    if request is None:
        return "done"
    reply = await send(api, request)
    result = outcome(carrier, reply, request.action)
    if result == "failed":
        raise status_error(api, request, reply)
    return result
