"""``voicekit call``: place an outbound call that a running ``voicekit serve`` answers.

    TWILIO_ACCOUNT_SID=AC… TWILIO_AUTH_TOKEN=… \\
        voicekit call +15551230000 --from +15550002222 --public-url https://my-host.example

The carrier's REST API places the call (:func:`voicekit.serve.dial`); when it is answered, the
carrier fetches ``PUBLIC_URL/CARRIER/voice`` — the same answer route as an inbound call — and
the call reaches that server's agent. ``--voicemail message`` waits for an answering machine's
beep (the agent sees ``answered_by`` in the call's start parameters), ``--voicemail hangup``
hangs up on machines. Credentials come from the environment and are never printed; the
numbers are printed masked.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from .._errors import VoicekitError
from .._secrets import redact

__all__ = ["add_parser", "run"]

CARRIERS = ("twilio", "telnyx", "plivo")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "call",
        help="place an outbound call answered by a running `voicekit serve`",
        description=(
            "Place an outbound call through the carrier's REST API; the server at "
            "--public-url answers it with its agent. Credentials come from the environment "
            "(TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN; TELNYX_API_KEY and TELNYX_APP_ID; "
            "PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN) and are never printed."
        ),
    )
    parser.add_argument("to", help="the number to call, E.164 (+15551230000)")
    parser.add_argument("--from", dest="from_", required=True, metavar="NUMBER",
                        help="your carrier number the call comes from")
    parser.add_argument("--carrier", choices=CARRIERS, default="twilio",
                        help="the phone carrier (default: %(default)s)")
    parser.add_argument("--public-url", required=True, metavar="URL",
                        help="the https:// address of the running `voicekit serve` "
                        "(the same as its --public-url)")
    parser.add_argument("--voicemail", choices=("message", "hangup"), default=None,
                        help="answering machines: leave a message after the beep, or hang "
                        "up (default: no machine detection)")
    parser.add_argument("--machine-detection", choices=("Enable", "DetectMessageEnd"),
                        default=None, help="Twilio's MachineDetection mode (default: from "
                        "--voicemail)")
    parser.add_argument("--api-url", metavar="URL", default=None,
                        help="the carrier's REST API base URL (default: the carrier's, or "
                        "VOICEKIT_<CARRIER>_API_URL)")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                        help="how long to wait for the carrier (default: %(default)s)")
    parser.set_defaults(func=run)


def _masked(number: str) -> str:
    """A number with all but its last 4 digits hidden (``+1555…0000``)."""
    return number if len(number) <= 6 else f"{number[:5]}…{number[-4:]}"


def run(args: argparse.Namespace) -> int:
    from ..serve import dial
    from ..transports._rest import api_from_env

    try:
        overrides: dict[str, Any] = {"timeout": args.timeout}
        if args.api_url:
            overrides["base_url"] = args.api_url
        api = api_from_env(args.carrier, **overrides)
        placed = asyncio.run(dial(
            args.to, args.from_, carrier=args.carrier, public_url=args.public_url,
            voicemail=args.voicemail, machine_detection=args.machine_detection, api=api,
        ))
    except VoicekitError as exc:
        print(f"voicekit call: {redact(str(exc))}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    answer = f"{args.public_url.rstrip('/')}/{args.carrier}/voice"
    print(f"placed   {args.carrier} call {placed.call_id} ({placed.status or 'accepted'})")
    print(f"from     {_masked(args.from_)} to {_masked(args.to)}")
    print(f"answer   {answer} (the running voicekit serve answers it)")
    if args.voicemail:
        print(f"machines {args.voicemail}")
    return 0
