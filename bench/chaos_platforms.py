"""The platform fakes of the chaos benchmark, in a process of their own so that they
outlive every ``kill -9`` of the bot: a small Discord (REST under ``/api/v10`` and a
gateway websocket at ``/gateway``) and a small Slack Web API (``/api/<method>``), on
127.0.0.1. The bot talks to them with its real clients (discord.py, slack_sdk).

Every message a fake accepts is one JSON line appended to ``<dir>/<platform>.jsonl`` and
fsynced *before* the fake answers, as a platform that has stored the message would:
``{"kind": "post" | "edit" | "thread" | "replay", "where": ..., "text": ..., "key": ...}``
(an edit's ``where`` names the message: its place and first words).

- **Discord** honours message nonces as Discord does: a create-message with a nonce and
  ``enforce_nonce`` that repeats one seen from the bot within :data:`NONCE_WINDOW`
  seconds creates nothing and returns the original message (recorded as ``replay``).
  Creating a thread has no nonce, on Discord as here.
- **Slack** has no idempotency key: every ``chat.postMessage`` is a new message. The
  benchmark's web client names the outbox row it is sending in a header
  (``X-Chaos-Key``), which this fake only records, so the benchmark can tell a message
  sent again after a crash (the same key twice) from any other duplicate.

Usage: python -m bench.chaos_platforms RECORD_DIR   (prints "ports DISCORD SLACK")
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

#: The guild, bot and channels of the fake Discord (the bot process binds the course
#: to this guild and links person ``p`` to the Discord user ``USER_BASE + p``).
GUILD_ID = 1_180_000_000_000_000_001
BOT_ID = 1_170_000_000_000_000_001
USER_BASE = 1_190_000_000_000_000_000
CHANNEL_NAMES = ("general", "announcements", "battles", "discussions")
#: How long Discord keeps a nonce (its documentation says "the past few minutes").
NONCE_WINDOW = 300.0
#: The Slack workspace (team) of the fake, and the prefix of its user ids
#: (person ``p`` is ``U{p:04d}``).
SLACK_TEAM = "TCHAOS"

Json = dict[str, Any]


class Recorder:
    """Append-only, fsynced JSON lines: what a platform has accepted."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (lives with the server)

    def write(self, kind: str, where: str, text: str, key: str | None = None) -> None:
        line = {"kind": kind, "where": where, "text": text, "key": key, "t": time.time()}
        self.file.write(json.dumps(line, ensure_ascii=False) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())


def flat(text: str) -> str:
    return " ".join(text.split())


def _json(data: object, status: int = 200) -> web.Response:
    """A JSON answer typed exactly ``application/json``, as Discord sends it (discord.py
    parses a body only under that exact content type)."""
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"}
    )


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


# ----------------------------------------------------------------------------- Discord


