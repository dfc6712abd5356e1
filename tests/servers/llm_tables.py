"""Facts the LLM tests share: key variables to clear, and the expected preset table."""

from __future__ import annotations

KEY_VARS = [
    "API_SERVER_KEY",
    "API_SERVER_MODEL_NAME",
    "OPENCLAW_API_KEY",
    "OPENAI_API_KEY",
    "GROQ_API_KEY",
    "CEREBRAS_API_KEY",
    "PERPLEXITY_API_KEY",
    "XAI_API_KEY",
    "DEEPSEEK_API_KEY",
    "MISTRAL_API_KEY",
    "TOGETHER_API_KEY",
    "VLLM_API_KEY",
    "LLAMA_API_KEY",
]

PRESET_TABLE = {
    # name: (base_url, key env var, developer role, max_tokens param)
    "ollama": ("http://127.0.0.1:11434/v1", None, False, "max_tokens"),
    "vllm": ("http://127.0.0.1:8000/v1", "VLLM_API_KEY", False, "max_tokens"),
    "lmstudio": ("http://127.0.0.1:1234/v1", None, False, "max_tokens"),
    "llamacpp": ("http://127.0.0.1:8080/v1", "LLAMA_API_KEY", False, "max_tokens"),
    "openai": ("https://api.openai.com/v1", "OPENAI_API_KEY", True, "max_completion_tokens"),
    "groq": ("https://api.groq.com/openai/v1", "GROQ_API_KEY", True, "max_completion_tokens"),
    "cerebras": ("https://api.cerebras.ai/v1", "CEREBRAS_API_KEY", False, "max_completion_tokens"),
    "perplexity": ("https://api.perplexity.ai", "PERPLEXITY_API_KEY", False, "max_tokens"),
    "xai": ("https://api.x.ai/v1", "XAI_API_KEY", True, "max_tokens"),
    "deepseek": ("https://api.deepseek.com/v1", "DEEPSEEK_API_KEY", False, "max_tokens"),
    "mistral": ("https://api.mistral.ai/v1", "MISTRAL_API_KEY", False, "max_tokens"),
    "together": ("https://api.together.xyz/v1", "TOGETHER_API_KEY", False, "max_tokens"),
}
