"""A local HTTP server for tests: what Discord's CDN is to an attachment URL."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator


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
