"""Call control on the carrier's side (issue 14 items 1-3): a ``HangUp``, ``TransferCall`` or
``SendDtmf`` on a call's outbound stream is carried out once everything before it has been
played — by the carrier's acknowledgements where there are some — through the carrier's REST
API (a local fake, :mod:`servers.fake_rest`) or its stream.

Each call is simulated over real sockets: ``voicekit.serve.app`` under uvicorn, a fake carrier
peer that plays the audio on its own clock and echoes marks when their audio has played, and
the fake REST API on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any
from xml.etree import ElementTree

import httpx
import numpy as np
import pytest
from servers import fake_rest, fake_twilio
from servers.fake_carrier import Carrier, Record
from servers.fake_plivo import PlivoCall
from servers.fake_rest import FakeRest
from servers.fake_telnyx import TelnyxCall
from servers.fake_twilio import TwilioCall
from servers.serving import serving, voicekit_tasks

import voicekit as vk
import voicekit.serve
from voicekit import ConfigError, ProviderStatusError, ProviderTimeout
from voicekit.events import AudioChunk, HangUp, Mark, SendDtmf, SessionUpdated, TransferCall
from voicekit.serve import CarrierApi

TWILIO_CALL = "CAfake0000000000000000000000000042"
TELNYX_CALL = "v3:fake-control-id-42"
PLIVO_CALL = "fake-call-uuid-42"
GOODBYE = 1.0  # seconds of goodbye audio before the action


def tone(seconds: float, rate: int = 16000, hz: float = 440.0) -> list[AudioChunk]:
    """``seconds`` of a tone as 20 ms chunks (a TTS's output, as the agent yields it)."""
    n = int(seconds * rate)
    samples = (6000 * np.sin(2 * np.pi * hz * np.arange(n) / rate)).astype(np.int16)
    step = rate // 50
    return [AudioChunk(samples[i : i + step], rate, i / rate) for i in range(0, n, step)]


class Script:
    """An ``on_call`` whose agent says a goodbye (audio, then a mark) and then ``items``; it
    records whether ``call.outbound`` returned or raised."""

    def __init__(self, *items: Any, seconds: float = GOODBYE) -> None:
        self.items, self.seconds = items, seconds
        self.outcome: list[Any] = []
        self.done = asyncio.Event()

    async def on_call(self, call: Any) -> None:
        async def reply() -> AsyncIterator[Any]:
            for chunk in tone(self.seconds):
                yield chunk
            yield Mark("goodbye", "Goodbye!")
            for item in self.items:
                yield item

        try:
            await call.outbound(reply())
            self.outcome.append("returned")
        except Exception as exc:
            self.outcome.append(exc)
            raise
        finally:
            self.done.set()


@pytest.fixture
async def rest() -> AsyncIterator[tuple[FakeRest, str]]:
    fake = FakeRest()
    async with serving(fake.app()) as host:
        try:
            yield fake, f"http://{host}"
        finally:
            fake.release()


def api_for(carrier: str, base_url: str, timeout: float = 5.0) -> CarrierApi:
    if carrier == "twilio":
        return CarrierApi("twilio", account=fake_rest.ACCOUNT, secret=fake_rest.TOKEN,
                          base_url=base_url, timeout=timeout)
    if carrier == "telnyx":
        return CarrierApi("telnyx", secret=fake_rest.TELNYX_KEY, base_url=base_url,
                          timeout=timeout)
    return CarrierApi("plivo", account=fake_rest.PLIVO_ID, secret=fake_rest.PLIVO_TOKEN,
                      base_url=base_url, timeout=timeout)


def peer_for(carrier: str, host: str) -> Carrier:
    if carrier == "twilio":
        return TwilioCall(f"ws://{host}/twilio/media", call_sid=TWILIO_CALL)
    if carrier == "telnyx":
        return TelnyxCall(f"ws://{host}/telnyx/media", call_control_id=TELNYX_CALL)
    return PlivoCall(f"ws://{host}/plivo/media", call_id=PLIVO_CALL)


CALL_IDS = {"twilio": TWILIO_CALL, "telnyx": TELNYX_CALL, "plivo": PLIVO_CALL}


async def run(
    carrier: str,
    script: Script,
    rest: tuple[FakeRest, str],
    *,
    until: Callable[[Record], bool] | None = None,
    api_timeout: float = 5.0,
    **app_options: Any,
) -> tuple[Carrier, Record]:
    """One call on ``carrier`` with ``script`` as the agent; the peer hangs up (as the carrier
    does after a REST hang-up or transfer) once the fake REST API was acted on, or ``until``."""
    fake, base = rest
    application = vk.serve.app(script.on_call, carrier=carrier, dev=True,
                               api=api_for(carrier, base, api_timeout), **app_options)
    async with serving(application) as host:
        peer = peer_for(carrier, host)
        record = await peer.call(
            until=until or (lambda r: fake.acted.is_set()), linger=0.1, max_seconds=15
        )
        await asyncio.wait_for(script.done.wait(), 10)
        assert await voicekit_tasks() == []
    assert record.violations == []
    return peer, record


def played_before(peer: Carrier, record: Record, t: float) -> None:
    """Everything the peer was sent had been played (and the goodbye mark echoed) by the
    monotonic time ``t``."""
    echoed = [at for at, name in record.echoed if name == "goodbye"]
    assert echoed, "the goodbye mark never came back"
    assert t >= peer._t0 + echoed[0]
    assert t >= peer._t0 + peer._play_end - 0.005  # the peer's play-out clock: all of it heard
    assert abs(record.heard_seconds - GOODBYE) < 0.03


@pytest.mark.parametrize("carrier", ["twilio", "telnyx", "plivo"])
async def test_a_hang_up_waits_until_the_goodbye_has_played(carrier, rest):
    fake, _ = rest
    fake.live(CALL_IDS[carrier])
    script = Script(HangUp())
    peer, record = await run(carrier, script, rest)
    (hangup,) = fake.of("hangup")
    assert hangup.call_id == CALL_IDS[carrier] and hangup.status < 300
    played_before(peer, record, hangup.t)
    if carrier == "twilio":
        assert hangup.body == {"Status": "completed"} and hangup.method == "POST"
    elif carrier == "plivo":
        assert hangup.method == "DELETE"
    assert script.outcome == ["returned"]
    assert fake.calls[CALL_IDS[carrier]] != "in-progress"


@pytest.mark.parametrize("carrier", ["twilio", "telnyx", "plivo"])
async def test_a_call_that_already_ended_is_not_an_error(carrier, rest):
    fake, _ = rest  # the call is not live: Twilio 404/20404, Telnyx 422/90018, Plivo 404
    script = Script(HangUp())
    await run(carrier, script, rest, until=lambda r: bool(fake.of("hangup")))
    (hangup,) = fake.of("hangup")
    assert hangup.status in (404, 422)
    assert script.outcome == ["returned"]


async def test_twilio_transfer_is_a_dial_after_the_goodbye(rest):
    fake, _ = rest
    fake.live(TWILIO_CALL)
    peer, record = await run("twilio", Script(TransferCall("+15550003333")), rest)
    (update,) = fake.of("update")
    played_before(peer, record, update.t)
    assert update.body["Twiml"] == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Dial>+15550003333</Dial></Response>'
    )


