"""Outbound calls (issue 14 item 6): ``voicekit.serve.dial`` and ``voicekit call`` place a call
through the carrier's REST API (a local fake, :mod:`servers.fake_rest`, with its error
answers); the carrier then fetches the same answer route as an inbound call, which connects the
call to the stream route with a signed single-call token; answering machines are detected and
handled by the voicemail policy."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from servers import fake_plivo, fake_rest, fake_twilio
from servers.fake_plivo import PlivoCall
from servers.fake_rest import FakeRest
from servers.fake_twilio import TwilioCall
from servers.serving import serving, voicekit_tasks
from test_call_control import Script

import voicekit as vk
import voicekit.serve
from voicekit import ConfigError, ProviderConnectError, ProviderStatusError, ProviderTimeout
from voicekit.events import CallStarted, HangUp
from voicekit.serve import CarrierApi, dial
from voicekit.transports import twilio

TO, FROM = "+15551230000", "+15550002222"


@pytest.fixture
async def rest() -> AsyncIterator[tuple[FakeRest, str]]:
    fake = FakeRest()
    async with serving(fake.app()) as host:
        try:
            yield fake, f"http://{host}"
        finally:
            fake.release()


def twilio_api(base: str, **over: Any) -> CarrierApi:
    values: dict[str, Any] = {"account": fake_rest.ACCOUNT, "secret": fake_rest.TOKEN,
                              "base_url": base, **over}
    return CarrierApi("twilio", **values)


class Answering(Script):
    """A :class:`Script` that also keeps the call's ``CallStarted``."""

    def __init__(self, *items: Any) -> None:
        super().__init__(*items, seconds=0.4)
        self.started: list[CallStarted] = []

    async def on_call(self, call: Any) -> None:
        self.started.append(call.started)
        await super().on_call(call)


async def test_an_outbound_twilio_call_reaches_the_agent_through_the_answer_route(
    rest, monkeypatch
):
    fake, base = rest
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", fake_rest.TOKEN)
    agent = Answering(HangUp())
    application = vk.serve.app(agent.on_call, carrier="twilio", api=twilio_api(base))
    async with serving(application) as host:
        public = f"http://{host}"
        placed = await dial(TO, FROM, public_url=public, api=twilio_api(base))
        assert placed.carrier == "twilio" and placed.status == "queued"
        (request,) = fake.of("dial")
        assert request.body == {"To": TO, "From": FROM, "Url": f"{public}/twilio/voice",
                                "Method": "POST"}
        # Twilio places it, the callee answers: Twilio fetches the Url, signed, as inbound
        fake.live(placed.call_id)
        form = {"CallSid": placed.call_id, "From": FROM, "To": TO, "Direction": "outbound-api"}
        url, params = await fake_twilio.answer(public, form, fake_rest.TOKEN)
        assert url == f"ws://{host}/twilio/media" and set(params) == {"caller", "callee", "token"}
        peer = TwilioCall(url, call_sid=placed.call_id, parameters=params)
        record = await peer.call(until=lambda r: fake.acted.is_set(), linger=0.1)
        await asyncio.wait_for(agent.done.wait(), 10)
        assert await voicekit_tasks() == []
    (started,) = agent.started
    assert started.call_id == placed.call_id and "token" not in started.parameters
    assert record.violations == [] and record.heard_seconds > 0.35
    assert [r.action for r in fake.requests] == ["dial", "hangup"]


async def test_a_token_for_another_call_is_refused(rest, monkeypatch):
    _fake, base = rest
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", fake_rest.TOKEN)
    agent = Answering(HangUp())
    application = vk.serve.app(agent.on_call, carrier="twilio", api=twilio_api(base))
    async with serving(application) as host:
        form = {"CallSid": "CAother", "From": FROM, "To": TO}
        url, params = await fake_twilio.answer(f"http://{host}", form, fake_rest.TOKEN)
        record = await TwilioCall(url, call_sid="CAdialed", parameters=params).call(
            max_seconds=5)
    assert record.close_code == 1008 and agent.started == []