class FakeDiscord:
    """Just enough of Discord for the outbox: login, the gateway handshake (READY and
    one GUILD_CREATE), messages (create with nonces, edit, reactions), DMs, threads."""

    def __init__(self, record: Recorder) -> None:
        self.record = record
        self.port = 0
        self._ids = itertools.count(1_200_000_000_000_000_000)
        self.channels: dict[int, Json] = {}
        self.where: dict[int, str] = {}
        self.messages: dict[int, tuple[int, Json]] = {}  # id → (channel id, payload)
        #: id → how an edit of the message is recorded: "<where> / <its first words>"
        self.edited: dict[int, str] = {}
        self.nonces: dict[str, tuple[float, Json]] = {}
        self.dms: dict[int, int] = {}  # user id → DM channel id
        for i, name in enumerate(CHANNEL_NAMES):
            cid = GUILD_ID + 10 + i
            self.channels[cid] = {
                "id": str(cid),
                "type": 0,
                "guild_id": str(GUILD_ID),
                "name": name,
                "position": i,
                "permission_overwrites": [],
                "parent_id": None,
                "topic": None,
                "rate_limit_per_user": 0,
                "last_message_id": None,
                "nsfw": False,
            }
            self.where[cid] = f"#{name}"

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/gateway", self.gateway)
        app.router.add_route("*", "/api/v10/{path:.*}", self.api)

    # ------------------------------------------------------------------ payloads
    @staticmethod
    def user(uid: int) -> Json:
        bot = uid == BOT_ID
        name = "coursebot" if bot else f"user{uid - USER_BASE}"
        return {
            "id": str(uid),
            "username": name,
            "discriminator": "0",
            "global_name": name,
            "avatar": None,
            "bot": bot,
            "system": False,
            "public_flags": 0,
            "flags": 0,
        }

    def guild(self) -> Json:
        return {
            "id": str(GUILD_ID),
            "name": "COMP 790 (chaos)",
            "owner_id": str(USER_BASE),
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "vanity_url_code": None,
            "application_id": None,
            "max_members": 500000,
            "features": [],
            "emojis": [],
            "stickers": [],
            "roles": [
                {
                    "id": str(GUILD_ID),
                    "name": "@everyone",
                    "permissions": "8",  # administrator: the bot may do what it needs
                    "position": 0,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                    "icon": None,
                    "unicode_emoji": None,
                }
            ],
            "member_count": 1,
            "large": False,
            "unavailable": False,
            "joined_at": _now_iso(),
            "members": [
                {
                    "user": self.user(BOT_ID),
                    "roles": [],
                    "nick": None,
                    "joined_at": _now_iso(),
                    "deaf": False,
                    "mute": False,
                    "flags": 0,
                    "pending": False,
                }
            ],
            "channels": [c for c in self.channels.values() if c["type"] == 0],
            "threads": [],
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "premium_progress_bar_enabled": False,
        }

    def _message(self, cid: int, body: Json, files: list[str], nonce: str | None) -> Json:
        mid = next(self._ids)
        channel = self.channels[cid]
        payload: Json = {
            "id": str(mid),
            "channel_id": str(cid),
            "author": self.user(BOT_ID),
            "content": body.get("content") or "",
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [self._attachment(cid, name) for name in files],
            "embeds": body.get("embeds") or [],
            "components": body.get("components") or [],
            "pinned": False,
            "type": 0,
            "flags": int(body.get("flags") or 0),
            "nonce": nonce,
        }
        if "guild_id" in channel:
            payload["guild_id"] = channel["guild_id"]
        self.messages[mid] = (cid, payload)
        return payload

    def _attachment(self, cid: int, name: str) -> Json:
        aid = next(self._ids)
        url = f"http://127.0.0.1:{self.port}/attachments/{cid}/{aid}/{name}"
        return {"id": str(aid), "filename": name, "size": 1, "url": url, "proxy_url": url}

    @staticmethod
    def text(body: Json, files: list[str]) -> str:
        """What a reader sees: the content, the embeds' words and the file names."""
        parts = [body.get("content") or ""]
        for embed in body.get("embeds") or []:
            parts += [embed.get("title") or "", embed.get("description") or ""]
            parts += [f"{f.get('name')}: {f.get('value')}" for f in embed.get("fields") or []]
            parts.append((embed.get("footer") or {}).get("text") or "")
        parts += [f"[{name}]" for name in sorted(files)]
        return flat(" ".join(p for p in parts if p))

    # ------------------------------------------------------------------ REST
    async def _body(self, request: web.Request) -> tuple[Json, list[str]]:
        if request.content_type.startswith("multipart/"):
            body: Json = {}
            files: list[str] = []
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if part.name == "payload_json":  # type: ignore[union-attr]
                    body = json.loads(await part.text())  # type: ignore[union-attr]
                else:
                    await part.read()  # type: ignore[union-attr]
                    files.append(part.filename or "file")  # type: ignore[union-attr]
            return body, files
        if request.can_read_body:
            return await request.json(), []
        return {}, []

    async def api(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["path"].strip("/")
        seg = path.split("/")[1:]
        method = request.method
        if method == "GET" and path == "/users/@me":
            return _json(self.user(BOT_ID))
        if method == "GET" and path == "/oauth2/applications/@me":
            return _json(
                {
                    "id": str(BOT_ID),
                    "name": "coursebot",
                    "icon": None,
                    "description": "",
                    "bot_public": False,
                    "bot_require_code_grant": False,
                    "owner": self.user(USER_BASE),
                    "verify_key": "0" * 64,
                    "flags": 0,
                }
            )
        if method == "GET" and len(seg) == 2 and seg[0] == "users":
            return _json(self.user(int(seg[1])))
        if method == "POST" and path == "/users/@me/channels":
            uid = int((await request.json())["recipient_id"])
            if uid not in self.dms:
                cid = next(self._ids)
                self.dms[uid] = cid
                self.channels[cid] = {
                    "id": str(cid),
                    "type": 1,
                    "last_message_id": None,
                    "recipients": [self.user(uid)],
                }
                self.where[cid] = f"dm {uid - USER_BASE}"
            return _json(self.channels[self.dms[uid]])
        if seg[0] == "channels" and len(seg) >= 2 and int(seg[1]) in self.channels:
            return await self._channel_route(request, int(seg[1]), seg[2:])
        if seg[0] == "channels":
            return self._error(404, 10003, "Unknown Channel")
        return self._error(404, 0, f"the chaos fake has no {method} {path}")

    async def _channel_route(self, request: web.Request, cid: int, rest: list[str]) -> web.Response:
        method = request.method
        if method == "GET" and not rest:
            return _json(self.channels[cid])
        if method == "POST" and rest == ["messages"]:
            body, files = await self._body(request)
            nonce = body.get("nonce")
            if nonce is not None and body.get("enforce_nonce"):
                seen = self.nonces.get(str(nonce))
                if seen is not None and time.time() - seen[0] < NONCE_WINDOW:
                    self.record.write("replay", self.where[cid], "", str(nonce))
                    return _json(seen[1])
            payload = self._message(cid, body, files, None if nonce is None else str(nonce))
            text = self.text(body, files)
            self.edited[int(payload["id"])] = f"{self.where[cid]} / {text[:40]}"
            self.record.write("post", self.where[cid], text, None if nonce is None else str(nonce))
            if nonce is not None:
                self.nonces[str(nonce)] = (time.time(), payload)
            return _json(payload)
        if method == "PATCH" and len(rest) == 2 and rest[0] == "messages":
            found = self.messages.get(int(rest[1]))
            if found is None or found[0] != cid:
                return self._error(404, 10008, "Unknown Message")
            body, files = await self._body(request)
            payload = dict(found[1])
            for key in ("content", "embeds", "components"):
                if key in body:
                    payload[key] = (
                        body[key] if body[key] is not None else ([] if key != "content" else "")
                    )
            payload["attachments"] = [self._attachment(cid, name) for name in files]
            payload["edited_timestamp"] = _now_iso()
            self.messages[int(rest[1])] = (cid, payload)
            shown = {"content": payload["content"], "embeds": payload["embeds"]}
            self.record.write("edit", self.edited[int(rest[1])], self.text(shown, files))
            return _json(payload)
        if method in ("PUT", "DELETE") and len(rest) >= 3 and rest[0] == "messages":
            return web.Response(status=204)  # reactions
        if method == "POST" and rest == ["threads"]:
            body = await request.json()
            tid = next(self._ids)
            name = str(body.get("name") or "thread")
            self.channels[tid] = {
                "id": str(tid),
                "type": int(body.get("type") or 11),
                "guild_id": str(GUILD_ID),
                "name": name,
                "parent_id": str(cid),
                "owner_id": str(BOT_ID),
                "last_message_id": None,
                "rate_limit_per_user": 0,
                "message_count": 0,
                "member_count": 1,
                "flags": 0,
                "thread_metadata": {
                    "archived": False,
                    "auto_archive_duration": int(body.get("auto_archive_duration") or 1440),
                    "archive_timestamp": _now_iso(),
                    "locked": False,
                    "create_timestamp": _now_iso(),
                    "invitable": True,
                },
            }
            self.where[tid] = f"{self.where[cid]} > {name}"
            self.record.write("thread", self.where[tid], "(thread opened)")
            return _json(self.channels[tid])
        if method in ("PUT", "DELETE") and rest and rest[0] == "thread-members":
            return web.Response(status=204)
        return self._error(
            404, 0, f"the chaos fake has no {method} channels/{cid}/{'/'.join(rest)}"
        )

    @staticmethod
    def _error(status: int, code: int, message: str) -> web.Response:
        return _json({"code": code, "message": message}, status=status)

    # ------------------------------------------------------------------ gateway
    async def gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        seq = itertools.count(1)
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None})
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            op = data.get("op")
            if op == 1:
                await ws.send_json({"op": 11, "d": None, "s": None, "t": None})
            elif op in (2, 6):  # identify (or resume: answered as a fresh session)
                ready = {
                    "v": 10,
                    "user": self.user(BOT_ID),
                    "guilds": [{"id": str(GUILD_ID), "unavailable": True}],
                    "session_id": "chaos",
                    "resume_gateway_url": f"ws://127.0.0.1:{self.port}/gateway",
                    "shard": [0, 1],
                    "application": {"id": str(BOT_ID), "flags": 0},
                }
                await ws.send_json({"op": 0, "t": "READY", "s": next(seq), "d": ready})
                await ws.send_json(
                    {"op": 0, "t": "GUILD_CREATE", "s": next(seq), "d": self.guild()}
                )
        return ws


