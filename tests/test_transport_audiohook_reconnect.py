"""AudioHook reconnects: ``open``'s ``continuedSessions`` (the sessions a new one continues, as
Genesys' reference implementation defines them: ``id``, ``serverseq``, ``clientseq``), the
server's ``reconnect`` request, and what the server supports: a session whose socket dropped, or
that the client closed with reason ``reconnect``, is kept for a while; a new session that names
it (or comes back under the same session id) for the same organization and conversation goes on
from its Session, once. Pure rules first, then real reconnects against a uvicorn-served
``voicekit.serve.app`` driven by the independent client."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

import numpy as np
import pytest
from servers.audiohook_client import AudioHookClient
from servers.serving import serving, voicekit_tasks

import voicekit as vk
import voicekit.serve
from voicekit._errors import ProtocolError
from voicekit.events import AudioChunk, CallEnded, CallStarted
from voicekit.transports import audiohook as ah
from voicekit.transports._audiohook_server import _Kept

SID = "e160e428-53e2-487c-977d-96989bf5c99d"
OLD = "9b1f4a4e-6c5d-4e8a-8f3e-2a1b0c9d8e7f"
ORG = "d7934305-0972-4844-938e-9060eef73d05"
CONVERSATION = "a4b6b4e2-3f6b-4f9e-8d7c-0d2b8c9f4a11"
SECRET = b"a-client-secret-of-32-bytes-long"
KEYS = f"test-key:{base64.b64encode(SECRET).decode()}"


def open_with(**extra: Any):
    state = ah.initial_state(SID, "bot", ("en-US",))
    return ah.decode(state, json.dumps(ah.open_message(SID, 1, **extra)))


# --- pure rules --------------------------------------------------------------------------------


def test_an_open_that_continues_a_session_names_it_to_the_pipeline():
    entries = [{"id": OLD, "serverseq": 7, "clientseq": 12},
               {"id": str(uuid.uuid4()), "serverseq": 1, "clientseq": 1}]
    _, events = open_with(continuedSessions=entries)
    (started,) = [e for e in events if isinstance(e, CallStarted)]
    assert started.parameters["continues"] == OLD
    _, events = open_with()
    (started,) = [e for e in events if isinstance(e, CallStarted)]
    assert "continues" not in started.parameters


def test_input_variables_cannot_pose_as_the_protocols_parameters():
    _, events = open_with(inputVariables={"continues": OLD, "language": "xx-XX",
                                          "organizationId": "other", "queue": "sales"})
    (started,) = [e for e in events if isinstance(e, CallStarted)]
    assert "continues" not in started.parameters and started.parameters["language"] == "en-US"
    assert started.parameters["organizationId"] == ORG and started.parameters["queue"] == "sales"


@pytest.mark.parametrize("entries", [
    {"id": OLD}, [{"serverseq": 1, "clientseq": 1}], [{"id": OLD, "serverseq": -1,
                                                        "clientseq": 1}],
    [{"id": OLD, "serverseq": 1}], ["not an object"],
], ids=["not a list", "no id", "negative serverseq", "no clientseq", "not an object"])
def test_malformed_continued_sessions_are_a_violation(entries):
    with pytest.raises(ProtocolError, match="continuedSessions"):
        open_with(continuedSessions=entries)


def test_the_server_can_ask_the_client_to_reconnect():
    state, _ = open_with()
    state, (text,) = ah.encode(state, ah.Reconnect("draining"))
    message = json.loads(text)
    assert message["type"] == "reconnect" and message["parameters"] == {"info": "draining"}
    assert message["seq"] == 2
    state, (text,) = ah.encode(state, ah.Reconnect())
    assert json.loads(text)["parameters"] == {}


def started_for(conversation: str = CONVERSATION, continues: str = OLD, org: str = ORG,
                session_id: str = SID) -> CallStarted:
    parameters = {"organizationId": org, "continues": continues} if continues else \
        {"organizationId": org}
    return CallStarted(call_id=conversation, carrier="audiohook", stream_id=session_id,
                       parameters=parameters)


async def test_a_kept_session_is_continued_once_by_its_own_organization_and_conversation():
    kept = _Kept(window=60, wait=0.1)
    history = vk.Session(call_id=CONVERSATION).add_user("hello")
    kept.keep(OLD, history, ORG)
    assert await kept.take(started_for(conversation=str(uuid.uuid4()))) is None
    assert await kept.take(started_for(org=str(uuid.uuid4()))) is None
    assert await kept.take(started_for(continues="")) is None  # names nothing, new id
    assert await kept.take(started_for()) == history
    assert await kept.take(started_for()) is None  # once


async def test_a_session_coming_back_under_its_own_id_is_continued():
    kept = _Kept(window=60, wait=0.1)
    history = vk.Session(call_id=CONVERSATION).add_user("hello")
    kept.keep(SID, history, ORG)
    assert await kept.take(started_for(continues="", session_id=SID)) == history


async def test_kept_sessions_expire_after_the_window():
    kept = _Kept(window=0.05, wait=0.1)
    kept.keep(OLD, vk.Session(call_id=CONVERSATION), ORG)
    await asyncio.sleep(0.1)
    assert await kept.take(started_for()) is None
    never = _Kept(window=0, wait=0.1)
    never.keep(OLD, vk.Session(call_id=CONVERSATION), ORG)
    assert await never.take(started_for()) is None


async def test_a_continued_session_still_running_is_awaited():
    kept = _Kept(window=60, wait=5)
    history = vk.Session(call_id=CONVERSATION).add_user("hello")
    kept.begin(OLD)
    taking = asyncio.create_task(kept.take(started_for()))
    await asyncio.sleep(0.05)
    assert not taking.done()  # the old session has not ended yet
    kept.keep(OLD, history, ORG)
    kept.end(OLD)
    assert await asyncio.wait_for(taking, 1) == history


# --- against a real server -------------------------------------------------------------------


class Calls:
    """An ``on_call`` that records each call's starting Session and CallStarted, waits for the
    call's end, and adds one user turn per call to the Session it returns."""

    def __init__(self) -> None:
        self.starts: list[vk.Session] = []
        self.started: list[CallStarted] = []
        self.ended: list[vk.Session] = []
        self.ends = asyncio.Queue[vk.Session]()
        self.reconnect_after: float | None = None

    async def on_call(self, call: Any) -> vk.Session:
        self.starts.append(call.session)
        heard = 0.0
        async for item in call.inbound:
            if isinstance(item, CallStarted):
                self.started.append(item)
            elif isinstance(item, AudioChunk):
                heard += item.duration
                if self.reconnect_after is not None and heard >= self.reconnect_after:
                    self.reconnect_after = None
                    await call.send(ah.Reconnect("moving to another host"))
            elif isinstance(item, CallEnded):
                break
        return call.session.add_user(f"turn {len(self.starts)}")

    def on_end(self, session: vk.Session) -> None:
        self.ended.append(session)
        self.ends.put_nowait(session)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * 8000), dtype=np.int16)


