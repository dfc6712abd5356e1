"""The carriers' REST API for the phone tests: the local fake of :mod:`servers.fake_rest` on a
loopback port, and the :class:`~voicekit.transports._rest.CarrierApi` that points at it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from servers import fake_rest
from servers.fake_rest import FakeRest
from servers.serving import serving
from voicekit.transports._rest import CarrierApi

__all__ = ["carrier_api", "rest_api"]


def carrier_api(carrier: str, base_url: str) -> CarrierApi:
    """The REST API of ``carrier`` at the local fake (:mod:`servers.fake_rest`)."""
    if carrier == "twilio":
        return CarrierApi("twilio", account=fake_rest.ACCOUNT, secret=fake_rest.TOKEN,
                          base_url=base_url)
    if carrier == "telnyx":
        return CarrierApi("telnyx", secret=fake_rest.TELNYX_KEY, base_url=base_url)
    return CarrierApi("plivo", account=fake_rest.PLIVO_ID, secret=fake_rest.PLIVO_TOKEN,
                      base_url=base_url)


@contextlib.asynccontextmanager
async def rest_api() -> AsyncIterator[tuple[FakeRest, str]]:
    """The carriers' fake REST API on a loopback port: the fake and its base URL."""
    fake_api = FakeRest()
    async with serving(fake_api.app()) as host:
        try:
            yield fake_api, f"http://{host}"
        finally:
            fake_api.release()