async def test_telnyx_transfer_and_send_dtmf_in_order(rest):
    fake, _ = rest
    fake.live(TELNYX_CALL)
    script = Script(SendDtmf("12#"), *tone(0.5), Mark("after"), TransferCall("sip:desk@pbx.test"))
    peer, record = await run("telnyx", script, rest, until=lambda r: len(fake.requests) >= 2)
    dtmf, transfer = fake.requests
    assert (dtmf.action, dtmf.body) == ("send_dtmf", {"digits": "12#", "duration_millis": 250})
    assert (transfer.action, transfer.body) == ("transfer", {"to": "sip:desk@pbx.test"})
    goodbye = next(at for at, name in record.echoed if name == "goodbye")
    after = next(at for at, name in record.echoed if name == "after")
    assert peer._t0 + goodbye <= dtmf.t < peer._t0 + after <= transfer.t
    assert script.outcome == ["returned"]


async def test_plivo_send_dtmf_goes_on_the_stream_after_the_checkpoint(rest):
    fake, _ = rest
    fake.live(PLIVO_CALL)
    script = Script(SendDtmf("9*"), *tone(0.3), HangUp())
    _, record = await run("plivo", script, rest)
    events = [r.event for r in record.received]
    sent = [r for r in record.received if r.event == "sendDTMF"]
    assert [s.message["dtmf"] for s in sent] == ["9*"]
    echoed = next(at for at, name in record.echoed if name == "goodbye")
    assert sent[0].t >= echoed  # after the goodbye was heard
    assert events.index("sendDTMF") > events.index("checkpoint")
    assert len(fake.of("hangup")) == 1 and fake.requests[0].action == "hangup"


