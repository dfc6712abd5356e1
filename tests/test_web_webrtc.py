"""The browser page's WebRTC switch, in a real headless Chromium talking to the uvicorn-served
app over WebRTC on this machine (host ICE candidates, no STUN server): the page hears the
question, the agent's reply comes back as Opus and is played, a barge-in flushes what the
server had queued, closing the tab ends the call with nothing left. And the signalling route:
its authentication and its clear 400s."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from test_web_page import REPLY, Calls, capture, screenshot
from web_browser import ServerThread, chromium, wait_for

import voicekit as vk
import voicekit.serve
from voicekit._errors import ConfigError
from voicekit.events import Interrupted, Played

TOKEN = "webrtc-test-token"
RATE = 16000


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[tuple[ServerThread, Calls]]:
    """The page app on uvicorn, its calls answered by the offline agent of test_web_page;
    ``lead`` (indirect parameter, default 1 s): how far the reply runs ahead of real time,
    i.e. how much the server's track holds."""
    calls = Calls()
    application = vk.serve.app(calls.on_call, carrier=None, ws_token=TOKEN,
                               on_end=calls.on_end, lead=getattr(request, "param", 1.0))
    running = ServerThread(application)
    running.peers = application.state.webrtc  # type: ignore[attr-defined]
    try:
        yield running, calls
    finally:
        running.stop()


def page(srv: ServerThread) -> str:
    return f"{srv.url}/#token={TOKEN}&transport=webrtc"


def ended_peers(srv: ServerThread) -> list[dict[str, Any]]:
    """What the server knows of the calls that are over: their peer connection's state, the
    agent's samples its track sent and the samples each clear flushed."""
    def read() -> list[dict[str, Any]]:
        return [{"state": p.pc.connectionState, "sent": p.speaker.sent,
                 "flushed": list(p.speaker.flushed)} for p in srv.peers.ended]
    return srv.call(read)  # type: ignore[no-any-return]


def live_sent(srv: ServerThread) -> int:
    return srv.call(lambda: sum(p.speaker.sent for p in srv.peers.live))  # type: ignore[no-any-return]


def tasks_left(srv: ServerThread, before: int) -> list[str]:
    """Every task on the server's loop (aiortc's own included) beyond ``before`` of them,
    given 3 s to end."""
    async def left() -> list[str]:
        for _ in range(300):
            running = [t for t in asyncio.all_tasks() if not t.done()]
            if len(running) <= before:
                return []
            await asyncio.sleep(0.01)
        return [repr(t.get_coro()) for t in running]
    return srv.call(left)  # type: ignore[no-any-return]


def slack(samples: int) -> float:
    """How far the audio the page heard may be from what the server sent: the page counts
    whole 20 ms frames above silence, Opus rings a little at the edges (measured: 10 ms over
    a 12 s reply)."""
    return RATE * 0.1 + 0.01 * samples


def report(driver: Any) -> dict[str, Any]:
    return driver.execute_script("return window.voicekit.call.report")  # type: ignore[no-any-return]


