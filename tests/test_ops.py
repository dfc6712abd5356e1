"""The stream core: stages, flows, operators and the cancellation contract."""

from __future__ import annotations

import asyncio
import warnings

import pytest
from aiostream import pipe
from aiostream import stream as aiostream_stream

import voicekit as vk
from voicekit.ops import Flow, Stage, failover, parallel, stage, switch_map, tap

# -- helpers ----------------------------------------------------------------------------------


class Probe:
    """Records the lifecycle of generators it makes."""

    def __init__(self) -> None:
        self.closed: list[str] = []
        self.gens: list[object] = []

    def source(self, n: int = 1_000_000, name: str = "source", delay: float = 0.0):
        async def gen():
            try:
                for i in range(n):
                    if delay:
                        await asyncio.sleep(delay)
                    yield i
            finally:
                self.closed.append(name)

        g = gen()
        self.gens.append(g)
        return g

    def stage(self, name: str):
        probe = self

        @stage
        async def passthrough(source, /):
            try:
                async for item in source:
                    yield item
            finally:
                probe.closed.append(name)

        return passthrough()


def is_closed(gen) -> bool:
    """An async generator that finished or was closed has no frame left."""
    return gen.ag_frame is None


def other_tasks() -> set[asyncio.Task]:
    me = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not me}


@stage
async def add(source, /, *, n: int = 1):
    async for x in source:
        yield x + n


# -- @stage and Flow --------------------------------------------------------------------------


async def test_stage_three_spellings_agree():
    direct = await add([1, 2, 3], n=10).list()
    piped = await ([1, 2, 3] | add(n=10)).list()
    applied = await add(n=10)([1, 2, 3]).list()
    assert direct == piped == applied == [11, 12, 13]


async def test_stage_composition_is_a_stage_and_flows_are_reiterable():
    both = add(n=1) | add(n=100)
    assert isinstance(both, Stage)
    flow = range(3) | both
    assert await flow.list() == [101, 102, 103]
    assert await flow.list() == [101, 102, 103]  # a Flow is a description: runs again
    assert flow.stages == ("add", "add")


async def test_stage_rejects_bad_parameters_when_built():
    with pytest.raises(TypeError, match=r"add\(\).*unexpected keyword argument 'm'"):
        add(m=3)
    with pytest.raises(TypeError, match="only positional argument"):
        add([1], 2)
    with pytest.raises(TypeError, match="async generator function"):
        stage(lambda source: source)


async def test_bad_source_type_is_a_clear_error():
    with pytest.raises(TypeError, match="source must be an async iterable"):
        await add(42).list()


async def test_aiostream_interoperates_both_ways():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "iterated outside of its context" warning
        out = await (aiostream_stream.range(5) | add(n=1) | pipe.take(3) | pipe.list())
        assert out == [1, 2, 3]
        flow = aiostream_stream.range(3) | add(n=1)
        assert isinstance(flow, Flow)
        assert await flow.list() == [1, 2, 3]


# -- cancellation contract --------------------------------------------------------------------


async def test_break_inside_open_closes_every_stage_at_once():
    probe = Probe()
    src = probe.source()
    flow = src | probe.stage("a") | probe.stage("b") | probe.stage("c")
    async with flow.open() as items:
        async for item in items:
            if item == 3:
                break
    # closed downstream first, then the source; all before the context exited
    assert probe.closed == ["c", "b", "a", "source"]
    assert is_closed(src)
    assert not other_tasks()


async def test_consumer_cancelled_closes_everything_and_leaves_no_task():
    probe = Probe()
    flow = probe.source(delay=0.05) | probe.stage("a") | switch_map(
        lambda x: probe.source(n=50, name=f"inner{x}", delay=0.01)
    )
    started = asyncio.Event()

    async def consume():
        async for _ in flow:
            started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert "source" in probe.closed and "a" in probe.closed
    assert all(is_closed(g) for g in probe.gens)
    assert not other_tasks()


