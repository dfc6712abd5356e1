"""Call control as tools: hang up, transfer, press keys.

A tool acts on the call by returning a :class:`~voicekit.phone.CallAction` (or a bare
:class:`~voicekit.HangUp`, :class:`~voicekit.TransferCall` or :class:`~voicekit.SendDtmf`): the
agent yields its event into its output, where the transport acts on it. :func:`hang_up`,
:func:`transfer` and :func:`press` make those values for your own tools; :func:`end_call`,
:func:`transfer_call` and :func:`send_dtmf` are ready-made tools for the LLM.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._agent_tools import CallAction, Tool, tool
from .._errors import ConfigError
from .._frozen import FrozenDict
from ..events import HangUp, SendDtmf, TransferCall
from ._digits import KEYS

__all__ = [
    "DEFAULT_TRANSFER_LINE",
    "end_call",
    "hang_up",
    "press",
    "send_dtmf",
    "transfer",
    "transfer_call",
]

DEFAULT_TRANSFER_LINE = "Please hold while I transfer your call."
"""What the agent says before a transfer, unless told otherwise."""


def _variables(owner: str, variables: Mapping[str, str] | None) -> FrozenDict:
    if variables is None:
        return FrozenDict()
    if not isinstance(variables, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in variables.items()
    ):
        raise ConfigError(f"{owner}: variables must map strings to strings (AudioHook's rule)")
    return FrozenDict(variables)


def _line(owner: str, say: str | None) -> str | None:
    if say is not None and not isinstance(say, str):
        raise ConfigError(f"{owner}: the line to say must be a str or None, got {say!r}")
    return say.strip() or None if say is not None else None


def hang_up(
    say: str | None = None,
    *,
    reason: str = "completed",
    variables: Mapping[str, str] | None = None,
) -> CallAction:
    """What a tool returns to end the call: the agent finishes speaking — ``say`` (spoken by
    the agent itself, with no further LLM round) or else the LLM's goodbye — and then yields
    :class:`~voicekit.HangUp` (``reason``, ``variables`` for the platform).

    >>> action = hang_up("Thanks for calling. Goodbye!", variables={"outcome": "resolved"})
    >>> action.event.reason, dict(action.event.variables), action.say
    ('completed', {'outcome': 'resolved'}, 'Thanks for calling. Goodbye!')
    """
    if not isinstance(reason, str) or not reason:
        raise ConfigError(f"hang_up: reason must be a non-empty str, got {reason!r}")
    return CallAction(HangUp(reason, _variables("hang_up", variables)), say=_line("hang_up", say))


def transfer(
    to: str,
    *,
    say: str | None = DEFAULT_TRANSFER_LINE,
    variables: Mapping[str, str] | None = None,
) -> CallAction:
    """What a tool returns to hand the call to ``to`` (a phone number or SIP address): the agent
    says ``say`` (None: the LLM's own words instead), then yields
    :class:`~voicekit.TransferCall`.

    >>> transfer("+15550100").event.to
    '+15550100'
    """
    if not isinstance(to, str) or not to.strip():
        raise ConfigError(f"transfer: to must be a phone number or SIP address, got {to!r}")
    event = TransferCall(to.strip(), _variables("transfer", variables))
    return CallAction(event, say=_line("transfer", say))


def press(digits: str) -> CallAction:
    """What a tool returns to press keypad keys on the call (to navigate a phone menu): the
    agent yields :class:`~voicekit.SendDtmf` at once, after the audio before it.

    >>> press("1#").event
    SendDtmf(digits='1#')
    """
    if not isinstance(digits, str) or not digits or any(d not in KEYS for d in digits):
        raise ConfigError(f"press: digits must be keypad keys (0-9, *, #, A-D), got {digits!r}")
    return CallAction(SendDtmf(digits))


def end_call(
    *,
    goodbye: str | None = None,
    reason: str = "completed",
    variables: Mapping[str, str] | None = None,
    name: str = "end_call",
    description: str | None = None,
) -> Tool:
    """A tool the LLM calls to end the call. The agent finishes speaking (``goodbye``, said by
    the agent itself, or else the LLM's own goodbye after the call), then yields
    :class:`~voicekit.HangUp`. Calling the tool directly gives the :class:`CallAction`.

    >>> bye = end_call(goodbye="Goodbye!")
    >>> bye.spec["function"]["name"], bye().say
    ('end_call', 'Goodbye!')
    """
    action = hang_up(goodbye, reason=reason, variables=variables)

    def end() -> CallAction:
        return action

    text = description or (
        "End the phone call, when the caller has said goodbye or the conversation is over."
    )
    return tool(end, name=name, description=text)


def transfer_call(
    to: str | Mapping[str, str],
    *,
    line: str | None = DEFAULT_TRANSFER_LINE,
    variables: Mapping[str, str] | None = None,
    name: str = "transfer_call",
    description: str | None = None,
) -> Tool:
    """A tool the LLM calls to transfer the call. ``to``: one destination (the tool then takes
    no argument), or names → destinations (``{"sales": "+15550100", "support":
    "sip:help@pbx.example"}``: the LLM picks a name, never a number of its own). The agent says
    ``line`` (None: the LLM's own words), then yields :class:`~voicekit.TransferCall`.

    >>> desk = transfer_call({"sales": "+15550100", "support": "+15550199"})
    >>> desk.spec["function"]["parameters"]["properties"]["to"]["enum"]
    ['sales', 'support']
    >>> desk(to="support").event.to
    '+15550199'
    """
    text = description or "Transfer the caller to a person."
    if isinstance(to, str):
        action = transfer(to, say=line, variables=variables)

        def fixed() -> CallAction:
            return action

        return tool(fixed, name=name, description=text)
    if not isinstance(to, Mapping) or not to:
        raise ConfigError(
            "transfer_call: to must be a destination or a mapping of names to destinations"
        )
    actions = {
        str(key): transfer(value, say=line, variables=variables) for key, value in to.items()
    }

    def chosen(to: str) -> CallAction:
        if to not in actions:
            raise ValueError(f"unknown destination {to!r}; choose one of {sorted(actions)}")
        return actions[to]

    schema: dict[str, Any] = {
        "name": name,
        "description": text,
        "parameters": {
            "type": "object",
            "properties": {
                "to": {
                    "type": "string",
                    "enum": sorted(actions),
                    "description": "Who to transfer the caller to.",
                }
            },
            "required": ["to"],
        },
    }
    return tool(chosen, schema=schema)


def send_dtmf(*, name: str = "send_dtmf", description: str | None = None) -> Tool:
    """A tool the LLM calls to press keys on the call (to get through another company's phone
    menu). The agent yields :class:`~voicekit.SendDtmf` at once; the transport plays the keys
    where the carrier allows it.

    >>> keys = send_dtmf()
    >>> keys(digits="2").event
    SendDtmf(digits='2')
    >>> keys.spec["function"]["parameters"]["required"]
    ['digits']
    """

    def press_keys(digits: str) -> CallAction:
        return press(digits)

    schema = {
        "name": name,
        "description": description
        or "Press keys on the phone keypad, to choose an option of an automated phone menu.",
        "parameters": {
            "type": "object",
            "properties": {
                "digits": {
                    "type": "string",
                    "description": "The keys to press, in order: 0-9, * and #.",
                }
            },
            "required": ["digits"],
        },
    }
    return tool(press_keys, schema=schema)