@pytest.mark.filterwarnings("ignore::voicekit.turns.StopSecsWarning")
def test_the_page_talks_over_webrtc_and_plays_the_reply(server, tmp_path):
    srv, calls = server
    with chromium(capture(tmp_path, ("question", 0), ("quiet", 20))) as driver:
        driver.get(page(srv))
        assert driver.execute_script("return document.getElementById('transport').value") \
            == "webrtc"
        driver.find_element("id", "talk").click()
        wait_for(driver, f"return window.voicekit.spoken.length == {len(REPLY)}", 30)
        link = driver.execute_script("return window.voicekit.call.connection()")
        # the last mark came when the last audio went out: wait for it to be heard
        sent = live_sent(srv)
        wait_for(driver, f"return window.voicekit.call.report.heard >= {0.9 * sent}", 10)
        shot = screenshot(driver, "page-webrtc")
        heard = report(driver)
        state = driver.execute_script("return {transport: window.voicekit.transport, "
                                      "played: window.voicekit.played, "
                                      "spoken: window.voicekit.spoken}")
        text = driver.find_element("id", "conversation").text
        driver.find_element("id", "talk").click()  # hang up
        assert calls.ended.wait(10)
    assert shot.stat().st_size > 5000
    assert state["transport"] == "webrtc"
    assert link["candidates"] == ["host", "host"]  # no STUN server: host candidates only
    assert link["codecs"] == {"inbound-rtp": "audio/opus", "outbound-rtp": "audio/opus"}
    # the page was told of every sentence once its audio had gone out, in order, and the
    # server counted each as played (the agent's Played) in the same order
    marks = [m.name for m in calls.outbound if isinstance(m, vk.Mark)]
    assert len(marks) == len(REPLY)
    assert heard["played"] == marks == state["played"]
    assert [p.name for p in calls.inbound if isinstance(p, Played)] == marks
    assert state["spoken"] == [s.strip() for s in REPLY]
    assert "what time is it" in text and "It is ten past four" in text
    # the reply came through Opus and the browser's jitter buffer and was played: the page
    # heard as much of the agent's audio as the server's track sent (frame edges, codec)
    (ended,) = ended_peers(srv)
    assert ended["sent"] == sent
    agent_audio = sum(c.frames for c in calls.outbound if isinstance(c, vk.AudioChunk))
    assert abs(sent - agent_audio) <= RATE * 0.02  # the track sent all the agent's audio
    assert abs(heard["heard"] - sent) <= slack(sent)
    # the caller's audio reached the server at the pipeline's rate
    audio = [c for c in calls.inbound if isinstance(c, vk.AudioChunk)]
    assert audio and {c.rate for c in audio} == {RATE}
    (session,) = calls.sessions
    assert session.messages_json() == [
        {"role": "user", "content": "what time is it"},
        {"role": "assistant", "content": "".join(REPLY).strip()},
    ]
    assert ended["state"] == "closed"
    assert srv.voicekit_tasks() == []


@pytest.mark.filterwarnings("ignore::voicekit.turns.StopSecsWarning")
# the reply pauses when the caller starts speaking and is cut about 1 s later, once the words
# are recognised: a lead of 2 s leaves about a second queued in the track to flush then
@pytest.mark.parametrize("server", [2.0], indirect=True)
def test_a_barge_in_flushes_what_the_server_had_queued(server, tmp_path):
    srv, calls = server
    # the question, 1.5 s for the reply to begin, then the caller speaks over it
    mic = capture(tmp_path, ("question", 0), ("quiet", 1.5), ("tone", 0.6), ("quiet", 20))
    with chromium(mic) as driver:
        driver.get(page(srv))
        driver.find_element("id", "talk").click()
        wait_for(driver, "return window.voicekit.cleared.length > 0", 30)
        screenshot(driver, "page-webrtc-barge-in")
        spoken = driver.execute_script("return window.voicekit.spoken.slice()")
        # the next reply's first sentence, sent to its mark, then heard
        wait_for(driver, "return window.voicekit.played.includes('2-1')", 20)
        sent = live_sent(srv)
        wait_for(driver, f"return window.voicekit.call.report.heard >= {sent - slack(sent)}",
                 10)
        heard = report(driver)
        driver.find_element("id", "talk").click()
        assert calls.ended.wait(10)
    (ended,) = ended_peers(srv)
    flushed = ended["flushed"]
    assert len(flushed) == 1 and flushed == heard["cleared"]
    # the server dropped what its track had queued (up to the 1 s lead) ...
    assert flushed[0] > slack(sent)
    # ... and the page never heard it: it heard what the track sent, not that plus the flush
    assert abs(heard["heard"] - sent) <= slack(sent)
    # the reply was cut where the track was: what the page had heard when the clear came is
    # what the track sent of the first reply (the agent's audio less the flush), less what
    # was still in flight (the network and the browser's jitter buffer: 80-120 ms here)
    first = next(k for k, x in enumerate(calls.outbound) if isinstance(x, Interrupted))
    made = sum(c.frames for c in calls.outbound[:first] if isinstance(c, vk.AudioChunk))
    cut = made - flushed[0]
    assert cut - RATE * 0.3 <= heard["heardAtClear"][0] <= cut + RATE * 0.05
    assert any(isinstance(i, Interrupted) for i in calls.outbound)
    assert 0 < len(spoken) < len(REPLY)
    (session,) = calls.sessions
    said = [m for m in session.messages if m["role"] == "assistant"]
    assert said and said[0].get("interrupted")
    assert said[0]["content"] == " ".join(spoken)  # heard = what the server counted played
    assert ended["state"] == "closed"
    assert srv.voicekit_tasks() == []


