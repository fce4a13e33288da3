"""A small local fake of Slack for the adapter's tests, on 127.0.0.1 only.

- the Web API under ``/api/<method>`` (what ``SLACK_API_URL`` points at): it records
  every call and answers the methods the adapter uses (chat.*, conversations.*,
  files_upload_v2's three steps, views.open, users.info, reactions.add, auth.test,
  apps.connections.open);
- ``response_url`` endpoints under ``/response/<n>``;
- private file downloads under ``/files/<id>``;
- a Socket Mode websocket at ``/socket`` (apps.connections.open points there): it says
  hello, pushes envelopes the test gives it and records the client's acknowledgements;
- a signer that builds requests exactly as Slack signs them (v0 HMAC-SHA256);
- Slack's rate limits, when a test asks for them (``rate_limits``, e.g.
  :data:`SLACK_LIMITS`): a call over its method's limit is refused as Slack refuses it,
  HTTP 429 ``ratelimited`` with ``Retry-After``, and kept in ``limited``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from slack_sdk.signature import SignatureVerifier

Args = dict[str, Any]


@dataclass
class Call:
    method: str
    args: Args
    token: str | None
    #: When the fake received it (``time.monotonic()``), for latency measurements.
    at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class RateLimit:
    """One of Slack's limits on a Web API method: ``per_minute`` calls a minute, refilled
    evenly, with up to ``burst`` at once; counted per workspace (the tiers) or, with
    ``per_channel``, per channel (Slack's "1 per second per channel" for posting)."""

    per_minute: float
    burst: int
    per_channel: bool = False


#: Slack's published tiers (https://api.slack.com/apis/rate-limits): Tier 2 "20+ per
#: minute", Tier 3 "50+", Tier 4 "100+", each "with generous burst behavior" (modelled
#: as a minute's quota at once).
TIER_2, TIER_3, TIER_4 = RateLimit(20, 20), RateLimit(50, 50), RateLimit(100, 100)
#: About one message a second per channel, "short bursts" allowed (modelled as 3).
PER_CHANNEL = RateLimit(60, 3, per_channel=True)
#: The limits of the methods the bot uses. chat.update is Tier 3 for the workspace and,
#: like posting, about one a second per channel (a poll edited faster gets 429s).
SLACK_LIMITS: dict[str, tuple[RateLimit, ...]] = {
    "chat.postMessage": (PER_CHANNEL,),
    "chat.update": (TIER_3, PER_CHANNEL),
    "chat.postEphemeral": (TIER_4,),
    "chat.delete": (TIER_3,),
    "reactions.add": (TIER_3,),
    "reactions.remove": (TIER_3,),
    "conversations.open": (TIER_3,),
    "conversations.join": (TIER_3,),
    "conversations.history": (TIER_3,),
    "conversations.list": (TIER_2,),
    "users.info": (TIER_4,),
    "views.open": (TIER_4,),
    "views.update": (TIER_4,),
    "views.push": (TIER_4,),
    "files.getUploadURLExternal": (TIER_4,),
    "files.completeUploadExternal": (TIER_4,),
}


@dataclass
class FakeSlack:
    """The fake Web API, response URLs, file downloads and Socket Mode server."""

    team_id: str = "T1"
    bot_user: str = "UBOT"
    channels: dict[str, str] = field(
        default_factory=lambda: {"general": "CGENERAL", "announcements": "CANNOUNCE"}
    )
    #: More channels as conversations.list gives them (``{"id": ..., "name": ...}``):
    #: two of one name, which ``channels`` cannot hold.
    extra_channels: list[Args] = field(default_factory=list)
    #: conversations.list answers this many channels a page (0: all on one page).
    page_size: int = 0
    calls: list[Call] = field(default_factory=list)
    responses: list[Args] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)
    downloads: dict[str, bytes] = field(default_factory=dict)
    messages: dict[tuple[str, str], Args] = field(default_factory=dict)
    socket_acks: list[Args] = field(default_factory=list)
    #: Methods made to fail once with this Slack error (``{"chat.postMessage": "not_in_channel"}``).
    fail_once: dict[str, str] = field(default_factory=dict)
    #: chat.postMessage to a channel answers these errors first, in order
    #: (``{"DU3": ["ratelimited"]}``); ``ratelimited`` is an HTTP 429 with Retry-After: 1.
    fail_channel: dict[str, list[str]] = field(default_factory=dict)
    #: Seconds a message to a channel (chat.postMessage, chat.postEphemeral) or to a
    #: response URL is held before Slack takes it (recorded, answered): a bot killed
    #: meanwhile is certain to be caught between a command's commit and its answer.
    hold: dict[str, float] = field(default_factory=dict)
    #: Rate limits per method (none by default; :data:`SLACK_LIMITS` is Slack's). A call
    #: over a limit is answered 429 ``ratelimited`` with Retry-After (whole seconds, as
    #: Slack sends it), is not in ``calls`` (Slack did not take it) and is kept in ``limited``.
    rate_limits: dict[str, tuple[RateLimit, ...]] = field(default_factory=dict)
    limited: list[Call] = field(default_factory=list)
    #: Calls of these methods wait until the event is set before Slack takes them (a test
    #: holds ``chat.update`` to show that nothing else waits for an edit).
    gates: dict[str, asyncio.Event] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._ws: web.WebSocketResponse | None = None
        self._ws_ready = asyncio.Event()
        self.base = ""
        #: (method, limit index, channel or "") -> (tokens left, when last refilled)
        self._buckets: dict[tuple[str, int, str], tuple[float, float]] = {}

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_post("/response/{n}", self._response)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/files/{file_id}", self._download)
        app.router.add_get("/socket", self._socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"
        return self.base

    async def stop(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/"

    def response_url(self) -> str:
        return f"{self.base}/response/{next(self._ids)}"

    # ------------------------------------------------------------------ queries
    def of(self, method: str) -> list[Args]:
        return [c.args for c in self.calls if c.method == method]

    async def wait_for(
        self,
        method: str,
        pred: Callable[[Args], bool] = lambda _a: True,
        *,
        within: float = 10.0,
        after: int = 0,
    ) -> Args:
        """The first call of ``method`` (from index ``after`` on) that ``pred`` accepts."""

        def found() -> Args | None:
            for c in self.calls[after:]:
                if c.method == method and pred(c.args):
                    return c.args
            return None

        async with asyncio.timeout(within), self._changed:
            while (hit := found()) is None:
                await self._changed.wait()
        return hit

    async def wait_response(
        self, pred: Callable[[Args], bool] = lambda _a: True, *, within: float = 10.0
    ) -> Args:
        async with asyncio.timeout(within), self._changed:
            while (hit := next((r for r in self.responses if pred(r)), None)) is None:
                await self._changed.wait()
        return hit

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # ------------------------------------------------------------------ the Web API
    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: Args = dict(request.query)
        if request.method == "GET":
            pass
        elif request.content_type == "application/json":
            args.update(await request.json())
        else:
            args.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth else args.get("token")
        if method in ("chat.postMessage", "chat.postEphemeral"):
            await asyncio.sleep(self.hold.get(str(args.get("channel")), 0.0))
        gate = self.gates.get(method)
        if gate is not None:
            await gate.wait()
        retry_after = self._over_limit(method, args)
        if retry_after is not None:
            self.limited.append(Call(method, args, token))
            await self._notify()
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(retry_after)},
            )
        self.calls.append(Call(method, args, token))
        if method in self.fail_once:
            error = self.fail_once.pop(method)
            await self._notify()
            return web.json_response({"ok": False, "error": error})
        errors = self.fail_channel.get(str(args.get("channel")))
        if method == "chat.postMessage" and errors:
            error = errors.pop(0)
            await self._notify()
            if error == "ratelimited":
                return web.json_response(
                    {"ok": False, "error": error}, status=429, headers={"Retry-After": "1"}
                )
            return web.json_response({"ok": False, "error": error})
        try:
            body = self._answer(method, args, token)
        finally:
            await self._notify()
        return web.json_response(body)

    def _over_limit(self, method: str, args: Args) -> int | None:
        """Take a token from each of the method's buckets; if one is empty, nothing is
        taken and the answer is the whole seconds Slack would ask to wait."""
        limits = self.rate_limits.get(method, ())
        now = time.monotonic()
        keys, wait = [], 0.0
        for i, limit in enumerate(limits):
            key = (method, i, str(args.get("channel") or "") if limit.per_channel else "")
            tokens, last = self._buckets.get(key, (float(limit.burst), now))
            rate = limit.per_minute / 60.0
            tokens = min(float(limit.burst), tokens + (now - last) * rate)
            self._buckets[key] = (tokens, now)
            if tokens < 1.0:
                wait = max(wait, (1.0 - tokens) / rate)
            keys.append(key)
        if wait > 0:
            return max(1, math.ceil(wait))
        for key in keys:
            tokens, last = self._buckets[key]
            self._buckets[key] = (tokens - 1.0, last)
        return None

    def _ts_next(self) -> str:
        return f"1700000000.{next(self._ts):06d}"

    def _answer(self, method: str, args: Args, token: str | None) -> Args:
        ok: Args = {"ok": True}
        if token == "xoxb-revoked":
            return {"ok": False, "error": "invalid_auth"}
        if method == "auth.test":
            return ok | {
                "user_id": self.bot_user,
                "bot_id": "BBOT",
                "team_id": self.team_id,
                "user": "coursebot",
                "team": "Test",
                "url": "https://test.slack.com/",
            }
        if method == "apps.connections.open":
            if not (token or "").startswith("xapp-"):
                return {"ok": False, "error": "not_allowed_token_type"}
            return ok | {"url": self.base.replace("http", "ws") + "/socket"}
        if method == "chat.postMessage":
            ts = self._ts_next()
            channel = str(args["channel"])
            msg = {"ts": ts, "channel": channel} | {
                k: args.get(k) for k in ("text", "blocks", "metadata", "thread_ts")
            }
            self.messages[(channel, ts)] = msg
            args["ts"] = ts  # recorded with the call, for the tests
            return ok | {"channel": channel, "ts": ts, "message": msg}
        if method == "chat.postEphemeral":
            return ok | {"message_ts": self._ts_next()}
        if method == "chat.update":
            return ok | {"channel": args["channel"], "ts": args["ts"]}
        if method == "conversations.open":
            return ok | {"channel": {"id": f"D{args['users']}"}}
        if method == "conversations.join":
            return ok | {"channel": {"id": args["channel"]}}
        if method == "conversations.list":
            chans = [{"id": i, "name": n, "is_member": True} for n, i in self.channels.items()]
            chans += [c | {"is_member": True} for c in self.extra_channels]
            start = int(args.get("cursor") or 0)
            size = self.page_size or len(chans) or 1
            page, more = chans[start : start + size], start + size < len(chans)
            return ok | {
                "channels": page,
                "response_metadata": {"next_cursor": str(start + size) if more else ""},
            }
        if method == "conversations.history":
            msg = self.messages.get((str(args["channel"]), str(args.get("latest"))))
            return ok | {"messages": [msg] if msg else [], "has_more": False}
        if method == "users.info":
            user = str(args["user"])
            name = user.removeprefix("U").lower()
            return ok | {
                "user": {
                    "id": user,
                    "name": name,
                    "real_name": name.title(),
                    "profile": {"display_name": name, "email": f"{name}@example.edu"},
                }
            }
        if method == "files.getUploadURLExternal":
            file_id = f"F{next(self._ids):04d}"
            return ok | {"upload_url": f"{self.base}/upload/{file_id}", "file_id": file_id}
        if method == "files.completeUploadExternal":
            files = args["files"]
            files = json.loads(files) if isinstance(files, str) else files
            return ok | {"files": [{"id": f["id"], "title": f.get("title")} for f in files]}
        if method in ("views.open", "views.update", "views.push"):
            view = args["view"]
            view = json.loads(view) if isinstance(view, str) else view
            return ok | {"view": view | {"id": f"V{next(self._ids)}", "hash": "h1"}}
        if method in ("reactions.add", "reactions.remove"):
            return ok
        return {"ok": False, "error": "unknown_method"}

    async def _response(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.hold.get(str(request.url), 0.0))
        body = await request.json()
        self.responses.append(body | {"_url": str(request.url), "_at": time.monotonic()})
        await self._notify()
        return web.Response(text="ok")

    async def _upload(self, request: web.Request) -> web.Response:
        self.uploads[request.match_info["file_id"]] = await request.read()
        await self._notify()
        return web.Response(text="OK")

    async def _download(self, request: web.Request) -> web.Response:
        if not request.headers.get("Authorization", "").startswith("Bearer xoxb-"):
            return web.Response(status=403)
        data = self.downloads.get(request.match_info["file_id"])
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="application/pdf")

    # ------------------------------------------------------------------ Socket Mode
    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._ws = ws
        await ws.send_json(
            {"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A1"}}
        )
        self._ws_ready.set()
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                self.socket_acks.append(json.loads(msg.data))
                await self._notify()
        return ws

    async def push(self, envelope: Args, *, within: float = 10.0) -> Args:
        """Send one envelope over the socket; return the client's acknowledgement."""
        async with asyncio.timeout(within):
            await self._ws_ready.wait()
        assert self._ws is not None
        await self._ws.send_json(envelope)
        envelope_id = envelope["envelope_id"]
        async with asyncio.timeout(within), self._changed:
            while (
                hit := next(
                    (a for a in self.socket_acks if a.get("envelope_id") == envelope_id), None
                )
            ) is None:
                await self._changed.wait()
        return hit