async def test_voicemail_message_waits_for_the_beep_and_tells_the_agent(rest, monkeypatch):
    fake, base = rest
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", fake_rest.TOKEN)
    agent = Answering(HangUp())
    application = vk.serve.app(agent.on_call, carrier="twilio", api=twilio_api(base))
    async with serving(application) as host:
        public = f"http://{host}"
        placed = await dial(TO, FROM, public_url=public, api=twilio_api(base),
                            voicemail="message")
        (request,) = fake.of("dial")
        assert request.body["MachineDetection"] == "DetectMessageEnd"
        assert "AsyncAmd" not in request.body  # synchronous: the Url is fetched after the beep
        fake.live(placed.call_id)
        form = {"CallSid": placed.call_id, "From": FROM, "To": TO,
                "AnsweredBy": "machine_end_beep"}
        url, params = await fake_twilio.answer(public, form, fake_rest.TOKEN)
        peer = TwilioCall(url, call_sid=placed.call_id, parameters=params)
        await peer.call(until=lambda r: fake.acted.is_set(), linger=0.1)
        await asyncio.wait_for(agent.done.wait(), 10)
    (started,) = agent.started
    assert started.parameters["answered_by"] == "machine_end_beep"


async def test_voicemail_hangup_hangs_up_on_a_machine_from_the_async_result(rest, monkeypatch):
    fake, base = rest
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", fake_rest.TOKEN)
    agent = Answering(HangUp())
    application = vk.serve.app(agent.on_call, carrier="twilio", api=twilio_api(base))
    async with serving(application) as host:
        public = f"http://{host}"
        placed = await dial(TO, FROM, public_url=public, api=twilio_api(base),
                            voicemail="hangup")
        (request,) = fake.of("dial")
        assert request.body["MachineDetection"] == "Enable"
        assert request.body["AsyncAmd"] == "true"
        callback = request.body["AsyncAmdStatusCallback"]
        assert callback == f"{public}/twilio/amd"
        fake.live(placed.call_id)

        async def post(form: dict[str, str], token: str = fake_rest.TOKEN) -> httpx.Response:
            signature = twilio.signature(token, callback, form)
            async with httpx.AsyncClient() as client:
                return await client.post(callback, data=form,
                                         headers={"x-twilio-signature": signature})

        human = await post({"CallSid": placed.call_id, "AnsweredBy": "human"})
        assert human.status_code == 204 and fake.of("hangup") == []
        forged = await post({"CallSid": placed.call_id, "AnsweredBy": "machine_start"}, "wrong")
        assert forged.status_code == 403 and fake.of("hangup") == []
        machine = await post({"CallSid": placed.call_id, "AnsweredBy": "machine_start"})
        assert machine.status_code == 204
    (hangup,) = fake.of("hangup")
    assert hangup.call_id == placed.call_id and hangup.body == {"Status": "completed"}


async def test_a_plivo_outbound_call_with_machine_hangup(rest, monkeypatch):
    fake, base = rest
    api = CarrierApi("plivo", account=fake_rest.PLIVO_ID, secret=fake_rest.PLIVO_TOKEN,
                     base_url=base)
    agent = Answering(HangUp())
    application = vk.serve.app(agent.on_call, carrier="plivo", dev=True, api=api)
    async with serving(application) as host:
        public = f"http://{host}"
        placed = await dial(TO, FROM, carrier="plivo", public_url=public, api=api,
                            voicemail="hangup")
        assert placed.status == "call fired"
        (request,) = fake.of("dial")
        assert request.body == {"from": FROM, "to": TO, "answer_url": f"{public}/plivo/voice",
                                "answer_method": "POST", "machine_detection": "hangup"}
        fake.live(placed.call_id)
        url, headers = await fake_plivo.answer(public, {"CallUUID": placed.call_id,
                                                        "From": FROM, "To": TO})
        peer = PlivoCall(url, call_id=placed.call_id, extra_headers=headers)
        await peer.call(until=lambda r: fake.acted.is_set(), linger=0.1)
        await asyncio.wait_for(agent.done.wait(), 10)
    assert agent.started[0].call_id == placed.call_id
    assert [(r.action, r.method) for r in fake.requests] == [("dial", "POST"),
                                                            ("hangup", "DELETE")]


