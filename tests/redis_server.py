"""A real Redis server for the tests: ``redis-server`` on loopback, its data in a temporary folder, always stopped.

Uses the Debian package's program (``scripts/test-servers.sh`` installs ``redis-server`` where it is missing).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator


class Unavailable(RuntimeError):
    """No ``redis-server`` here, or it would not start (the message says which)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Start ``redis-server`` (no persistence); yield its URL (``redis://127.0.0.1:PORT/0``); stop it, delete its
    folder."""
    program = shutil.which("redis-server")
    if program is None:
        raise Unavailable("redis-server is not installed (Debian package redis-server; scripts/test-servers.sh)")
    base = Path(tempfile.mkdtemp(prefix="webenrich-redis-"))
    port = _free_port()
    log = base / "redis.log"
    argv = [program, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(base), "--save", "", "--appendonly"]
    argv += ["no", "--logfile", str(log), "--daemonize", "no"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise Unavailable(f"redis-server did not start: {text}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        shutil.rmtree(base, ignore_errors=True)