async def test_plivo_transfer_fetches_a_signed_dial(rest, monkeypatch):
    fake, _ = rest
    fake.live(PLIVO_CALL)
    monkeypatch.setenv("PLIVO_AUTH_TOKEN", fake_rest.PLIVO_TOKEN)  # the links' key: any worker
    script = Script(TransferCall("+15550003333"))
    await run("plivo", script, rest, public_url="https://vk.example")
    (transfer,) = fake.of("transfer")
    assert transfer.body["legs"] == "aleg" and transfer.body["aleg_method"] == "POST"
    url = transfer.body["aleg_url"]
    assert re.fullmatch(r"https://vk\.example/plivo/transfer\?to=%2B15550003333&sig=[0-9a-f]+",
                        url)
    # the route (of any server with the same credentials) serves the <Dial> for that link only
    application = vk.serve.app(script.on_call, carrier="plivo", dev=True,
                               public_url="https://vk.example")
    async with serving(application) as host:
        local = url.replace("https://vk.example", f"http://{host}")
        async with httpx.AsyncClient() as client:
            good = await client.post(local)
            bad = await client.post(local.replace("%2B15550003333", "%2B19000000000"))
    assert good.status_code == 200 and "<Dial><Number>+15550003333</Number></Dial>" in good.text
    assert bad.status_code == 403


async def test_twilio_send_dtmf_plays_the_digits_then_reconnects_the_stream(rest):
    fake, _ = rest
    fake.live(TWILIO_CALL)
    script = Script(SendDtmf("1w2"))
    peer, record = await run("twilio", script, rest)
    (update,) = fake.of("update")
    played_before(peer, record, update.t)
    twiml = update.body["Twiml"]
    assert twiml.startswith('<?xml version="1.0" encoding="UTF-8"?><Response><Play digits="1w2"/>')
    assert re.search(r'<Connect><Stream url="ws://127\.0\.0\.1:\d+/twilio/media">', twiml)
    assert '<Parameter name="resumed" value="dtmf"/>' in twiml


@pytest.mark.parametrize("carrier", ["twilio", "plivo"])
async def test_a_refused_hang_up_is_a_clear_error_and_the_call_still_ends(carrier, rest):
    fake, _ = rest
    fake.live(CALL_IDS[carrier])
    fake.fail(500)
    script = Script(HangUp())
    _, record = await run(carrier, script, rest, until=lambda r: r.closed_by_server)
    (error,) = script.outcome
    assert isinstance(error, ProviderStatusError) and error.status_code == 500
    assert f"{carrier} REST API refused hangup with HTTP 500" in str(error)
    assert fake.requests[0].status == 500
    assert record.closed_by_server  # the socket is closed: the carrier ends the call


async def test_a_rest_api_that_does_not_answer_times_out_and_the_call_ends(rest):
    fake, _ = rest
    fake.live(TWILIO_CALL)
    fake.fail("hang")
    script = Script(HangUp())
    _, record = await run("twilio", script, rest, until=lambda r: r.closed_by_server,
                          api_timeout=0.5)
    (error,) = script.outcome
    assert isinstance(error, ProviderTimeout)
    assert "did not answer hangup" in str(error) and "0.5 s" in str(error)
    assert record.closed_by_server