@pytest.mark.filterwarnings("ignore::voicekit.turns.StopSecsWarning")
def test_closing_the_tab_ends_the_webrtc_call_with_nothing_left(server, tmp_path):
    srv, calls = server
    before = srv.call(lambda: len([t for t in asyncio.all_tasks() if not t.done()]))
    with chromium(capture(tmp_path, ("question", 0), ("quiet", 20))) as driver:
        first = driver.current_window_handle
        driver.switch_to.new_window("tab")
        driver.get(page(srv))
        driver.find_element("id", "talk").click()
        wait_for(driver, "return window.voicekit.spoken.length >= 1", 30)  # mid-reply
        assert srv.call(lambda: len(srv.peers.live)) == 1
        driver.close()  # the tab, not the browser
        driver.switch_to.window(first)
        assert calls.ended.wait(10)
        assert srv.voicekit_tasks() == []
        assert tasks_left(srv, before) == []  # aiortc's ICE, DTLS, SCTP and RTP tasks too
        assert srv.call(lambda: len(srv.peers.live)) == 0
    (ended,) = ended_peers(srv)
    assert ended["state"] == "closed"
    (session,) = calls.sessions
    assert session.messages[0]["content"] == "what time is it"
    said = [m for m in session.messages if m["role"] == "assistant"]
    assert len(said) <= 1 and all(m["content"] for m in said)  # only what was sent in time


# -- the signalling route


def offer(**changes: Any) -> dict[str, Any]:
    """A browser-like offer: Opus audio and a data channel (the SDP is not a live one)."""
    sdp = "\r\n".join([
        "v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", "a=mid:0", "a=sendrecv",
        "a=rtpmap:111 opus/48000/2",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "c=IN IP4 0.0.0.0", "a=mid:1",
        "",
    ])
    return {"type": "offer", "sdp": sdp, **changes}


@pytest.fixture
def signalling() -> Iterator[ServerThread]:
    async def on_call(call: Any) -> None:  # never reached: no offer here connects
        raise AssertionError("no call")

    application = vk.serve.app(on_call, carrier=None, ws_token=TOKEN,
                               ice_servers=["stun:stun.example.org:3478"])
    running = ServerThread(application)
    running.peers = application.state.webrtc  # type: ignore[attr-defined]
    try:
        yield running
    finally:
        running.stop()


