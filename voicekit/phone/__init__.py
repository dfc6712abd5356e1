"""What a phone agent does besides talking: keypad digits, ending and transferring the call,
pressing keys, idle callers.

* :func:`collect_digits` — a stage after the turn detector: the caller's key presses
  (:class:`~voicekit.Dtmf`, from every carrier) become one :class:`Digits` entry, ended by ``#``,
  a count or an inter-digit gap on stream time, and a user turn the agent answers ("The caller
  pressed 1 2 3 4."); ``sensitive=True`` masks them everywhere but ``Digits.value``.
* :func:`end_call`, :func:`transfer_call`, :func:`send_dtmf` — tools for the LLM; your own tools
  return :func:`hang_up`, :func:`transfer` or :func:`press` (a :class:`CallAction`). The agent
  yields :class:`~voicekit.HangUp` / :class:`~voicekit.TransferCall` once the goodbye is
  recorded (after its audio and marks — and their ``Played``, where the transport acknowledges
  — and the last ``SessionUpdated``), :class:`~voicekit.SendDtmf` at once; the transport acts
  on them.
* :func:`idle` — ``agent(idle=phone.idle(8, reprompts=1))``: "Are you still there?", then a
  goodbye and a hang-up, on stream time.

>>> import asyncio
>>> import voicekit as vk
>>> from voicekit import phone
>>> from voicekit.conversation import say, scripted_llm
>>> llm = scripted_llm([vk.ToolCall("c1", "end_call")])
>>> bot = vk.agent(llm=llm, tts=vk.tts.tones(), tools=[phone.end_call(goodbye="Goodbye!")])
>>> out = asyncio.run(([vk.TurnStarted(), vk.TurnEnded("That's all, thanks.")] | bot).list())
>>> [type(x).__name__ for x in out if not isinstance(x, vk.AudioChunk)][-3:]
['Mark', 'SessionUpdated', 'HangUp']
>>> dict(out[-2].session.memory["call_end"])["line"]
'Goodbye!'
"""

from __future__ import annotations

from .._agent_tools import CallAction
from ..events import Dtmf, HangUp, SendDtmf, TransferCall
from ._digits import DEFAULT_TEXT, KEYS, Digits, collect_digits
from ._idle import DEFAULT_GOODBYE, DEFAULT_REPROMPT, Idle, idle
from ._tools import (
    DEFAULT_TRANSFER_LINE,
    end_call,
    hang_up,
    press,
    send_dtmf,
    transfer,
    transfer_call,
)

__all__ = [
    "DEFAULT_GOODBYE",
    "DEFAULT_REPROMPT",
    "DEFAULT_TEXT",
    "DEFAULT_TRANSFER_LINE",
    "KEYS",
    "CallAction",
    "Digits",
    "Dtmf",
    "HangUp",
    "Idle",
    "SendDtmf",
    "TransferCall",
    "collect_digits",
    "end_call",
    "hang_up",
    "idle",
    "press",
    "send_dtmf",
    "transfer",
    "transfer_call",
]
