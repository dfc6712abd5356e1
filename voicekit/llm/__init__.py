"""LLM providers: stateless async-generator functions over explicit endpoint and session values.

>>> from voicekit.llm import custom, build_request
>>> ep = custom(base_url="http://127.0.0.1:8000/v1", model="m")
>>> build_request(ep, [{"role": "user", "content": "hi"}]).body["stream"]
True
"""

from .chat import LLMEvent, chat, complete, new_client
from .endpoint import DEFAULT_USER_AGENT, KEYLESS, NO_RETRY, Endpoint, RetryPolicy
from .presets import (
    PRESETS,
    cerebras,
    custom,
    deepseek,
    groq,
    hermes,
    llamacpp,
    lmstudio,
    mistral,
    ollama,
    openai,
    openclaw,
    perplexity,
    preset,
    together,
    vllm,
    xai,
)
from .request import ChatRequest, build_request, request_headers, session_key_value
from .warmup import warmup

__all__ = [
    "DEFAULT_USER_AGENT",
    "KEYLESS",
    "NO_RETRY",
    "PRESETS",
    "ChatRequest",
    "Endpoint",
    "LLMEvent",
    "RetryPolicy",
    "build_request",
    "cerebras",
    "chat",
    "complete",
    "custom",
    "deepseek",
    "groq",
    "hermes",
    "llamacpp",
    "lmstudio",
    "mistral",
    "new_client",
    "ollama",
    "openai",
    "openclaw",
    "perplexity",
    "preset",
    "request_headers",
    "session_key_value",
    "together",
    "vllm",
    "warmup",
    "xai",
]