def users(session: vk.Session) -> list[str]:
    return [m["content"] for m in session.messages_json() if m["role"] == "user"]


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("VOICEKIT_AUDIOHOOK_KEYS", KEYS)


def client(host: str, **options: Any) -> AudioHookClient:
    return AudioHookClient(f"ws://{host}/audiohook", secret=SECRET, **options)


def continuing(old: AudioHookClient) -> list[dict[str, Any]]:
    return [{"id": old.session_id, "serverseq": old.serverseq, "clientseq": old.seq}]


async def test_a_client_that_dropped_reconnects_and_the_conversation_goes_on(keys):
    calls = Calls()
    application = vk.serve.app(calls.on_call, carrier="audiohook", on_end=calls.on_end)
    conversation = str(uuid.uuid4())
    async with serving(application) as host:
        first = client(host)
        async with first:
            await first.open(conversation_id=conversation)
            await first.stream(_silence(0.2), _silence(0.2))
            assert first.ws is not None
            first.ws.transport.abort()  # the network goes: no close
        dropped = await asyncio.wait_for(calls.ends.get(), 10)
        second = client(host)
        async with second:
            await second.open(conversation_id=conversation, continuedSessions=continuing(first))
            await second.stream(_silence(0.2), _silence(0.2))
            await second.close()
            record = await second.ended()
        final = await asyncio.wait_for(calls.ends.get(), 10)
        # the same history cannot be taken twice: a third session naming the first starts anew
        third = client(host)
        async with third:
            await third.open(conversation_id=conversation, continuedSessions=continuing(first))
            await third.close()
            await third.ended()
        fresh = await asyncio.wait_for(calls.ends.get(), 10)
    assert record.violations == []
    assert users(dropped) == ["turn 1"]
    assert users(calls.starts[1]) == ["turn 1"]  # the second call starts where the first ended
    assert calls.started[1].parameters["continues"] == first.session_id
    assert users(final) == ["turn 1", "turn 2"] and final.call_id == conversation
    assert users(fresh) == ["turn 3"]
    assert await voicekit_tasks() == []