async def test_error_names_the_stage_that_raised_it():
    @stage
    async def explode(source, /):
        async for x in source:
            if x == 2:
                raise KeyError("no such key")
            yield x

    probe = Probe()
    flow = probe.source() | add() | explode() | probe.stage("after")
    with pytest.raises(vk.StageError) as info:
        await flow.list()
    assert info.value.stage == "explode"
    assert "[explode] KeyError" in str(info.value)
    assert isinstance(info.value.__cause__, KeyError)
    assert probe.closed == ["after", "source"]


async def test_voicekit_errors_keep_their_type_and_gain_the_stage():
    @stage
    async def strict(source, /):
        async for _ in source:
            raise vk.AudioError("sample rate 0 is not positive")
            yield

    with pytest.raises(vk.AudioError, match=r"^\[strict\] sample rate 0"):
        await strict([1]).list()


async def test_error_from_source_is_attributed_to_the_source():
    async def broken():
        yield 1
        raise ValueError("disk on fire")

    with pytest.raises(vk.StageError, match=r"source broken.*disk on fire"):
        await (broken() | add()).list()


async def test_consumer_error_thrown_in_is_not_blamed_on_a_stage():
    probe = Probe()
    flow = probe.source() | probe.stage("a")
    with pytest.raises(ZeroDivisionError):
        async with flow.open() as items:
            async for _ in items:
                1 / 0  # noqa: B018
    assert probe.closed == ["a", "source"]


# -- tap -------------------------------------------------------------------------------------


async def test_tap_sync_and_async():
    seen: list[int] = []

    async def record(x: int) -> None:
        await asyncio.sleep(0)
        seen.append(-x)

    out = await ([1, 2] | tap(seen.append) | tap(record)).list()
    assert out == [1, 2]
    assert seen == [1, -1, 2, -2]


# -- switch_map ------------------------------------------------------------------------------


async def test_switch_map_cancels_the_inner_stream_in_flight():
    inner_closed: list[str] = []
    cancelled: list[str] = []

    async def turns():
        yield "a"
        await asyncio.sleep(0.05)
        yield "b"

    async def reply(turn: str):
        try:
            for i in range(5):
                yield f"{turn}{i}"
                await asyncio.sleep(0.03)
        except asyncio.CancelledError:
            cancelled.append(turn)
            raise
        finally:
            inner_closed.append(turn)

    out = await (turns() | switch_map(reply)).list()
    assert out[:2] == ["a0", "a1"]
    assert "a2" not in out and "a4" not in out
    assert out[-5:] == ["b0", "b1", "b2", "b3", "b4"]
    assert inner_closed == ["a", "b"]
    assert cancelled == ["a"]  # cancelled while awaiting, not left running
    assert not other_tasks()


async def test_switch_map_cancels_a_pending_request_before_its_first_item():
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def turns():
        yield 1
        await started.wait()
        yield 2

    async def slow_first_byte(turn: int):
        if turn == 1:
            started.set()
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.set()
                raise
        yield f"reply{turn}"

    out = await asyncio.wait_for((turns() | switch_map(slow_first_byte)).list(), 2)
    assert out == ["reply2"]
    assert cancelled.is_set()


async def test_switch_map_inner_error_propagates_and_cleans_up():
    async def turns():
        yield 1
        await asyncio.sleep(10)

    async def bad(_):
        yield "x"
        raise RuntimeError("tts crashed")

    with pytest.raises(vk.StageError, match="tts crashed"):
        await (turns() | switch_map(bad)).list()
    assert not other_tasks()


# -- parallel --------------------------------------------------------------------------------


@stage
async def slow(source, /, *, tag: str = "slow", delay: float = 0.03):
    async for x in source:
        await asyncio.sleep(delay)
        yield f"{tag}{x}"


@stage
async def fast(source, /, *, tag: str = "fast"):
    async for x in source:
        yield f"{tag}{x}"


async def test_parallel_arrival_order():
    out = await ([1, 2, 3] | parallel(slow(), fast(), order="arrival")).list()
    assert out == ["fast1", "slow1", "fast2", "slow2", "fast3", "slow3"]


async def test_parallel_pipeline_order_follows_definition_order():
    out = await ([1, 2, 3] | parallel(slow(), fast(), order="pipeline")).list()
    assert out == ["slow1", "fast1", "slow2", "fast2", "slow3", "fast3"]