# ---------------------------------------------------------------------- signing


@dataclass(frozen=True)
class Signer:
    """Signs request bodies the way Slack does (``v0=`` HMAC-SHA256 of ``v0:ts:body``)."""

    secret: str

    def headers(self, body: str, content_type: str, *, age: float = 0.0) -> dict[str, str]:
        timestamp = str(int(time.time() - age))
        signature = SignatureVerifier(self.secret).generate_signature(
            timestamp=timestamp, body=body
        )
        return {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature,
        }


FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def command_body(text: str, **fields: str) -> str:
    """A slash command as Slack posts it (form-encoded); ``fields`` as for
    :func:`command_payload`."""
    return urllib.parse.urlencode(command_payload(text, **fields))


def command_payload(
    text: str,
    *,
    command: str = "/course",
    team: str = "T1",
    user: str = "UALICE",
    user_name: str = "alice",
    channel: str = "CGENERAL",
    channel_name: str = "general",
    response_url: str = "",
    trigger_id: str = "",
) -> dict[str, str]:
    """A slash command's fields (the HTTP form, or a Socket Mode envelope's payload)."""
    return {
        "token": "legacy",
        "team_id": team,
        "team_domain": "test",
        "channel_id": channel,
        "channel_name": channel_name,
        "user_id": user,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": "A1",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }


def interaction_body(payload: Args) -> str:
    """Block actions and view submissions: form-encoded ``payload=<json>``."""
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


def event_body(event: Args, event_id: str, *, team: str = "T1") -> str:
    """An Events API callback (JSON)."""
    return json.dumps(
        {
            "token": "legacy",
            "team_id": team,
            "api_app_id": "A1",
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "event": event,
            "authorizations": [{"team_id": team, "user_id": "UBOT", "is_bot": True}],
        }
    )


def block_nodes(blocks: Any) -> Iterator[dict[str, Any]]:
    """Every object of a Block Kit message (or a list of blocks), depth first."""
    if isinstance(blocks, dict):
        yield blocks
        for v in blocks.values():
            yield from block_nodes(v)
    elif isinstance(blocks, list):
        for v in blocks:
            yield from block_nodes(v)


def block_strings(blocks: Any) -> list[str]:
    """Every text of a Block Kit message (or a list of blocks), in order."""
    return [n["text"] for n in block_nodes(blocks) if isinstance(n.get("text"), str)]
