"""A plain static file server (Python's ``http.server``) on loopback, as many real sites are: ``Last-Modified`` from
the file's time, ``304 Not Modified`` to ``If-Modified-Since``, no ETag. Records every request it answers."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType


@dataclass
class Seen:
    """The requests a server answered: path, status and the conditional header sent, in order."""

    requests: list[tuple[str, int, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str, status: int, since: str | None) -> None:
        with self.lock:
            self.requests.append((path, status, since))

    def pages(self) -> list[tuple[str, int, str | None]]:
        with self.lock:
            return [r for r in self.requests if r[0] != "/robots.txt"]

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()


class _Handler(SimpleHTTPRequestHandler):
    seen: Seen
    delay_s: float

    def do_GET(self) -> None:
        if self.delay_s:
            time.sleep(self.delay_s)
        super().do_GET()

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        status = int(code) if str(code).isdigit() else 0
        self.seen.add(self.path, status, self.headers.get("If-Modified-Since"))

    def log_message(self, format: str, *args: Any) -> None:
        return None


class StaticServer:
    """Serves ``root`` on ``127.0.0.1`` in a thread; ``delay_s`` slows every answer (to kill a run mid-way)."""

    def __init__(self, root: Path, *, delay_s: float = 0.0) -> None:
        self.seen = Seen()
        handler = type("Handler", (_Handler,), {"seen": self.seen, "delay_s": delay_s})
        server_class = type("Server", (ThreadingHTTPServer,), {"request_queue_size": 128})  # the default is 5
        self._server = server_class(("127.0.0.1", 0), partial(handler, directory=str(root)))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
