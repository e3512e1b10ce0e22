"""A local HTTP site on loopback: the demo's embedded site, the tests' server, the benchmark's server.

It serves files from a folder (and optional in-memory pages) with aiohttp's server, in a thread with its own
event loop, so any engine in the same process, or another process, can fetch from it.
"""

from __future__ import annotations

import asyncio
import mimetypes
import threading
from typing import TYPE_CHECKING, Self

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from types import TracebackType

__all__ = ["ServerThread", "static_app"]

StaticPages = dict[str, tuple[bytes, str]]
"""In-memory pages: URL path to (body, content type)."""


def static_app(root: Path | None = None, pages: StaticPages | None = None) -> web.Application:
    """An app serving ``pages`` first, then files under ``root`` (``/`` serves ``index.html``)."""
    pages = dict(pages or {})
    root_resolved = root.resolve() if root is not None else None

    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.path
        if path in pages:
            body, content_type = pages[path]
            return web.Response(body=body, content_type=content_type)
        if root_resolved is not None:
            relative = path.lstrip("/") or "index.html"
            target = (root_resolved / relative).resolve()
            if target.is_dir():
                target = target / "index.html"
            if target.is_relative_to(root_resolved) and target.is_file():
                content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
                return web.Response(body=target.read_bytes(), content_type=content_type)
        raise web.HTTPNotFound()

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    return app


class ServerThread:
    """Runs an aiohttp app on ``127.0.0.1`` in a daemon thread. Use as a context manager.

    Args:
        app_factory: builds the app inside the server's loop (aiohttp apps bind to the loop they start in).
        port: 0 picks a free port; read the chosen one from :attr:`port` or :attr:`url`.
    """

    def __init__(self, app_factory: Callable[[], web.Application], *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app_factory = app_factory
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="local-site", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("local site did not start within 30 s")
        if self._error is not None:
            raise RuntimeError(f"local site failed to start: {self._error}") from self._error
        return self

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._shutdown())
        loop.close()

    async def _serve(self) -> None:
        self._runner = web.AppRunner(self._app_factory(), access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the bound port, when 0 asked for a free one

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
