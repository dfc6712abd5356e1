"""A local fake of the Twilio, Telnyx and Plivo REST APIs (a Starlette app; serve it with
:func:`servers.serving.serving`), for call control and outbound calls.

It answers the way the carriers do, for the calls it knows (:meth:`FakeRest.live`):

* Twilio — ``POST /2010-04-01/Accounts/{sid}/Calls.json`` (create: 201 with ``sid``,
  ``status: queued``; 400 ``21201`` without ``To``/``From``/``Url``), ``POST
  …/Calls/{CallSid}.json`` (update: ``Status=completed`` ends it, ``Twiml`` replaces its
  TwiML; an unknown or ended call: 404 with ``code: 20404``); HTTP basic auth (401 ``20003``).
* Telnyx — ``POST /v2/calls/{id}/actions/{hangup|transfer|send_dtmf}`` (200 ``{"data":
  {"result": "ok"}}``; a call that has ended: 422 ``90018``), ``POST /v2/texml/calls/{app}``;
  a bearer key (401 ``10009``).
* Plivo — ``DELETE /v1/Account/{id}/Call/{uuid}/`` (204; 404 ``not found``), ``POST
  …/Call/{uuid}/`` (a transfer: 202), ``POST /v1/Account/{id}/Call/`` (201 ``call fired``);
  basic auth (401).

Every request is recorded (:class:`Request`, with its arrival time on the monotonic clock).
:meth:`FakeRest.fail` makes the next requests answer a status (500, 503, 401…) or ``"hang"``
(no answer until :meth:`FakeRest.release`). :attr:`FakeRest.acted` is set for each action, so
a test can let the fake carrier end the media stream the way the real one would.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["FakeRest", "Request"]

ACCOUNT = "ACfake0000000000000000000000000000"
TOKEN = "fake-twilio-auth-token-0123"
TELNYX_KEY = "KEYfake-telnyx-0123456789"
PLIVO_ID = "MAFAKEAUTHID0000"
PLIVO_TOKEN = "fake-plivo-auth-token-0123"


@dataclass(frozen=True, slots=True)
class Request:
    """One request the fake received: ``carrier``, ``action`` (``"dial"``, ``"hangup"``,
    ``"update"``, ``"transfer"``, ``"send_dtmf"``), the call id, the body, when (monotonic),
    and the status it answered."""

    carrier: str
    action: str
    call_id: str
    method: str
    path: str
    body: dict[str, Any]
    t: float
    status: int


@dataclass
class FakeRest:
    """The fake's state: the calls it knows (id -> status), what it received, its failures."""

    calls: dict[str, str] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    failures: list[int | str] = field(default_factory=list)
    on_action: Callable[[Request], Any] | None = None
    acted: asyncio.Event = field(default_factory=asyncio.Event)
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def live(self, *call_ids: str) -> FakeRest:
        """Calls in progress (what a REST action may act on)."""
        for call_id in call_ids:
            self.calls[call_id] = "in-progress"
        return self

    def fail(self, *outcomes: int | str) -> None:
        """The next requests answer these statuses (or ``"hang"``: no answer at all)."""
        self.failures.extend(outcomes)

    def release(self) -> None:
        """Let hanging requests go (before the server stops)."""
        self._release.set()

    def of(self, action: str) -> list[Request]:
        return [r for r in self.requests if r.action == action]

    # -- plumbing -------------------------------------------------------------------------

    async def _body(self, request: HttpRequest) -> dict[str, Any]:
        raw = await request.body()
        if request.headers.get("content-type", "").startswith("application/json"):
            data = json.loads(raw or b"{}")
            return data if isinstance(data, dict) else {"value": data}
        return dict(parse_qsl(raw.decode(), keep_blank_values=True))

    async def _failure(self) -> int | None:
        if not self.failures:
            return None
        outcome = self.failures.pop(0)
        if outcome == "hang":
            await self._release.wait()
            return 599
        assert isinstance(outcome, int)
        return outcome

    def _record(self, carrier: str, action: str, call_id: str, request: HttpRequest,
                body: dict[str, Any], status: int) -> None:
        entry = Request(carrier, action, call_id, request.method, request.url.path, body,
                        time.monotonic(), status)
        self.requests.append(entry)
        if status < 300 and action != "dial":
            self.acted.set()
            if self.on_action is not None:
                self.on_action(entry)

    @staticmethod
    def _basic(request: HttpRequest) -> tuple[str, str]:
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return "", ""
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user, password

    # -- Twilio ---------------------------------------------------------------------------

    async def twilio_create(self, request: HttpRequest) -> Response:
        body = await self._body(request)
        if self._basic(request) != (ACCOUNT, TOKEN) or request.path_params["sid"] != ACCOUNT:
            self._record("twilio", "dial", "", request, body, 401)
            return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, 401)
        failed = await self._failure()
        if failed:
            self._record("twilio", "dial", "", request, body, failed)
            return JSONResponse({"code": 20500, "message": "Internal Server Error",
                                 "status": failed}, failed)
        missing = [k for k in ("To", "From", "Url") if not body.get(k)]
        if missing:
            self._record("twilio", "dial", "", request, body, 400)
            return JSONResponse({"code": 21201, "message": f"No '{missing[0]}' specified",
                                 "status": 400}, 400)
        sid = f"CA{next(self._ids):032x}"
        self.calls[sid] = "queued"
        self._record("twilio", "dial", sid, request, body, 201)
        return JSONResponse({"sid": sid, "status": "queued", "to": body["To"],
                             "from": body["From"]}, 201)

    async def twilio_update(self, request: HttpRequest) -> Response:
        body = await self._body(request)
        sid = request.path_params["call"]
        action = "hangup" if body.get("Status") == "completed" else "update"
        if self._basic(request) != (ACCOUNT, TOKEN):
            self._record("twilio", action, sid, request, body, 401)
            return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, 401)
        failed = await self._failure()
        if failed:
            self._record("twilio", action, sid, request, body, failed)
            return JSONResponse({"code": 20500, "message": "Internal Server Error",
                                 "status": failed}, failed)
        if self.calls.get(sid) not in ("in-progress", "queued"):
            self._record("twilio", action, sid, request, body, 404)
            return JSONResponse({
                "code": 20404, "status": 404,
                "message": f"The requested resource {request.url.path} was not found",
                "more_info": "https://www.twilio.com/docs/errors/20404",
            }, 404)
        if action == "hangup":
            self.calls[sid] = "completed"
        self._record("twilio", action, sid, request, body, 200)
        return JSONResponse({"sid": sid, "status": self.calls[sid]}, 200)

    # -- Telnyx ---------------------------------------------------------------------------

    async def telnyx_action(self, request: HttpRequest) -> Response:
        body = await self._body(request)
        call_id, action = request.path_params["call"], request.path_params["action"]
        if request.headers.get("authorization") != f"Bearer {TELNYX_KEY}":
            self._record("telnyx", action, call_id, request, body, 401)
            return JSONResponse({"errors": [{"code": "10009", "title": "Authentication failed",
                                             "detail": "Could not understand the key"}]}, 401)
        failed = await self._failure()
        if failed:
            self._record("telnyx", action, call_id, request, body, failed)
            return JSONResponse({"errors": [{"code": "10007", "title": "Unexpected error"}]},
                                failed)
        if self.calls.get(call_id) != "in-progress":
            self._record("telnyx", action, call_id, request, body, 422)
            return JSONResponse({"errors": [{"code": "90018", "title": "Call has already ended",
                                             "detail": "This call is no longer active"}]}, 422)
        if action in ("hangup", "transfer"):
            self.calls[call_id] = "ended"
        self._record("telnyx", action, call_id, request, body, 200)
        return JSONResponse({"data": {"result": "ok"}}, 200)

    async def telnyx_dial(self, request: HttpRequest) -> Response:
        body = await self._body(request)
        if request.headers.get("authorization") != f"Bearer {TELNYX_KEY}":
            self._record("telnyx", "dial", "", request, body, 401)
            return JSONResponse({"errors": [{"code": "10009", "title": "Authentication failed"}]},
                                401)
        sid = f"v3:fake{next(self._ids)}"
        self.calls[sid] = "queued"
        self._record("telnyx", "dial", sid, request, body, 200)
        return JSONResponse({"call_sid": sid, "status": "queued"}, 200)

    # -- Plivo ----------------------------------------------------------------------------

    async def plivo(self, request: HttpRequest) -> Response:
        body = await self._body(request)
        uuid = request.path_params.get("call", "")
        action = "dial" if not uuid else ("hangup" if request.method == "DELETE" else "transfer")
        if self._basic(request) != (PLIVO_ID, PLIVO_TOKEN):
            self._record("plivo", action, uuid, request, body, 401)
            return JSONResponse({"api_id": "fake", "error": "authentication failed"}, 401)
        failed = await self._failure()
        if failed:
            self._record("plivo", action, uuid, request, body, failed)
            return JSONResponse({"api_id": "fake", "error": "server error"}, failed)
        if action == "dial":
            missing = [k for k in ("from", "to", "answer_url") if not body.get(k)]
            if missing:
                self._record("plivo", action, "", request, body, 400)
                return JSONResponse({"api_id": "fake", "error": f"{missing[0]} is required"}, 400)
            uuid = f"fake-request-{next(self._ids)}"
            self.calls[uuid] = "queued"
            self._record("plivo", action, uuid, request, body, 201)
            return JSONResponse({"api_id": "fake", "message": "call fired",
                                 "request_uuid": uuid}, 201)
        if self.calls.get(uuid) != "in-progress":
            self._record("plivo", action, uuid, request, body, 404)
            return JSONResponse({"api_id": "fake", "error": "not found"}, 404)
        self.calls[uuid] = "ended"
        if action == "hangup":
            self._record("plivo", action, uuid, request, body, 204)
            return Response(status_code=204)
        self._record("plivo", action, uuid, request, body, 202)
        return JSONResponse({"api_id": "fake", "message": "call transferred"}, 202)

    def app(self) -> Starlette:
        """The ASGI app of the three APIs."""
        return Starlette(routes=[
            Route("/2010-04-01/Accounts/{sid}/Calls.json", self.twilio_create, methods=["POST"]),
            Route("/2010-04-01/Accounts/{sid}/Calls/{call}.json", self.twilio_update,
                  methods=["POST"]),
            Route("/v2/calls/{call}/actions/{action}", self.telnyx_action, methods=["POST"]),
            Route("/v2/texml/calls/{app}", self.telnyx_dial, methods=["POST"]),
            Route("/v1/Account/{id}/Call/", self.plivo, methods=["POST"]),
            Route("/v1/Account/{id}/Call/{call}/", self.plivo, methods=["POST", "DELETE"]),
        ])