async def test_wrong_credentials_say_so_without_the_secret(rest, caplog):
    fake, base = rest
    fake.live(TELNYX_CALL)
    script = Script(HangUp())
    application = vk.serve.app(
        script.on_call, carrier="telnyx", dev=True,
        api=CarrierApi("telnyx", secret="KEY-wrong-secret-value", base_url=base),
    )
    async with serving(application) as host:
        await TelnyxCall(f"ws://{host}/telnyx/media", call_control_id=TELNYX_CALL).call(
            until=lambda r: r.closed_by_server, max_seconds=15)
        await asyncio.wait_for(script.done.wait(), 10)
    (error,) = script.outcome
    assert isinstance(error, ProviderStatusError) and error.status_code == 401
    assert "check the credentials" in str(error) and "Authentication failed" in str(error)
    assert "KEY-wrong-secret-value" not in caplog.text + str(error)


async def test_a_missing_credential_is_named(rest, monkeypatch):
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "VOICEKIT_TWILIO_API_URL"):
        monkeypatch.delenv(name, raising=False)
    script = Script(HangUp())
    application = vk.serve.app(script.on_call, carrier="twilio", dev=True)
    async with serving(application) as host:
        await TwilioCall(f"ws://{host}/twilio/media").call(
            until=lambda r: r.closed_by_server, max_seconds=15)
        await asyncio.wait_for(script.done.wait(), 10)
    (error,) = script.outcome
    assert isinstance(error, ConfigError) and "TWILIO_ACCOUNT_SID is not set" in str(error)


async def test_a_caller_who_hangs_up_during_the_goodbye_gets_no_rest_call(rest):
    fake, _ = rest
    fake.live(TWILIO_CALL)
    script = Script(HangUp(), seconds=3.0)
    await run("twilio", script, rest, until=lambda r: r.heard_seconds > 0.5)
    assert fake.requests == []  # the stream ended first: nothing to hang up
    assert script.outcome == ["returned"]


async def audiohook_call(script: Script) -> tuple[dict[str, Any], float, Any]:
    """One AudioHook session (Audio Connector) with ``script`` as the agent: the
    ``disconnect`` message, when it arrived (loop time), and the client's record."""
    from servers.audiohook_client import AudioHookClient

    application = vk.serve.app(script.on_call, carrier="audiohook", dev=True)
    loop = asyncio.get_running_loop()
    async with serving(application) as host:
        client = AudioHookClient(f"ws://{host}/audiohook", api_key="open-key")
        async with client:
            await client.open()
            disconnected = client.expect("disconnect")
            message = await asyncio.wait_for(disconnected, 10)
            at = loop.time()
            record = await client.ended()
        await asyncio.wait_for(script.done.wait(), 10)
        assert await voicekit_tasks() == []
    assert record.violations == []
    return message, at, record


async def test_audiohook_hang_up_is_a_disconnect_with_output_variables_after_the_goodbye():
    script = Script(HangUp(variables={"outcome": "resolved"}))
    message, at, record = await audiohook_call(script)
    assert message["parameters"] == {"reason": "completed",
                                     "outputVariables": {"outcome": "resolved"}}
    audio = sum(len(a) for a in record.audio) / 8000
    assert audio >= GOODBYE
    assert at >= record.audio_at[0] + GOODBYE - 0.05  # Genesys played it all first
    assert script.outcome == ["returned"]


async def test_audiohook_transfer_is_a_disconnect_with_action_transfer():
    message, _, _ = await audiohook_call(Script(TransferCall("+15550003333", {"queue": "sales"})))
    assert message["parameters"]["outputVariables"] == {
        "queue": "sales", "action": "transfer", "target": "+15550003333"
    }


async def test_audiohook_output_variables_must_be_strings():
    script = Script(HangUp(variables={"attempts": 3}))  # type: ignore[dict-item]
    message, _, _ = await audiohook_call(script)
    (error,) = script.outcome
    assert isinstance(error, ConfigError)
    assert "output variables must be strings" in str(error) and "attempts" in str(error)
    # the session still ends cleanly, with the default variables
    assert message["parameters"] == {"reason": "completed",
                                     "outputVariables": {"action": "finished"}}


# -- the pure pieces ------------------------------------------------------------------------


