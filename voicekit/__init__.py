"""voicekit: voice agents as compositions of async-generator stages.

>>> import voicekit as vk
>>> import asyncio
>>> asyncio.run(vk.collect(["Hi", "there"] | vk.tap(print)))
Hi
there
['Hi', 'there']
"""

from . import audio, events, llm, ops, session, stt, text, tts, vad
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
from .events import (
    AudioChunk,
    Event,
    Finish,
    Interrupted,
    Sentence,
    SpeechStarted,
    SpeechStopped,
    Switched,
    Token,
    ToolCall,
    ToolResult,
    Transcript,
    TurnEnded,
    TurnStarted,
    Usage,
)
from .ops import Flow, Stage, collect, failover, parallel, stage, switch_map, tap
from .session import Session, hash_caller, new_call_id

__version__ = "0.1.0"

__all__ = [
    "AudioChunk",
    "AudioError",
    "ConfigError",
    "Event",
    "Finish",
    "Flow",
    "FrozenDict",
    "Interrupted",
    "ProtocolError",
    "ProviderConnectError",
    "ProviderError",
    "ProviderResponseError",
    "ProviderStatusError",
    "ProviderStreamError",
    "ProviderTimeout",
    "Sentence",
    "Session",
    "SessionError",
    "SpeechStarted",
    "SpeechStopped",
    "Stage",
    "StageError",
    "Switched",
    "Token",
    "ToolCall",
    "ToolResult",
    "Transcript",
    "TurnEnded",
    "TurnStarted",
    "Usage",
    "VoicekitError",
    "__version__",
    "audio",
    "collect",
    "events",
    "failover",
    "freeze",
    "hash_caller",
    "llm",
    "new_call_id",
    "ops",
    "parallel",
    "session",
    "stage",
    "stt",
    "switch_map",
    "tap",
    "text",
    "thaw",
    "tts",
    "vad",
]
