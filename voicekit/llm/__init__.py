"""LLM providers: stateless async-generator functions over explicit endpoint and session values."""