async def test_the_server_asks_for_a_reconnect_and_the_client_moves_make_before_break(keys):
    calls = Calls()
    calls.reconnect_after = 0.1
    application = vk.serve.app(calls.on_call, carrier="audiohook", on_end=calls.on_end)
    conversation = str(uuid.uuid4())
    async with serving(application) as host:
        old = client(host)
        async with old:
            await old.open(conversation_id=conversation)
            asked = old.expect("reconnect")
            streaming = asyncio.create_task(old.stream(_silence(3.0), _silence(3.0)))
            request = await asyncio.wait_for(asked, 10)
            new = client(host)
            async with new:
                # the new session opens first (the old one still streams), then the old closes
                opened = await new.open(conversation_id=conversation,
                                        continuedSessions=continuing(old))
                assert opened is not None
                streaming.cancel()
                await asyncio.gather(streaming, return_exceptions=True)
                await old.close("reconnect")
                moved = await asyncio.wait_for(calls.ends.get(), 10)
                await new.stream(_silence(0.2), _silence(0.2))
                await new.close()
                record = await new.ended()
            old_record = await old.ended()
        final = await asyncio.wait_for(calls.ends.get(), 10)
    assert request["parameters"] == {"info": "moving to another host"}
    assert old_record.violations == [] and record.violations == []
    assert users(moved) == ["turn 1"]
    assert users(calls.starts[1]) == ["turn 1"]
    assert users(final) == ["turn 1", "turn 2"]
    assert await voicekit_tasks() == []


async def test_a_reconnect_under_the_same_session_id_goes_on(keys):
    calls = Calls()
    application = vk.serve.app(calls.on_call, carrier="audiohook", on_end=calls.on_end)
    conversation = str(uuid.uuid4())
    session_id = str(uuid.uuid4())
    async with serving(application) as host:
        first = client(host, session_id=session_id)
        async with first:
            await first.open(conversation_id=conversation)
            assert first.ws is not None
            first.ws.transport.abort()
        await asyncio.wait_for(calls.ends.get(), 10)
        again = client(host, session_id=session_id)
        async with again:
            await again.open(conversation_id=conversation)
            await again.close()
            record = await again.ended()
        final = await asyncio.wait_for(calls.ends.get(), 10)
    assert record.violations == []
    assert users(final) == ["turn 1", "turn 2"]
    assert await voicekit_tasks() == []


async def test_another_conversation_or_organization_never_gets_the_history(keys):
    calls = Calls()
    application = vk.serve.app(calls.on_call, carrier="audiohook", on_end=calls.on_end)
    conversation = str(uuid.uuid4())
    async with serving(application) as host:
        first = client(host)
        async with first:
            await first.open(conversation_id=conversation)
            assert first.ws is not None
            first.ws.transport.abort()
        await asyncio.wait_for(calls.ends.get(), 10)
        other = client(host)
        async with other:  # another conversation naming the dropped session
            await other.open(conversation_id=str(uuid.uuid4()),
                             continuedSessions=continuing(first))
            await other.close()
            await other.ended()
        stranger = client(host, organization_id=str(uuid.uuid4()))
        async with stranger:  # the right conversation, but another organization
            await stranger.open(conversation_id=conversation,
                                continuedSessions=continuing(first))
            await stranger.close()
            await stranger.ended()
        ends = [await asyncio.wait_for(calls.ends.get(), 10) for _ in range(2)]
        owner = client(host)
        async with owner:  # the history is still there for its own conversation
            await owner.open(conversation_id=conversation, continuedSessions=continuing(first))
            await owner.close()
            await owner.ended()
        final = await asyncio.wait_for(calls.ends.get(), 10)
    assert [users(s) for s in ends] == [["turn 2"], ["turn 3"]]
    assert users(final) == ["turn 1", "turn 4"]
    assert await voicekit_tasks() == []