async def test_parallel_branches_run_concurrently():
    loop = asyncio.get_running_loop()
    start = loop.time()
    branches = [slow(tag=str(k), delay=0.05) for k in range(4)]
    out = await ([1, 2] | parallel(*branches, order="pipeline")).list()
    elapsed = loop.time() - start
    assert out == ["01", "11", "21", "31", "02", "12", "22", "32"]
    assert elapsed < 0.05 * 2 * 4 * 0.6  # well under the serial time


async def test_parallel_multiple_outputs_per_item_and_trailing_output():
    @stage
    async def twice_then_total(source, /):
        total = 0
        async for x in source:
            total += x
            yield f"a{x}"
            yield f"b{x}"
        yield f"total{total}"

    out = await ([1, 2] | parallel(slow(delay=0.01), twice_then_total(), order="pipeline")).list()
    assert out == ["slow1", "a1", "b1", "slow2", "a2", "b2", "total3"]


async def test_parallel_branch_error_cancels_the_others():
    @stage
    async def bad(source, /):
        async for x in source:
            if x == 2:
                raise ValueError("branch broke")
            yield x

    with pytest.raises(vk.StageError, match="branch broke"):
        await ([1, 2, 3] | parallel(slow(delay=0.01), bad())).list()
    assert not other_tasks()


async def test_parallel_validates_arguments():
    with pytest.raises(ValueError, match="order must be"):
        parallel(fast(), order="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        parallel()
    with pytest.raises(TypeError, match="must be Stages"):
        parallel(lambda s: s)  # type: ignore[arg-type]


# -- failover --------------------------------------------------------------------------------


def provider(name: str, *, fail_on: int | None = None, calls: list[str] | None = None):
    @stage
    async def speak(source, /):
        async for x in source:
            if calls is not None:
                calls.append(f"{name}:{x}")
            if x == fail_on:
                raise ConnectionError(f"{name} is down")
            yield f"{name}:{x}"

    speak.__name__ = name
    return Stage.of(speak._fn, name)  # type: ignore[attr-defined]


async def test_failover_switches_on_the_active_stages_own_error_and_replays_the_item():
    calls: list[str] = []
    primary = provider("primary", fail_on=2, calls=calls)
    backup = provider("backup", calls=calls)
    out = await ([1, 2, 3] | failover(primary, backup)).list()
    assert out[0] == "primary:1"
    assert isinstance(out[1], vk.Switched)
    assert (out[1].from_name, out[1].to_name) == ("primary", "backup")
    assert "primary is down" in out[1].error
    assert out[2:] == ["backup:2", "backup:3"]
    assert calls == ["primary:1", "primary:2", "backup:2", "backup:3"]


async def test_failover_does_not_switch_on_an_error_passing_through():
    async def upstream():
        yield 1
        raise OSError("microphone unplugged")

    calls: list[str] = []
    chain = failover(provider("primary", calls=calls), provider("backup", calls=calls))
    with pytest.raises(vk.StageError) as info:
        await (upstream() | chain).list()
    assert isinstance(info.value.__cause__, OSError)
    assert calls == ["primary:1"]  # the backup never ran


async def test_failover_last_provider_error_is_raised():
    chain = failover(provider("a", fail_on=1), provider("b", fail_on=1), announce=False)
    with pytest.raises(vk.StageError, match="b is down"):
        await ([1] | chain).list()


async def test_failover_does_not_replay_an_item_that_already_produced_output():
    @stage
    async def half(source, /):
        async for x in source:
            yield f"half-{x}-part1"
            raise ConnectionError("dropped mid-item")

    out = await ([1, 2] | failover(Stage.of(half._fn, "half"), provider("b"))).list()  # type: ignore[attr-defined]
    assert out[0] == "half-1-part1"
    assert isinstance(out[1], vk.Switched)
    assert out[2:] == ["b:2"]


async def test_collect_and_repr():
    assert await vk.collect(range(3)) == [0, 1, 2]
    assert repr(range(2) | add() | add(n=2)) == "Flow(source | add | add)"
    assert "add" in repr(add)
