"""Talk to an agent from a browser: the page ``voicekit serve`` shows at ``/`` and its parts.

The page and the notebook widget are plain ES modules in this package (no build step, no
CDN; they work offline): ``index.html`` and ``page.js`` (the page), ``audio.js`` (microphone
capture at 16 kHz in 20 ms 16-bit frames, playback with a small jitter buffer, marks played
and ``clear``), the AudioWorklet processors ``capture-worklet.js`` and ``playback-worklet.js``,
``widget.js`` (the front end of :func:`voicekit.notebook.talk`) and ``webrtc.js`` (the page's
WebRTC switch: Opus tracks both ways and the same messages on a data channel, signalled by
``POST /webrtc``, see :mod:`voicekit.serve._webrtc`). They speak the ``/ws`` protocol of
:mod:`voicekit.transports.websocket`, with ``"events": true``.

:func:`turn_meter` is the stage that gives the page its latency bar: put it after the agent.
"""

from __future__ import annotations

from ._meter import turn_meter
from ._static import STATIC, source

__all__ = ["STATIC", "source", "turn_meter"]
