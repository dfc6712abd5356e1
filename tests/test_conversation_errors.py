"""run_conversation lets the pipeline's real error out (issue 9 item 8).

A ``ProviderTimeout`` is also a ``TimeoutError``; it used to be taken for the conversation's own
time limit and reported as "not finished after 60 s", its message and cause thrown away.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import pytest

from voicekit import ProviderTimeout, ReplyFailed, StageError, TurnEnded, agent, stage
from voicekit.conversation import run_conversation, say, scripted_llm
from voicekit.tts import tones


@stage
async def times_out_on_second_turn(source: AsyncIterable[Any], /) -> AsyncIterator[Any]:
    """A front end (say, a recogniser over HTTP) that gives up on the second turn."""
    turns = 0
    async for item in source:
        if isinstance(item, TurnEnded):
            turns += 1
            if turns == 2:
                raise ProviderTimeout("stt (http://127.0.0.1:9/v1) timed out", provider="stt")
        yield item


async def test_a_provider_timeout_in_the_pipeline_comes_out_as_itself() -> None:
    bot = agent(llm=scripted_llm("Hello.", "Again."), tts=tones())
    began = time.monotonic()
    with pytest.raises(ProviderTimeout, match=r"stt \(http://127.0.0.1:9/v1\) timed out") as info:
        await run_conversation(
            times_out_on_second_turn() | bot, [say("hi"), say("two")], time_limit=30
        )
    assert time.monotonic() - began < 10  # at once, not after the time limit
    assert "not finished" not in str(info.value)
    assert info.value.provider == "stt"


async def test_a_plain_timeout_error_of_the_pipeline_comes_out_as_its_stage_error() -> None:
    def pipeline(source: AsyncIterable[Any]) -> AsyncIterator[Any]:
        async def run() -> AsyncIterator[Any]:
            async for _ in source:
                raise TimeoutError("socket read timed out")
            yield None  # pragma: no cover

        return run()

    with pytest.raises(StageError, match="TimeoutError: socket read timed out") as info:
        await run_conversation(pipeline, [say("hi")], time_limit=30)
    assert isinstance(info.value.__cause__, TimeoutError)


async def test_the_time_limit_names_the_step_and_the_last_failed_reply() -> None:
    llm = scripted_llm(
        ["Let me", ProviderTimeout("llm (http://127.0.0.1:9/v1) timed out", provider="llm")],
        [30.0, "Late."],
    )
    bot = agent(llm=llm, tts=tones())
    with pytest.raises(TimeoutError, match=r"not finished after 0\.5 s") as info:
        await run_conversation(bot, [say("one"), say("two")], time_limit=0.5)
    text = str(info.value)
    assert "step 2" in text or "waiting for the last reply" in text
    assert "ProviderTimeout: llm (http://127.0.0.1:9/v1) timed out" in text


async def test_a_failed_reply_alone_does_not_end_the_conversation() -> None:
    error = ProviderTimeout("llm timed out", provider="llm")
    bot = agent(llm=scripted_llm(["Hm", error], "Better."), tts=tones())
    result = await run_conversation(bot, [say("one"), say("two")], time_limit=30)
    assert [f.error for f in result.of(ReplyFailed)] == ["ProviderTimeout: llm timed out"]
    assert result.transcript[-1] == ("assistant", "Better.")
