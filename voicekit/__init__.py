"""voicekit: voice agents as compositions of async-generator stages.

>>> import voicekit as vk
>>> import asyncio
>>> asyncio.run(vk.collect(["Hi", "there"] | vk.tap(print)))
Hi
there
['Hi', 'there']
"""

from . import audio, conversation, events, llm, notebook, ops, session, stt, text, tts, turns, vad
from ._agent import Tool, agent, tool, voice_agent
from ._errors import (
    AudioError,
    ConfigError,
    ProtocolError,
    ProviderConnectError,
    ProviderError,
    ProviderResponseError,
    ProviderStatusError,
    ProviderStreamError,
    ProviderTimeout,
    SessionError,
    StageError,
    VoicekitError,
)
from ._frozen import FrozenDict, freeze, thaw
from .conversation import run_conversation
from .events import (
    AudioChunk,
    CallStarted,
    Continuity,
    Event,
    Finish,
    Interrupted,
    Mark,
    Played,
    ReplyFailed,
    ReplyStarted,
    Sentence,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    Switched,
    Token,
    ToolCall,
    ToolResult,
    Transcript,
    TurnEnded,
    TurnPending,
    TurnStarted,
    Usage,
)
from .ops import Flow, Stage, collect, failover, parallel, stage, switch_map, tap
from .session import Session, hash_caller, new_call_id

__version__ = "0.1.0"

__all__ = [
    "AudioChunk",
    "AudioError",
    "CallStarted",
    "ConfigError",
    "Continuity",
    "Event",
    "Finish",
    "Flow",
    "FrozenDict",
    "Interrupted",
    "Mark",
    "Played",
    "ProtocolError",
    "ProviderConnectError",
    "ProviderError",
    "ProviderResponseError",
    "ProviderStatusError",
    "ProviderStreamError",
    "ProviderTimeout",
    "ReplyFailed",
    "ReplyStarted",
    "Sentence",
    "Session",
    "SessionError",
    "SessionUpdated",
    "SpeechStarted",
    "SpeechStopped",
    "Stage",
    "StageError",
    "Switched",
    "Token",
    "Tool",
    "ToolCall",
    "ToolResult",
    "Transcript",
    "TurnEnded",
    "TurnPending",
    "TurnStarted",
    "Usage",
    "VoicekitError",
    "__version__",
    "agent",
    "audio",
    "collect",
    "conversation",
    "events",
    "failover",
    "freeze",
    "hash_caller",
    "llm",
    "new_call_id",
    "notebook",
    "ops",
    "parallel",
    "run_conversation",
    "session",
    "stage",
    "stt",
    "switch_map",
    "tap",
    "text",
    "thaw",
    "tool",
    "tts",
    "turns",
    "vad",
    "voice_agent",
]
