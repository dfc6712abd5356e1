"""Two made-up evaluation runs for the report tests (no tests here): a baseline and a run after a
change, with failures, a crash, a retried conversation, a scenario run three times and seeded
latencies."""

from __future__ import annotations

import random

from voicekit.eval import Check, Line, ReplyFailure, ScenarioResult, ToolUse, TurnResult

NAMES = ["greeting", "weather in Rome", "weather in Paris", "time of day", "barge-in stop",
         "idle caller", "transfer to a human", "spell a name", "cancel an order", "dtmf menu",
         "long question", "goodbye"]


def _turn(rng: random.Random, index: int, user: str, reply: str, *, slow: float,
          ok: bool = True, expectation: str = "reply mentions 'Rome'",
          message: str = "") -> TurnResult:
    vad = 0.2
    stt = vad + rng.uniform(0.1, 0.5) * slow
    end = max(stt, 0.8) + rng.uniform(0.0, 0.05)
    token = end + rng.uniform(0.05, 0.4) * slow
    sentence = token + rng.uniform(0.02, 0.2)
    audio = sentence + rng.uniform(0.05, 0.3) * slow
    return TurnResult(
        index, user, reply,
        {"vad_stop": vad, "transcript": round(stt, 4), "turn_end": round(end, 4),
         "llm_first_token": round(token, 4), "first_sentence": round(sentence, 4),
         "first_audio": round(audio, 4)},
        checks=[Check(expectation, ok, "" if ok else message)],
    )


def make_run(*, seed: int, slow: float, broken: set[str], crashed: set[str],
             label: str) -> list[ScenarioResult]:
    """One result per scenario name (``"time of day"`` three times), those in ``broken``
    failing a check, those in ``crashed`` crashing."""
    rng = random.Random(seed)
    out = []
    for name in NAMES:
        for _ in range(3 if name == "time of day" else 1):
            source = f"evals/sample/{name.replace(' ', '_')}.yaml"
            if name in crashed:
                out.append(ScenarioResult(name, source, error="ProviderTimeout: [llm] no answer "
                                          "in 5 s", attempts=2, wall_time=5.1, seed=seed,
                                          labels={"turns": label}))
                continue
            fail = name in broken
            turns = [
                _turn(rng, 0, f"Question about {name}?", f"Here is the answer about {name}.",
                      slow=slow, ok=not fail, expectation=f"reply mentions '{name.split()[0]}'",
                      message=f"the reply was: Sorry, I did not get that ({name})"),
                _turn(rng, 1, "Thanks, bye.", "Goodbye!", slow=slow),
            ]
            transcript = [
                Line("user", turns[0].user, 0.0),
                Line("agent", "Sorry, I did not get that." if fail else turns[0].reply,
                     round(1.5 + rng.random(), 3)),
                Line("user", "Thanks, bye.", 4.0),
                Line("agent", "Goodbye!", round(5.0 + rng.random(), 3)),
            ]
            out.append(ScenarioResult(
                name, source, turns=turns, transcript=transcript,
                checks=[Check("no reply failed", not fail, "llm: timeout" if fail else "")],
                tool_calls=[ToolUse("get_weather", {"city": name.split()[-1]}, '{"t": 22}', 0)]
                if "weather" in name else [],
                failures=[ReplyFailure("llm", "timeout", True, 0)] if fail else [],
                ended=name == "goodbye", transferred="+15550100" if "transfer" in name else None,
                wall_time=round(rng.uniform(4, 9), 3), seed=seed, labels={"turns": label},
            ))
    return out


def baseline_run() -> list[ScenarioResult]:
    return make_run(seed=1, slow=1.0, broken={"spell a name", "dtmf menu"}, crashed=set(),
                    label="timeout 0.6 s")


def current_run() -> list[ScenarioResult]:
    return make_run(seed=2, slow=1.6, broken={"spell a name", "weather in Paris"},
                    crashed={"long question"}, label="smart turn")
