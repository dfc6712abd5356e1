"""AudioHook languages: ``open``'s ``language``/``supportedLanguages`` and ``update``'s
``language``, as Genesys' reference implementation defines them (codes like ``en-US``, compared
ignoring case; a transcription server pauses for a language it does not support and resumes when
an ``update`` names one it does). Pure-function rules first, then the same against a real
uvicorn server driven by the independent client (tests/servers/audiohook_client.py)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import numpy as np
import pytest
from servers.audiohook_client import AudioHookClient
from servers.serving import serving, voicekit_tasks
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

import voicekit as vk
from voicekit._errors import ConfigError, ProtocolError
from voicekit.events import AudioChunk, CallEnded, CallStarted
from voicekit.stt import fake
from voicekit.transports import audiohook as ah
from voicekit.transports import transcriber
from voicekit.transports._audiohook_server import audiohook_endpoint
from voicekit.vad import energy, vad

SID = "e160e428-53e2-487c-977d-96989bf5c99d"
SUPPORTED = ("en-US", "fr-FR")
SECRET = b"a-client-secret-of-32-bytes-long"
KEYS = f"test-key:{base64.b64encode(SECRET).decode()}"


def opened(mode: str = "bot", supported: tuple[str, ...] = SUPPORTED, **extra: Any):
    state = ah.initial_state(SID, mode, supported)
    message = ah.open_message(SID, 1, **extra)
    if extra.get("language") is None:
        message["parameters"].pop("language", None)
    return ah.decode(state, json.dumps(message))


def send(state: ah.AudioHookState, type_: str, params: Any = None):
    return ah.decode(state, json.dumps(ah.client_message(state, type_, state.clientseq + 1,
                                                         params)))


def outgoing(events: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(e.message) for e in events if isinstance(e, ah.Outgoing)]


def started_of(events: list[Any]) -> CallStarted:
    (started,) = [e for e in events if isinstance(e, CallStarted)]
    return started


# --- pure rules --------------------------------------------------------------------------------


def test_select_language_matches_ignoring_case_and_spells_it_as_supported():
    assert ah.select_language("en-us", SUPPORTED) == "en-US"
    assert ah.select_language("fr-fr", SUPPORTED) == "fr-FR"
    assert ah.select_language("de-DE", SUPPORTED) is None
    assert ah.select_language("de-DE", ()) == "de-DE"  # no list: any language is ours


def test_supported_languages_must_be_language_codes():
    with pytest.raises(ConfigError, match="language"):
        ah.initial_state(SID, "bot", ("english",))
    with pytest.raises(ConfigError, match="language"):
        ah.codec(SID, "bot", ("en_US",))


def test_open_selects_the_language_and_hands_it_to_the_pipeline():
    state, events = opened(language="fr-fr")
    (reply,) = outgoing(events)
    assert reply["parameters"]["startPaused"] is False
    assert state.language == "fr-FR" and state.phase == "open"
    parameters = started_of(events).parameters
    assert parameters["language"] == "fr-FR" and parameters["requestedLanguage"] == "fr-fr"


def test_an_open_without_language_gets_the_default_the_first_supported():
    for mode in ("bot", "monitor"):
        state, events = opened(mode)
        assert state.language == "en-US" and state.phase == "open"
        assert started_of(events).parameters["language"] == "en-US"
        assert "requestedLanguage" not in started_of(events).parameters


@pytest.mark.parametrize("bad", ["english", "en_US", "e-US", "en-USAX", 7, ""])
def test_a_malformed_language_is_a_violation(bad):
    with pytest.raises(ProtocolError, match=r"'open' language .* is not a language code"):
        opened(language=bad)
    state, _ = opened()
    with pytest.raises(ProtocolError, match=r"'update' language .* is not a language code"):
        send(state, "update", {"language": bad})


def test_update_needs_a_language():
    state, _ = opened()
    with pytest.raises(ProtocolError, match="'update' language None"):
        send(state, "update", {})


def test_supported_languages_are_echoed_only_when_asked():
    _, events = opened(supportedLanguages=True)
    assert outgoing(events)[0]["parameters"]["supportedLanguages"] == ["en-US", "fr-FR"]
    _, events = opened(supportedLanguages=False)
    assert "supportedLanguages" not in outgoing(events)[0]["parameters"]


def test_the_bot_answers_an_unsupported_language_in_its_default():
    state, events = opened("bot", language="de-DE")
    (reply,) = outgoing(events)
    assert reply["parameters"]["startPaused"] is False and state.phase == "open"
    assert state.language == "en-US" and not state.language_paused
    assert started_of(events).parameters["requestedLanguage"] == "de-DE"


def test_the_bot_follows_an_update_to_a_supported_language_and_keeps_its_own_otherwise():
    state, _ = opened("bot")
    state, events = send(state, "update", {"language": "fr-FR"})
    assert events == [ah.LanguageChanged("fr-FR", 0.0)] and state.language == "fr-FR"
    state, events = send(state, "update", {"language": "fr-fr"})
    assert events == [] and state.language == "fr-FR"  # the same language: nothing changes
    state, events = send(state, "update", {"language": "de-DE"})
    assert events == [] and state.language == "fr-FR" and state.phase == "open"


def test_a_monitor_starts_paused_for_an_unsupported_language_until_an_update_names_one():
    state, events = opened("monitor", language="de-DE")
    (reply,) = outgoing(events)
    assert reply["parameters"]["startPaused"] is True
    assert state.phase == "paused" and state.language_paused and state.language == ""
    assert started_of(events).parameters["language"] == ""
    state, events = ah.decode(state, b"\xff" * 320)
    assert events == [] and state.dropped == 1  # no audio while we wait
    state, events = send(state, "paused")  # Genesys acknowledges startPaused
    assert events == [] and state.phase == "paused"
    state, events = send(state, "update", {"language": "de-DE"})  # still unsupported
    assert events == [] and state.language_paused
    state, events = send(state, "update", {"language": "en-us"})
    assert events[0] == ah.LanguageChanged("en-US", 0.0)
    (resume,) = outgoing(events)
    assert resume["type"] == "resume" and resume["parameters"] == {}
    assert state.resuming and not state.language_paused and state.language == "en-US"
    state, events = send(state, "resumed", {"start": "PT0S", "discarded": "PT0S"})
    assert state.phase == "open" and not state.resuming
    state, events = ah.decode(state, b"\xff" * 320)
    assert len(events) == 2  # both channels flow again


def test_a_monitor_pauses_when_an_update_names_an_unsupported_language():
    state, _ = opened("monitor", language="en-US")
    state, events = send(state, "update", {"language": "de-DE"})
    (pause,) = outgoing(events)
    assert pause["type"] == "pause" and state.pausing and state.language_paused
    state, _ = send(state, "paused")
    state, events = send(state, "resumed", {"start": "PT0S", "discarded": "PT0S"})
    assert state.phase == "paused"  # a client resuming on its own still waits for a language
    state, events = send(state, "update", {"language": "fr-FR"})
    assert [m["type"] for m in outgoing(events)] == ["resume"] and state.language == "fr-FR"


def test_a_probe_never_waits_for_a_language():
    zero = ah.NULL_UUID
    state, events = opened("monitor", language="de-DE", conversation_id=zero,
                           participant={"id": zero, "ani": "", "aniName": "", "dnis": ""})
    assert outgoing(events)[0]["parameters"]["startPaused"] is False
    assert state.probe and [e for e in events if isinstance(e, CallStarted)] == []


# --- against a real server -------------------------------------------------------------------


RATE = 8000


def tone(seconds: float, freq: float = 300.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


def application(on_call: Any, mode: str, **options: Any) -> Starlette:
    endpoint = audiohook_endpoint(on_call, mode=mode, keys=KEYS, supported_languages=SUPPORTED,
                                  **options)
    return Starlette(routes=[WebSocketRoute("/audiohook", endpoint)])


async def test_a_monitor_waits_for_a_supported_language_then_transcribes_in_it():
    on_call = transcriber(
        lambda: fake(transcripts=["bonjour"]),
        vad=lambda: vad(detector=energy(), min_volume=0, stop_secs=0.2),
    )
    async with serving(application(on_call, "monitor")) as host:
        client = AudioHookClient(f"ws://{host}/audiohook", secret=SECRET)
        async with client:
            reply = await client.open(media=[{"type": "audio", "format": "PCMU",
                                              "channels": ["external"], "rate": 8000}],
                                      language="de-DE", supportedLanguages=True)
            assert reply is not None
            assert reply["parameters"]["startPaused"] is True
            assert reply["parameters"]["supportedLanguages"] == ["en-US", "fr-FR"]
            await client.send("paused")  # as Genesys does for startPaused
            await client.stream(tone(1.0), speed=4)  # dropped: no language yet
            resumed = client.expect("resume")
            await client.send("update", {"language": "fr-fr"})
            await asyncio.wait_for(resumed, 5)  # the client answers `resumed` itself
            await client.stream(np.concatenate([tone(1.0), silence(1.0)]))
            for _ in range(100):
                if client.record.of("event"):
                    break
                await asyncio.sleep(0.05)
            await client.close()
            record = await client.ended()
    assert record.violations == []
    entities = [e["data"] for m in record.of("event") for e in m["parameters"]["entities"]]
    assert len(entities) == 1  # only the speech after the resume was heard
    (data,) = entities
    assert data["alternatives"][0]["languages"] == ["fr-FR"]
    assert data["alternatives"][0]["interpretations"][0]["transcript"] == "bonjour"
    # on the position clock: 1 s of paused audio, then the tone
    assert 0.9 < ah.parse_duration(data["offset"]) < 1.4
    assert await voicekit_tasks() == []


async def test_the_bot_gets_the_language_in_call_started_the_session_and_each_update():
    seen: list[Any] = []
    ended: list[vk.Session] = []

    async def on_call(call: Any) -> vk.Session:
        seen.append(call.session)
        async for item in call.inbound:
            if not isinstance(item, AudioChunk):
                seen.append(item)
            if isinstance(item, CallEnded):
                break
        return call.session

    async with serving(application(on_call, "bot", on_end=ended.append)) as host:
        client = AudioHookClient(f"ws://{host}/audiohook", secret=SECRET)
        async with client:
            reply = await client.open(language="fr-FR")
            assert reply is not None and reply["parameters"]["startPaused"] is False
            await client.stream(silence(0.2), silence(0.2))
            await client.send("update", {"language": "en-US"})
            await client.send("update", {"language": "de-DE"})  # not ours: the bot keeps en-US
            await client.stream(silence(0.2), silence(0.2))
            await client.close()
            record = await client.ended()
    assert record.violations == [] and record.of("closed")
    session, started = seen[0], seen[1]
    assert isinstance(started, CallStarted) and started.parameters["language"] == "fr-FR"
    assert session.memory["language"] == "fr-FR"
    changes = [x for x in seen if isinstance(x, ah.LanguageChanged)]
    assert [c.language for c in changes] == ["en-US"]
    assert 0.15 < changes[0].t < 0.25  # after the first 0.2 s of audio, on the position clock
    assert ended and ended[0].memory["language"] == "fr-FR"
    assert await voicekit_tasks() == []