def test_requests_and_answers_per_carrier():
    from voicekit.transports._control import (
        outcome,
        play_digits_twiml,
        plivo_hangup,
        plivo_transfer,
        telnyx_action,
        twilio_hangup,
    )
    from voicekit.transports._rest import Reply

    assert twilio_hangup("AC1", "CA2").path == "/2010-04-01/Accounts/AC1/Calls/CA2.json"
    assert plivo_hangup("MA1", "u-1").method == "DELETE"
    assert plivo_transfer("MA1", "u-1", "https://x.test/t").json == {
        "legs": "aleg", "aleg_url": "https://x.test/t", "aleg_method": "POST"}
    assert telnyx_action("v3:ab", "hangup", {}).path == (
        "/v2/calls/v3:ab/actions/hangup")
    with pytest.raises(ConfigError, match="non-empty id"):
        twilio_hangup("AC1", "../CA2")
    with pytest.raises(ConfigError, match="Twilio plays no A-D"):
        play_digits_twiml("12A")
    # already ended: each carrier's own words; anything else that is not 2xx fails
    assert outcome("twilio", Reply(400, {"code": 21220}), "hangup") == "ended"
    assert outcome("twilio", Reply(400, {"code": 21220}), "transfer") == "failed"
    assert outcome("telnyx", Reply(422, {"errors": [{"code": "90015"}]})) == "failed"
    assert outcome("plivo", Reply(204, {})) == "done"
    assert outcome("twilio", Reply(401, {"code": 20003})) == "failed"


def test_transfer_targets_are_numbers_or_sip_uris():
    from voicekit.transports._control import dial_twiml

    with pytest.raises(ConfigError, match="phone number or sip: URI"):
        dial_twiml("javascript:alert(1)")
    assert "<Dial>+4930123456</Dial>" in dial_twiml("+4930123456")


def test_carrier_api_hides_its_secret():
    api = CarrierApi("telnyx", secret="KEY-very-secret-123")
    assert "KEY-very-secret-123" not in repr(api)
    with pytest.raises(ConfigError, match="base_url must be http"):
        CarrierApi("twilio", base_url="ftp://x")
    with pytest.raises(ConfigError, match="carrier must be one of"):
        CarrierApi("skype")


async def test_twilio_call_comes_back_after_the_digits_with_its_session(rest, monkeypatch):
    """Twilio plays digits only by replacing the call's TwiML, which ends the stream: the
    ``<Play digits>`` is followed by a new ``<Connect><Stream>`` (with a fresh token), and the
    new stream goes on from the Session the old one ended with."""
    fake, base = rest
    fake.live(TWILIO_CALL)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", fake_rest.TOKEN)
    sessions: list[vk.Session] = []
    done = asyncio.Event()

    async def on_call(call: Any) -> None:
        sessions.append(call.session)

        async def reply() -> AsyncIterator[Any]:
            if len(sessions) == 1:  # the menu asks for a key: remember why, press it
                for chunk in tone(0.4):
                    yield chunk
                yield Mark("m1")
                yield SessionUpdated(call.session.remember(menu="billing"))
                yield SendDtmf("1")
            else:
                yield HangUp()

        await call.outbound(reply())
        if len(sessions) == 2:
            done.set()

    application = vk.serve.app(on_call, carrier="twilio", api=api_for("twilio", base))
    async with serving(application) as host:
        form = {"CallSid": TWILIO_CALL, "From": "+15550001111", "To": "+15550002222"}
        url, params = await fake_twilio.answer(f"http://{host}", form, fake_rest.TOKEN)
        first = TwilioCall(url, call_sid=TWILIO_CALL, parameters=params)
        await first.call(until=lambda r: bool(fake.of("update")), linger=0.05)  # then: stop
        (update,) = fake.of("update")
        twiml = update.body["Twiml"]
        assert '<Play digits="1"/><Connect><Stream url=' in twiml
        stream = ElementTree.fromstring(twiml).find("Connect/Stream")
        assert stream is not None
        again = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
        assert again["resumed"] == "dtmf" and again["token"] != params["token"]
        second = TwilioCall(stream.get("url", ""), call_sid=TWILIO_CALL,
                            stream_sid="MZfake0000000000000000000000000002", parameters=again)
        record = await second.call(until=lambda r: bool(fake.of("hangup")), linger=0.05)
        await asyncio.wait_for(done.wait(), 10)
        assert await voicekit_tasks() == []
    assert record.close_code != 1008  # the fresh token was accepted
    assert sessions[0].memory == {} and dict(sessions[1].memory) == {"menu": "billing"}
    assert sessions[1].call_id == TWILIO_CALL