async def test_telnyx_dial_is_a_texml_call(rest):
    fake, base = rest
    api = CarrierApi("telnyx", secret=fake_rest.TELNYX_KEY, base_url=base)
    placed = await dial(TO, FROM, carrier="telnyx", public_url="https://vk.example", api=api,
                        app_id="texml-app-1")
    assert placed.call_id.startswith("v3:fake")
    (request,) = fake.of("dial")
    assert request.path == "/v2/texml/calls/texml-app-1"
    assert request.body["Url"] == "https://vk.example/telnyx/voice"


async def test_dial_errors_are_clear(rest):
    fake, base = rest
    with pytest.raises(ProviderStatusError, match=r"HTTP 401 \(check the credentials\).*20003"
                       ) as refused:
        await dial(TO, FROM, public_url="https://vk.example",
                   api=twilio_api(base, secret="wrong-token-value"))
    assert "wrong-token-value" not in str(refused.value)
    fake.fail(503)
    with pytest.raises(ProviderStatusError, match="HTTP 503"):
        await dial(TO, FROM, public_url="https://vk.example", api=twilio_api(base))
    fake.fail("hang")
    with pytest.raises(ProviderTimeout, match="did not answer dial"):
        await dial(TO, FROM, public_url="https://vk.example", api=twilio_api(base, timeout=0.3))
    fake.release()
    with pytest.raises(ConfigError, match="to must be a phone number"):
        await dial("555-CALL-NOW", FROM, public_url="https://vk.example", api=twilio_api(base))
    with pytest.raises(ConfigError, match="public_url"):
        await dial(TO, FROM, public_url="my-host", api=twilio_api(base))
    with pytest.raises(ConfigError, match="voicemail='message' works on twilio"):
        await dial(TO, FROM, carrier="plivo", public_url="https://vk.example", voicemail="message",
                   api=CarrierApi("plivo", account="MA1", secret="tok123456", base_url=base))
    with pytest.raises(ConfigError, match="TWILIO_ACCOUNT_SID is not set"):
        await dial(TO, FROM, public_url="https://vk.example", api=CarrierApi("twilio"))


async def test_a_rest_api_that_is_down_is_a_connect_error():
    with pytest.raises(ProviderConnectError, match="twilio REST API could not be reached"):
        await dial(TO, FROM, public_url="https://vk.example",
                   api=twilio_api("http://127.0.0.1:9", timeout=2))


async def test_voicekit_call_places_the_call_and_prints_no_secret(rest):
    fake, base = rest
    env = {**os.environ, "TWILIO_ACCOUNT_SID": fake_rest.ACCOUNT,
           "TWILIO_AUTH_TOKEN": fake_rest.TOKEN}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicekit.cli", "call", TO, "--from", FROM,
        "--public-url", "https://vk.example", "--api-url", base, "--voicemail", "hangup",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    text = out.decode() + err.decode()
    assert process.returncode == 0, text
    (request,) = fake.of("dial")
    assert request.call_id in text and "https://vk.example/twilio/voice" in text
    assert fake_rest.TOKEN not in text and TO not in text
    assert request.body["AsyncAmd"] == "true"


async def test_voicekit_call_says_what_is_missing():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "VOICEKIT_"))}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicekit.cli", "call", TO, "--from", FROM,
        "--public-url", "https://vk.example", "--api-url", "http://127.0.0.1:9",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert "TWILIO_ACCOUNT_SID is not set" in err.decode()
