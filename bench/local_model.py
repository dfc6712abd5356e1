"""How fast is the small real LLM in process (``--llm qwen-local``), and what does it cost?

For each of 10 short spoken-style prompts we call :func:`voicekit.llm.local_model` (greedy
decoding, the model already loaded and warmed as ``voicekit demo`` does) and take:

* first token — the call → its first Token (plain questions, no tools);
* tokens/s — completion tokens after the first one / the time from the first to the last token;
* with tools — the call → the ToolCall (the grammar-constrained intent step) for the weather
  questions, and the call → the first Token for the others (intent step + answer);
* RSS of the process after the run (resident memory, from /proc/self/status), and its peak.

Run:  python bench/local_model.py [--model qwen-local] [--threads N]
      (--threads sets VOICEKIT_MODEL_THREADS; default: cores / inference workers)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import time
from typing import Any

PROMPTS = [
    "What is the capital of France?",
    "How many days are in a week?",
    "Can you tell me a fun fact about cats?",
    "What should I cook for dinner tonight?",
    "What is the weather like in Rome today?",
    "Is it raining in London right now?",
    "How do I reset my password?",
    "Tell me a short joke.",
    "What's the weather in Tokyo?",
    "Thanks, that's all for today.",
]


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


async def _one(llm: Any, prompt: str, tools: Any) -> tuple[float, float | None, int, str]:
    from voicekit import Token, ToolCall

    began = time.perf_counter()
    first: float | None = None
    last = began
    count = 0
    kind = "answer"
    async for event in llm([{"role": "user", "content": prompt}], tools=tools):
        now = time.perf_counter()
        if isinstance(event, ToolCall):
            first, kind = now - began, f"tool {event.name}({event.arguments})"
        elif isinstance(event, Token):
            if first is None:
                first = now - began
            count += 1
            last = now
    assert first is not None
    rate = (count - 1) / (last - began - first) if count > 1 and last - began > first else None
    return first, rate, count, kind


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="qwen-local")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        os.environ["VOICEKIT_MODEL_THREADS"] = str(args.threads)

    from voicekit import _compute
    from voicekit.llm import demo_tools, local_model
    from voicekit.llm._llama import warm_local_model

    began = time.perf_counter()
    await asyncio.to_thread(warm_local_model, args.model)
    print(
        f"{args.model}: loaded and warmed in {time.perf_counter() - began:.1f} s, "
        f"{_compute.model_threads()} llama.cpp thread(s), RSS {_rss_mb():.0f} MB"
    )
    llm = local_model(args.model)
    tools = [tool.spec for tool in demo_tools()]
    firsts, rates = [], []
    for prompt in PROMPTS:
        first, rate, count, _ = await _one(llm, prompt, None)
        firsts.append(first)
        if rate:
            rates.append(rate)
        print(f"  plain  {first * 1000:6.0f} ms first token, {count:3d} tokens  {prompt}")
    tool_firsts = []
    for prompt in PROMPTS:
        first, _, _, kind = await _one(llm, prompt, tools)
        tool_firsts.append(first)
        print(f"  tools  {first * 1000:6.0f} ms to {kind.split('(')[0]:<16} {prompt}  [{kind}]")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"first token (no tools): median {statistics.median(firsts) * 1000:.0f} ms, "
        f"p90 {_p90(firsts) * 1000:.0f} ms over {len(firsts)} prompts"
    )
    print(
        f"first token or tool call (with the intent step): median "
        f"{statistics.median(tool_firsts) * 1000:.0f} ms, p90 {_p90(tool_firsts) * 1000:.0f} ms"
    )
    print(f"tokens/s after the first: median {statistics.median(rates):.1f}")
    print(f"RSS now {_rss_mb():.0f} MB, peak {peak:.0f} MB")


if __name__ == "__main__":
    asyncio.run(main())
