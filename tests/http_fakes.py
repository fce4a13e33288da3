"""Local HTTP servers for tests: what Discord's CDN (or Slack's file host) is to an
attachment URL."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from aiohttp import web


@contextlib.asynccontextmanager
async def file_server(files: dict[str, bytes]) -> AsyncIterator[str]:
    """A local HTTP server handing out ``files`` (as Discord's CDN hands out attachments);
    its base URL."""
    from aiohttp import web

    async def serve(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name in files:
            return web.Response(body=files[name], content_type="application/octet-stream")
        return web.Response(status=404)

    server = web.Application()
    server.router.add_get("/{name}", serve)
    runner = web.AppRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@dataclass
class FileHost:
    """A local file host on 127.0.0.1 that records what it is asked (to show that a
    refused download never reached it) and can misbehave: redirect, stream a file with
    no declared length (so only counting the bytes catches a lie), or look files up
    elsewhere (simcord's in-memory CDN, by full URL)."""

    files: dict[str, bytes] = field(default_factory=dict)
    #: name → URL it redirects to (302).
    redirects: dict[str, str] = field(default_factory=dict)
    #: Stream the body in chunks, without a Content-Length.
    chunked: bool = False
    #: Look a file up by its full URL when it is not in ``files``.
    lookup: Callable[[str], bytes | None] | None = None
    #: (path, Authorization header or None) of every request.
    seen: list[tuple[str, str | None]] = field(default_factory=list)
    base: str = ""

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.seen.append((request.path, request.headers.get("Authorization")))
        if name in self.redirects:
            raise web.HTTPFound(self.redirects[name])
        data = self.files.get(name)
        if data is None and self.lookup is not None:
            data = self.lookup(f"{self.base}{request.path}")
        if data is None:
            return web.Response(status=404)
        if not self.chunked:
            return web.Response(body=data, content_type="application/octet-stream")
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            for i in range(0, len(data), 64 * 1024):
                await resp.write(data[i : i + 64 * 1024])
            await resp.write_eof()
        return resp


@contextlib.asynccontextmanager
async def file_host(host: FileHost | None = None) -> AsyncIterator[FileHost]:
    """Serve ``host`` on 127.0.0.1 (an ephemeral port; ``host.base`` is its URL)."""
    host = host or FileHost()
    server = web.Application()
    server.router.add_get("/{name:.*}", host._serve)
    runner = web.AppRunner(server, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield host
    finally:
        await runner.cleanup()