# ----------------------------------------------------------------------------- Slack


class FakeSlack:
    """Just enough of the Slack Web API for the outbox: auth, channels, DMs,
    chat.postMessage / chat.update, reactions and the three steps of a file upload."""

    def __init__(self, record: Recorder) -> None:
        self.record = record
        self.port = 0
        self._ts = itertools.count(1)
        self._files = itertools.count(1)
        self.channels = {name: f"C{name.upper()[:10]}" for name in CHANNEL_NAMES}
        self.names = {cid: f"#{name}" for name, cid in self.channels.items()}
        self.leads: dict[tuple[str, str], str] = {}  # (channel, ts) → where of its thread
        self.edited: dict[tuple[str, str], str] = {}  # (channel, ts) → "<where> / <words>"

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/{method}", self.api)
        app.router.add_post("/upload/{file_id}", self.upload)

    def _where(self, channel: str, thread: str | None = None) -> str:
        base = self.names.get(channel) or (
            f"dm {channel[1:]}" if channel.startswith("D") else channel
        )
        if thread:
            return self.leads.get((channel, thread), f"{base} > thread {thread}")
        return base

    async def api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: Json = dict(request.query)
        if request.method == "POST":
            if request.content_type == "application/json":
                args.update(await request.json())
            else:
                args.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        key = request.headers.get("X-Chaos-Key")
        ok: Json = {"ok": True}
        if method == "auth.test":
            return web.json_response(
                ok
                | {
                    "user_id": "UBOT",
                    "bot_id": "BBOT",
                    "team_id": SLACK_TEAM,
                    "user": "coursebot",
                    "team": "Chaos",
                    "url": "https://chaos.slack.com/",
                }
            )
        if method == "conversations.list":
            chans = [{"id": i, "name": n, "is_member": True} for n, i in self.channels.items()]
            return web.json_response(
                ok | {"channels": chans, "response_metadata": {"next_cursor": ""}}
            )
        if method == "conversations.open":
            return web.json_response(ok | {"channel": {"id": f"D{args['users']}"}})
        if method == "conversations.join":
            return web.json_response(ok | {"channel": {"id": args["channel"]}})
        if method == "conversations.history":
            return web.json_response(ok | {"messages": [], "has_more": False})
        if method == "chat.postMessage":
            channel = str(args["channel"])
            thread = args.get("thread_ts") or None
            ts = f"1700000000.{next(self._ts):06d}"
            text = flat(str(args.get("text") or ""))
            where = self._where(channel, thread)
            if not thread:
                self.leads[(channel, ts)] = f"{where} > {text[:40]}"
            self.edited[(channel, ts)] = f"{where} / {text[:40]}"
            self.record.write("post", where, text, key and f"{key}.post")
            return web.json_response(ok | {"channel": channel, "ts": ts, "message": {"ts": ts}})
        if method == "chat.update":
            channel, ts = str(args["channel"]), str(args["ts"])
            where = self.edited.get((channel, ts), f"{self._where(channel)} / ?")
            self.record.write("edit", where, flat(str(args.get("text") or "")))
            return web.json_response(ok | {"channel": channel, "ts": ts})
        if method in ("reactions.add", "reactions.remove"):
            return web.json_response(ok)
        if method == "files.getUploadURLExternal":
            file_id = f"F{next(self._files):05d}"
            url = f"http://127.0.0.1:{self.port}/upload/{file_id}"
            return web.json_response(ok | {"upload_url": url, "file_id": file_id})
        if method == "files.completeUploadExternal":
            files = args["files"]
            files = json.loads(files) if isinstance(files, str) else files
            channel = str(args.get("channel_id") or "")
            where = self._where(channel, args.get("thread_ts") or None)
            names = " ".join(f"[{f.get('title')}]" for f in files)
            self.record.write("post", where, names, key and f"{key}.file")
            return web.json_response(
                ok | {"files": [{"id": f["id"], "title": f.get("title")} for f in files]}
            )
        return web.json_response({"ok": False, "error": "unknown_method"})

    async def upload(self, request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="OK")


# ----------------------------------------------------------------------------- serving


async def serve(record_dir: Path) -> None:
    record_dir.mkdir(parents=True, exist_ok=True)
    discord = FakeDiscord(Recorder(record_dir / "discord.jsonl"))
    slack = FakeSlack(Recorder(record_dir / "slack.jsonl"))
    ports = []
    for fake in (discord, slack):
        app = web.Application(client_max_size=64 * 1024 * 1024)
        fake.routes(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        fake.port = int(runner.addresses[0][1])
        ports.append(fake.port)
    print("ports", *ports, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1])))
