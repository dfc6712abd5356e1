"""An outbound Telnyx call with answering-machine detection (issue 14 item 6), end to end and
signed: ``voicekit.serve.dial(carrier="telnyx", voicemail="hangup")`` places a TeXML call with
asynchronous AMD through the fake REST API; the fake Telnyx fetches the answer route (Ed25519
signed) and streams the call to the agent; the AMD result posted to ``/telnyx/amd`` hangs up
through Call Control when a machine answered, and only then."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from servers import fake_rest, fake_telnyx
from servers.fake_rest import FakeRest
from servers.fake_telnyx import TelnyxCall
from servers.serving import serving, voicekit_tasks
from test_call_control import tone

import voicekit as vk
import voicekit.serve
from voicekit import ConfigError
from voicekit.events import CallEnded, CallStarted, Mark, Played
from voicekit.serve import CarrierApi, dial

TO, FROM = "+15551230000", "+15550002222"


class Account:
    """A Telnyx account: an Ed25519 key pair whose public half the server checks webhooks
    with; ``sign`` makes the headers Telnyx sends."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self.private = Ed25519PrivateKey.generate()
        raw = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        monkeypatch.setenv("TELNYX_PUBLIC_KEY", base64.b64encode(raw).decode())
        monkeypatch.setenv("TELNYX_API_KEY", fake_rest.TELNYX_KEY)

    def sign(self, body: bytes) -> dict[str, str]:
        stamp = str(int(time.time()))
        signature = self.private.sign(stamp.encode() + b"|" + body)
        return {"telnyx-signature-ed25519": base64.b64encode(signature).decode(),
                "telnyx-timestamp": stamp}


class Greeter:
    """An agent that says a short greeting and then listens until the call ends."""

    def __init__(self) -> None:
        self.started: list[CallStarted] = []
        self.ended: list[CallEnded] = []
        self.heard = asyncio.Event()  # the carrier played the greeting

    async def on_call(self, call: Any) -> None:
        self.started.append(call.started)

        async def greeting() -> AsyncIterator[Any]:
            for chunk in tone(0.4):
                yield chunk
            yield Mark("hello", "Hello!")

        async def listen() -> None:
            async for item in call.inbound:
                if isinstance(item, Played):
                    self.heard.set()
                elif isinstance(item, CallEnded):
                    self.ended.append(item)

        await asyncio.gather(call.outbound(greeting()), listen())


@pytest.fixture
async def rest() -> AsyncIterator[tuple[FakeRest, str]]:
    fake = FakeRest()
    async with serving(fake.app()) as host:
        try:
            yield fake, f"http://{host}"
        finally:
            fake.release()


async def test_a_telnyx_call_answered_by_a_machine_is_hung_up(rest, monkeypatch):
    fake, base = rest
    account = Account(monkeypatch)
    api = CarrierApi("telnyx", secret=fake_rest.TELNYX_KEY, base_url=base)
    agent = Greeter()  # the AMD result, not the agent, ends the call
    application = vk.serve.app(agent.on_call, carrier="telnyx", api=api)
    async with serving(application) as host:
        public = f"http://{host}"
        placed = await dial(TO, FROM, carrier="telnyx", public_url=public, api=api,
                            voicemail="hangup", app_id="texml-app-1")
        (request,) = fake.of("dial")
        assert request.body["MachineDetection"] == "Enable"
        assert request.body["AsyncAmd"] is True  # a JSON boolean, as Telnyx's API has it
        callback = request.body["AsyncAmdStatusCallback"]
        assert callback == f"{public}/telnyx/amd"
        # answered: Telnyx fetches the TeXML (signed) and streams the call at once
        fake.live(placed.call_id)
        form = {"CallSid": placed.call_id, "From": FROM, "To": TO}
        url, params = await fake_telnyx.answer(public, form, account.sign)
        peer = TelnyxCall(url, call_control_id=placed.call_id, custom_parameters=params)

        async def post(answered_by: str, *, forged: bool = False) -> httpx.Response:
            body = httpx.QueryParams({"CallSid": placed.call_id, "AnsweredBy": answered_by,
                                      "AccountSid": "acct-1"})
            raw = str(body).encode()
            headers = {"content-type": "application/x-www-form-urlencoded",
                       **account.sign(b"other" if forged else raw)}
            async with httpx.AsyncClient() as client:
                return await client.post(callback, content=raw, headers=headers)

        async def detection() -> list[int]:
            await agent.heard.wait()  # the greeting played: the detector has decided
            statuses = [(await post("human")).status_code]
            assert fake.of("hangup") == []  # a person: the call goes on
            statuses.append((await post("machine_start", forged=True)).status_code)
            assert fake.of("hangup") == []
            statuses.append((await post("machine_start")).status_code)
            return statuses

        detector = asyncio.create_task(detection())
        record = await peer.call(until=lambda r: fake.acted.is_set(), linger=0.1,
                                 max_seconds=20)
        statuses = await asyncio.wait_for(detector, 10)
        assert await voicekit_tasks() == []
    assert statuses == [200, 403, 200]
    (hangup,) = fake.of("hangup")  # Call Control's hangup, for the dialled call
    assert (hangup.call_id, hangup.path) == (
        placed.call_id, f"/v2/calls/{placed.call_id}/actions/hangup")
    assert record.violations == [] and record.heard_seconds > 0.3
    assert agent.started[0].call_id == placed.call_id
    assert not record.closed_by_server  # the carrier ended it (after its Call Control hangup)


async def test_telnyx_voicemail_message_is_refused_clearly(rest):
    _, base = rest
    api = CarrierApi("telnyx", secret=fake_rest.TELNYX_KEY, base_url=base)
    with pytest.raises(ConfigError, match="voicemail='message' works on twilio"):
        await dial(TO, FROM, carrier="telnyx", public_url="https://vk.example", api=api,
                   voicemail="message", app_id="texml-app-1")
