"""The offline default "brain": an honest, deterministic, rule-based responder — not a model.

No instruction-tuned language model ships on PyPI, so when no LLM is configured voicekit answers
with :func:`local_responder`. It has the shape of :func:`voicekit.llm.chat` with the endpoint
bound (``messages`` in; :class:`~voicekit.Token` s, :class:`~voicekit.ToolCall` s, one
:class:`~voicekit.Usage` and a :class:`~voicekit.Finish` out), so it drops in wherever an LLM
function goes. It recognises a few intents in the last user message:

* a greeting, thanks, goodbye, "what can you do";
* "what time is it" (and the date);
* "weather in <city>": it calls the demo tool ``get_weather`` when the tools include it, then
  answers from the tool result message;

and otherwise says what it heard and how to plug in a real LLM. Replies are short, with a short
first sentence, so speech starts quickly. The same input always gives the same reply (the time
answer reads the clock, which can be passed in).

>>> import asyncio
>>> from voicekit import Token
>>> async def reply(text):
...     events = local_responder([{"role": "user", "content": text}])
...     return "".join([e.text async for e in events if isinstance(e, Token)])
>>> asyncio.run(reply("Hello!"))
'Hello! How can I help?'
>>> print(asyncio.run(reply("Sing me a song.")))  # doctest: +NORMALIZE_WHITESPACE
I heard: 'Sing me a song'. I'm voicekit's offline responder;
point --llm at a real model to get real answers.
"""

from __future__ import annotations

import asyncio
import json
import re
import zlib
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from .._agent_tools import Tool, tool
from .._errors import ConfigError
from ..events import Finish, Token, ToolCall, Usage
from ..session import Session

__all__ = ["WEATHER_TOOL", "demo_tools", "get_weather", "local_responder"]

LocalEvent = Token | ToolCall | Usage | Finish

OFFLINE_HINT = "I'm voicekit's offline responder; point --llm at a real model to get real answers."
"""The sentence every unrecognised request ends with."""

_QUOTE_LIMIT = 80  # characters of the user's words quoted back at most


# ---------------------------------------------------------------------------------------------
# The demo tool


_CONDITIONS = ("sunny", "partly cloudy", "cloudy", "light rain", "windy", "foggy", "clear")


def get_weather(city: str) -> dict[str, Any]:
    """Demo weather: made up but stable (a hash of the city name), never a network call.

    >>> get_weather("Rome")
    {'city': 'Rome', 'conditions': 'foggy', 'temperature_c': 22}
    """
    if not isinstance(city, str) or not city.strip():
        raise ConfigError(f"get_weather needs a city name, got {city!r}")
    name = " ".join(city.split())
    seed = zlib.crc32(name.lower().encode())
    return {
        "city": name,
        "conditions": _CONDITIONS[seed % len(_CONDITIONS)],
        "temperature_c": 5 + (seed >> 8) % 26,
    }