def test_the_signalling_route_authenticates_every_request(signalling):
    url = signalling.url + "/webrtc"
    bearer = {"authorization": f"Bearer {TOKEN}"}
    assert httpx.get(url).status_code == 401
    assert httpx.post(url, json=offer()).status_code == 401
    wrong = httpx.post(url, json=offer(), headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 403 and TOKEN not in wrong.text
    assert httpx.get(url, headers={"authorization": "Basic x"}).status_code == 401
    got = httpx.get(url, headers=bearer)
    assert got.status_code == 200
    assert got.json() == {"iceServers": [{"urls": "stun:stun.example.org:3478"}]}


@pytest.mark.parametrize(("body", "named"), [
    (b"not json", "the body is not JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (json.dumps(offer(type="answer")).encode(), "'type' must be \"offer\", got 'answer'"),
    (json.dumps(offer(sdp=42)).encode(), "'sdp' must be the offer's SDP text"),
    (json.dumps(offer(sdp="hello")).encode(), "it must start with v=0"),
    (json.dumps(offer(sdp=offer()["sdp"].replace("m=audio", "m=video"))).encode(),
     "no audio (m=audio)"),
    (json.dumps(offer(sdp=offer()["sdp"].replace("opus", "PCMU"))).encode(), "no Opus codec"),
    (json.dumps(offer(sdp=offer()["sdp"].split("m=application")[0])).encode(),
     "no data channel (m=application)"),
    # well formed up to here, but not an offer aiortc can answer (no ICE or DTLS attributes)
    (json.dumps(offer()).encode(), "the offer was refused"),
    (b"x" * 70000, "over the 65536 cap"),
])
def test_a_bad_offer_is_a_400_naming_what_is_wrong(signalling, body, named):
    reply = httpx.post(signalling.url + "/webrtc", content=body,
                       headers={"authorization": f"Bearer {TOKEN}",
                                "content-type": "application/json"})
    assert reply.status_code == 400, reply.text
    assert reply.text.startswith("webrtc: ") and named in reply.text
    assert signalling.call(lambda: len(signalling.peers.live)) == 0  # nothing was started


def test_ice_servers_are_checked_when_the_app_is_made():
    async def on_call(call: Any) -> None:
        pass

    with pytest.raises(ConfigError, match=r"'http://example\.org' is not a stun:/turn: URL"):
        vk.serve.app(on_call, carrier=None, dev=True, ice_servers=["http://example.org"])
    with pytest.raises(ConfigError, match="needs a username and a credential"):
        vk.serve.app(on_call, carrier=None, dev=True, ice_servers=["turn:turn.example.org"])


def test_only_the_page_app_has_the_webrtc_route():
    async def on_call(call: Any) -> None:
        pass

    phone = vk.serve.app(on_call, carrier="twilio", dev=True)
    assert "/webrtc" not in {r.path for r in phone.routes}
    page_app = vk.serve.app(on_call, carrier=None, dev=True)
    assert "/webrtc" in {r.path for r in page_app.routes}


def test_a_call_the_server_ends_closes_the_peer_connection(tmp_path):
    heard = threading.Event()

    async def on_call(call: Any) -> None:  # hangs up on the first audio it hears
        async for item in call.inbound:
            if isinstance(item, vk.AudioChunk):
                heard.set()
                return

    application = vk.serve.app(on_call, carrier=None, ws_token=TOKEN)
    srv = ServerThread(application)
    try:
        before = srv.call(lambda: len([t for t in asyncio.all_tasks() if not t.done()]))
        with chromium(capture(tmp_path, ("question", 0))) as driver:
            driver.get(page(srv))
            driver.find_element("id", "talk").click()
            assert heard.wait(20)
            # the page learns it from its data channel closing, and is ready for a new call
            wait_for(driver, "return window.voicekit.status == 'call ended' && "
                     "!window.voicekit.call", 10)
            assert driver.execute_script("return document.getElementById('talk').textContent") \
                == "Talk"
            assert tasks_left(srv, before) == []
            states = srv.call(lambda: [p.pc.connectionState
                                       for p in application.state.webrtc.ended])
            assert states == ["closed"]
    finally:
        srv.stop()


# -- the outbound track and the inbound conversion, on their own


async def test_the_track_reports_a_mark_once_the_audio_before_it_is_sent():
    from voicekit.serve._webrtc_peer import FRAME, Speaker, _Mark, _mono

    reached: list[tuple[str, int]] = []
    speaker = Speaker(lambda mark: reached.append((mark.name, speaker.sent)))
    speaker.play(np.arange(1, 501, dtype=np.int16))  # 500 samples, then a mark, then 100
    speaker.mark(_Mark("1-1", '{"type": "mark", "name": "1-1"}'))
    speaker.play(np.full(100, 7, np.int16))
    first = await speaker.recv()
    assert reached == [] and first.samples == FRAME and first.sample_rate == RATE
    assert _mono(first).tolist() == list(range(1, FRAME + 1))
    second = await speaker.recv()
    assert reached == [("1-1", 500)]  # sent with the frame that holds the audio before it
    assert _mono(second)[:180].tolist() == list(range(FRAME + 1, 501))
    assert _mono(second)[180:280].tolist() == [7] * 100 and not _mono(second)[280:].any()
    # a clear drops the queued audio and its marks at once
    speaker.play(np.ones(1000, np.int16))
    speaker.mark(_Mark("1-2", "{}"))
    assert speaker.clear() == 1000 and speaker.flushed == [1000]
    silence = await speaker.recv()
    assert not _mono(silence).any() and reached == [("1-1", 500)] and speaker.sent == 600
    assert second.pts - first.pts == FRAME  # one clock: 20 ms a frame
    speaker.stop()


def test_a_decoded_stereo_frame_becomes_mono():
    import av

    from voicekit.serve._webrtc_peer import _mono

    left, right = np.full(960, 1000, np.int16), np.full(960, 3000, np.int16)
    packed = np.stack([left, right], axis=1).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(packed, format="s16", layout="stereo")
    assert _mono(frame).tolist() == [2000] * 960
