"""The idle caller: what the agent does when nobody speaks after it has finished.

An option of the agent (``agent(idle=phone.idle(...))``), not a stage of its own, so that data
keeps flowing one way: only the agent knows when it has finished speaking (its last sentence's
``Played`` came back, or its audio ended on the stream clock), whether a reply or a tool is still
running, and what the Session holds. A stage before it would need the agent's state sent
backwards; a stage after it would speak lines the agent never hears of, on a clock it does not
keep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .._errors import ConfigError

__all__ = ["DEFAULT_GOODBYE", "DEFAULT_REPROMPT", "Idle", "idle"]

DEFAULT_REPROMPT = "Are you still there?"
"""What the agent asks an idle caller, unless told otherwise."""

DEFAULT_GOODBYE = "I can't hear anyone, so I'll end the call now. Goodbye!"
"""What the agent says before it hangs up on an idle caller, unless told otherwise."""


@dataclass(frozen=True, slots=True)
class Idle:
    """When the caller says nothing for ``after`` seconds of stream time once the agent has
    finished speaking, the agent says ``reprompt``; after ``reprompts`` of them with no answer
    it says ``goodbye`` and hangs up (:class:`~voicekit.HangUp` with reason ``"idle"``). See
    :func:`idle`."""

    after: float = 8.0
    reprompts: int = 1
    reprompt: str = DEFAULT_REPROMPT
    goodbye: str = DEFAULT_GOODBYE

    def __post_init__(self) -> None:
        after = self.after
        if (
            isinstance(after, bool)
            or not isinstance(after, int | float)
            or not math.isfinite(after)
            or after <= 0
        ):
            raise ConfigError(f"idle: after must be a positive number of seconds, got {after!r}")
        object.__setattr__(self, "after", float(after))
        if isinstance(self.reprompts, bool) or not isinstance(self.reprompts, int):
            raise ConfigError(f"idle: reprompts must be an int ≥ 0, got {self.reprompts!r}")
        if self.reprompts < 0:
            raise ConfigError(f"idle: reprompts must be ≥ 0, got {self.reprompts}")
        for name in ("reprompt", "goodbye"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"idle: {name} must be a str, got {getattr(self, name)!r}")


def idle(
    after: float = 8.0,
    *,
    reprompts: int = 1,
    reprompt: str = DEFAULT_REPROMPT,
    goodbye: str = DEFAULT_GOODBYE,
) -> Idle:
    """The idle-caller policy for ``agent(idle=...)``.

    The timer starts when the agent has finished speaking — the ``Played`` of its last
    sentence's mark, with a transport that acknowledges marks; else the end of its audio on the
    outbound clock — and runs on *stream time* (the times the inbound audio and events carry:
    deterministic in tests, and it only moves while the call's audio flows). It never runs while
    the agent speaks, a tool runs or the caller speaks or keys in digits; any of those from the
    caller resets the count of reprompts. The lines are recorded in the Session as assistant
    messages marked ``"kind": "idle_reprompt"`` / ``"idle_goodbye"`` (never the LLM's words:
    the LLM is not asked), and the hang-up in ``session.memory["call_end"]``.

    >>> idle(10, reprompts=2)
    Idle(after=10.0, reprompts=2, reprompt='Are you still there?', goodbye="I can't hear anyone, so I'll end the call now. Goodbye!")
    """  # noqa: E501
    return Idle(after, reprompts, reprompt, goodbye)
