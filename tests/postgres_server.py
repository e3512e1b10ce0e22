"""A real PostgreSQL server for the tests: a fresh cluster in a temporary folder, on loopback, always stopped.

Uses the Debian package's programs (``initdb``, ``pg_ctl``; ``scripts/setup.sh`` installs ``postgresql`` where it is
missing). PostgreSQL refuses to run as root, so under root the cluster belongs to the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator


class Unavailable(RuntimeError):
    """No PostgreSQL programs, or no way to run them here (the message says which)."""


def _program(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise Unavailable(f"PostgreSQL's {name} is not installed (Debian package postgresql; scripts/setup.sh)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a cluster; yield its DSN (``postgresql://postgres@127.0.0.1:PORT/postgres``); stop and delete it."""
    initdb, pg_ctl = _program("initdb"), _program("pg_ctl")
    prefix: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="webenrich-pg-"))
    try:
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root and there is no postgres user to run PostgreSQL as") from None
            os.chown(base, owner.pw_uid, owner.pw_gid)
            prefix = ["runuser", "-u", "postgres", "--"]
        data, log = base / "data", base / "server.log"
        subprocess.run(
            [*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
        )
        port = _free_port()
        options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "30", "start"],
            check=True,
            capture_output=True,
        )
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(
                [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], check=False, capture_output=True
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)