WEATHER_TOOL: Tool = tool(
    get_weather,
    schema={
        "name": "get_weather",
        "description": (
            "Get today's weather for a city (demo data: made up, but the same for the same city)."
        ),
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city name, e.g. Paris"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
)
"""The demo weather tool (:func:`get_weather`)."""


def demo_tools() -> tuple[Tool, ...]:
    """The demo tools: just ``get_weather(city)``, deterministic and offline.

    They are :class:`voicekit.Tool` values: give them to ``agent(tools=...)``, or their
    ``.spec`` to :func:`~voicekit.llm.chat` (``tools=[t.spec for t in demo_tools()]``).

    >>> weather = demo_tools()[0]
    >>> weather.name, weather.spec["function"]["parameters"]["required"]
    ('get_weather', ['city'])
    >>> weather("Paris")
    {'city': 'Paris', 'conditions': 'cloudy', 'temperature_c': 14}
    """
    return (WEATHER_TOOL,)


# ---------------------------------------------------------------------------------------------
# Reading the conversation


def _text(content: Any) -> str:
    """The text of a message's content (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, Mapping) and part.get("type") in ("text", "input_text")
        )
    return ""


def _tool_names(tools: Sequence[Any] | None) -> set[str]:
    names: set[str] = set()
    for offered in tools or ():
        name = getattr(offered, "name", None)
        if isinstance(offered, Mapping):
            function = offered.get("function")
            name = function.get("name") if isinstance(function, Mapping) else offered.get("name")
        if isinstance(name, str):
            names.add(name)
    return names


def _words(text: str) -> int:
    return len(text.split())


# ---------------------------------------------------------------------------------------------
# Intents

_WEATHER = re.compile(r"\b(?:weather|forecast|temperature)\b", re.I)
_CITY = re.compile(
    r"\b(?:in|for|at)\s+([A-Za-zÀ-ÿ][\wÀ-ÿ'.-]*(?:[ -][A-Za-zÀ-ÿ][\wÀ-ÿ'.-]*){0,3})", re.I
)
_CITY_STOP = re.compile(r"\s+(?:today|tomorrow|now|right|please|this|tonight)\b.*$", re.I)
_TIME = re.compile(r"\b(?:what(?:'s| is)? the time|what time|time is it|the time)\b", re.I)
_DATE = re.compile(r"\b(?:what(?:'s| is)? (?:the )?date|what day|today's date)\b", re.I)
_ABILITIES = re.compile(
    r"\b(?:what can you do|what do you do|who are you|what are you|help me|can you help|help)\b",
    re.I,
)
_THANKS = re.compile(r"\b(?:thanks|thank you|cheers|much appreciated)\b", re.I)
_BYE = re.compile(r"\b(?:bye|goodbye|good night|see you|talk to you later|that's all)\b", re.I)
_HELLO = re.compile(
    r"^\W*(?:hi|hello|hey|hiya|howdy|good (?:morning|afternoon|evening)|greetings)\b", re.I
)


def _city(text: str) -> str | None:
    match = _CITY.search(text)
    if match is None:
        return None
    city = _CITY_STOP.sub("", match.group(1)).strip(" .'-")
    if not city or city.lower() in {"the", "a", "my", "here"}:
        return None
    return " ".join(w if w[:1].isupper() else w.capitalize() for w in city.split())


def _heard(text: str) -> str:
    """The user's words, quotable inside one sentence: no sentence ends inside, trimmed."""
    words = " ".join(text.split())
    words = re.sub(r"[.!?]+(?=\s)", ",", words).rstrip(" .!?,;:")
    words = words.replace("'", "’")
    if len(words) > _QUOTE_LIMIT:
        words = words[:_QUOTE_LIMIT].rsplit(" ", 1)[0] + "…"
    return words


def _clock_reply(now: datetime, *, date: bool) -> str:
    hour = now.hour % 12 or 12
    time_text = f"{hour}:{now.minute:02d} {'AM' if now.hour < 12 else 'PM'}"
    if date:
        return f"It's {now:%A}, {now:%B} {now.day}. The time is {time_text}."
    return f"It's {time_text}."


def _from_tool(name: str, content: str) -> str:
    """A reply that reads a tool result out."""
    try:
        data = json.loads(content)
    except ValueError:
        data = None
    if (
        isinstance(data, Mapping)
        and isinstance(data.get("city"), str)
        and "conditions" in data
        and "temperature_c" in data
    ):
        conditions = str(data["conditions"])
        return (
            f"{conditions[:1].upper()}{conditions[1:]} in {data['city']}. "
            f"It's {data['temperature_c']} degrees, says the demo weather tool."
        )
    snippet = " ".join(str(content).split())[:120]
    return f"The {name} tool says: {snippet}." if snippet else f"The {name} tool returned nothing."


def _reply(text: str, tool_names: set[str], clock: Callable[[], datetime]) -> str | dict[str, str]:
    """The reply text for what the user said, or ``{"city": ...}`` to call ``get_weather``."""
    if not text.strip():
        return "I didn't catch that. Could you say it again?"
    if _WEATHER.search(text):
        city = _city(text)
        if city is None:
            return "Which city? Ask me about the weather in a city, like Paris."
        if "get_weather" in tool_names:
            return {"city": city}
        return (
            f"I need the weather tool for {city}. "
            "Pass demo_tools() as the tools, or point --llm at a real model."
        )
    if _DATE.search(text):
        return _clock_reply(clock(), date=True)
    if _TIME.search(text):
        return _clock_reply(clock(), date=False)
    if _ABILITIES.search(text):
        return (
            "I'm voicekit's offline responder. I can greet you, tell the time, and check the "
            "demo weather tool. For anything else, point --llm at a real model."
        )
    if _THANKS.search(text):
        return "You're welcome!"
    if _BYE.search(text):
        return "Goodbye! Talk soon."
    if _HELLO.search(text):
        return "Hello! How can I help?"
    return f"I heard: '{_heard(text)}'. {OFFLINE_HINT}"


async def local_responder(
    messages: Sequence[Mapping[str, Any]] | Session,
    /,
    *,
    tools: Sequence[Any] | None = None,
    session: Session | None = None,
    system: str | None = None,
    clock: Callable[[], datetime] = datetime.now,
) -> AsyncGenerator[LocalEvent, None]:
    """Answer the last user message by rules, streamed word by word, like an LLM function.

    ``messages``: OpenAI-style dicts, or a Session (its messages). If the conversation ends with
    tool results after the last user message, the reply reads the last result out. Otherwise the
    last user message is matched against a few intents (see the module docs); a weather request
    yields one ``ToolCall("get_weather", {"city": ...})`` and ``Finish("tool_calls")`` when
    ``tools`` include ``get_weather`` (schemas, or Tools with a ``name``). ``session`` and
    ``system`` are accepted for the shape and not used. ``clock`` gives the time for "what time
    is it".

    Yields Tokens (one per word, the space in front), then ``Usage`` (words counted as tokens)
    and ``Finish``. Deterministic for a given input and clock; never touches the network.
    """
    history = messages.messages if isinstance(messages, Session) else messages
    prompt_words = _words(system or "") + sum(
        _words(_text(m.get("content"))) for m in history if isinstance(m, Mapping)
    )
    last_user = None
    results: list[Mapping[str, Any]] = []
    for message in history:
        role = message.get("role") if isinstance(message, Mapping) else None
        if role == "user":
            last_user, results = message, []
        elif role == "tool":
            results.append(message)

    if results:
        result = results[-1]
        name = str(result.get("name") or "get_weather")
        reply: str | dict[str, str] = _from_tool(name, _text(result.get("content")))
    else:
        text = _text(last_user.get("content")) if last_user is not None else ""
        reply = _reply(text, _tool_names(tools), clock)

    if isinstance(reply, dict):
        await asyncio.sleep(0)
        arguments = json.dumps(reply, ensure_ascii=False)
        call_id = f"call_local_{len(history)}_{zlib.crc32(arguments.encode()):08x}"
        yield ToolCall(call_id, "get_weather", arguments)
        yield Usage(prompt_tokens=prompt_words, completion_tokens=1)
        yield Finish("tool_calls")
        return

    words = reply.split(" ")
    for index, word in enumerate(words):
        await asyncio.sleep(0)  # a real stream: other tasks run, cancellation lands between words
        yield Token(word if index == 0 else " " + word)
    yield Usage(prompt_tokens=prompt_words, completion_tokens=len(words))
    yield Finish("stop")
