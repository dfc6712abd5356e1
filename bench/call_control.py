"""How long after the caller heard the end of the goodbye does the carrier get the hang-up?

For each carrier, ``--calls`` simulated calls (``voicekit.serve.app`` under uvicorn, the fake
carrier peers of ``tests/servers`` playing the audio on their own clock, the fake REST APIs of
``tests/servers/fake_rest.py``): the agent says a 1 s goodbye, a mark, then ``HangUp``. Measured
per call on one monotonic clock: from the moment the peer echoed the goodbye's mark (its audio
has played: what the carrier acknowledges) to the REST hang-up arriving at the fake API — the
latency the connection layer adds to ending a call — and that it never came early (negative).

    python bench/call_control.py --calls 20
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from servers import fake_rest
from servers.fake_plivo import PlivoCall
from servers.fake_rest import FakeRest
from servers.fake_telnyx import TelnyxCall
from servers.fake_twilio import TwilioCall
from servers.serving import serving
from test_call_control import Script, api_for

import voicekit as vk
import voicekit.serve
from voicekit.events import HangUp

assert fake_rest  # the credentials the fake accepts come from it (api_for)


async def one_call(carrier: str, index: int, fake: FakeRest, base: str) -> float:
    call_id = {"twilio": f"CAbench{index:028d}", "telnyx": f"v3:bench-{index}",
               "plivo": f"bench-{index}"}[carrier]
    fake.live(call_id)
    fake.acted.clear()
    script = Script(HangUp())
    application = vk.serve.app(script.on_call, carrier=carrier, dev=True,
                               api=api_for(carrier, base))
    async with serving(application) as host:
        if carrier == "twilio":
            peer: TwilioCall | TelnyxCall | PlivoCall = TwilioCall(
                f"ws://{host}/twilio/media", call_sid=call_id)
        elif carrier == "telnyx":
            peer = TelnyxCall(f"ws://{host}/telnyx/media", call_control_id=call_id)
        else:
            peer = PlivoCall(f"ws://{host}/plivo/media", call_id=call_id)
        record = await peer.call(until=lambda r: fake.acted.is_set(), linger=0.05,
                                 max_seconds=15)
        await asyncio.wait_for(script.done.wait(), 10)
    hangup = next(r for r in fake.requests if r.call_id == call_id and r.action == "hangup")
    echoed = next(t for t, name in record.echoed if name == "goodbye")
    return hangup.t - (peer._t0 + echoed)


async def main(calls: int) -> None:
    fake = FakeRest()
    async with serving(fake.app()) as host:
        base = f"http://{host}"
        print(f"{'carrier':8} {'calls':>5} {'median ms':>10} {'p90 ms':>8} {'min ms':>7} "
              f"{'max ms':>7}")
        for carrier in ("twilio", "telnyx", "plivo"):
            delays = [await one_call(carrier, i, fake, base) for i in range(calls)]
            ms = sorted(d * 1000 for d in delays)
            p90 = ms[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))]
            print(f"{carrier:8} {len(ms):5d} {statistics.median(ms):10.1f} {p90:8.1f} "
                  f"{ms[0]:7.1f} {ms[-1]:7.1f}")
            assert ms[0] >= 0, "a hang-up came before the goodbye was played"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20, help="calls per carrier")
    asyncio.run(main(parser.parse_args().calls))
