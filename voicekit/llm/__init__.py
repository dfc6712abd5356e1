"""LLM providers: stateless async-generator functions over explicit endpoint and session values.

>>> from voicekit.llm import custom, build_request
>>> ep = custom(base_url="http://127.0.0.1:8000/v1", model="m")
>>> build_request(ep, [{"role": "user", "content": "hi"}]).body["stream"]
True
"""

from .adapters import (
    CONVERSATION_START,
    INTERRUPTED_MARKER,
    AdapterError,
    SystemInstructionConflict,
    to_anthropic,
    to_bedrock,
    to_chat_messages,
    to_gemini,
    to_realtime,
    to_responses_input,
    tools_to_anthropic,
    tools_to_bedrock,
    tools_to_gemini,
    tools_to_realtime,
    tools_to_responses,
)
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
from .request import (
    ChatRequest,
    build_request,
    normalize_tools,
    request_headers,
    session_key_value,
)
from .warmup import warmup

__all__ = [
    "CONVERSATION_START",
    "DEFAULT_USER_AGENT",
    "INTERRUPTED_MARKER",
    "KEYLESS",
    "NO_RETRY",
    "PRESETS",
    "AdapterError",
    "ChatRequest",
    "Endpoint",
    "LLMEvent",
    "RetryPolicy",
    "SystemInstructionConflict",
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
    "normalize_tools",
    "ollama",
    "openai",
    "openclaw",
    "perplexity",
    "preset",
    "request_headers",
    "session_key_value",
    "to_anthropic",
    "to_bedrock",
    "to_chat_messages",
    "to_gemini",
    "to_realtime",
    "to_responses_input",
    "together",
    "tools_to_anthropic",
    "tools_to_bedrock",
    "tools_to_gemini",
    "tools_to_realtime",
    "tools_to_responses",
    "vllm",
    "warmup",
    "xai",
]
