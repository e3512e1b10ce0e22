"""Connection timing of the async engine: how long DNS and connecting took for one request (aiohttp tracing).

aiohttp reports connection events to a ``TraceConfig``; the fetcher passes a :class:`ConnectTimer` as each
request's ``trace_request_ctx`` and reads :attr:`ConnectTimer.connect_s` once the headers are in. A request on a
reused (kept-alive) connection has no such events: its connect time is 0.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import aiohttp

if TYPE_CHECKING:
    from types import SimpleNamespace

__all__ = ["ConnectTimer", "connect_trace_config"]


class ConnectTimer:
    """The DNS + connect time of one request (seconds), filled by :func:`connect_trace_config`'s callbacks."""

    __slots__ = ("_started", "connect_s")

    def __init__(self) -> None:
        self._started: float | None = None
        self.connect_s = 0.0


def _timer(context: SimpleNamespace) -> ConnectTimer | None:
    timer = getattr(context, "trace_request_ctx", None)
    return timer if isinstance(timer, ConnectTimer) else None


async def _on_create_start(
    _session: aiohttp.ClientSession, context: SimpleNamespace, _params: aiohttp.TraceConnectionCreateStartParams
) -> None:
    timer = _timer(context)
    if timer is not None:
        timer._started = time.perf_counter()


async def _on_create_end(
    _session: aiohttp.ClientSession, context: SimpleNamespace, _params: aiohttp.TraceConnectionCreateEndParams
) -> None:
    timer = _timer(context)
    if timer is not None and timer._started is not None:
        timer.connect_s += time.perf_counter() - timer._started
        timer._started = None


def connect_trace_config() -> aiohttp.TraceConfig:
    """A ``TraceConfig`` that times connection creation (DNS lookup, TCP and TLS handshakes) per request."""
    config = aiohttp.TraceConfig()
    config.on_connection_create_start.append(_on_create_start)
    config.on_connection_create_end.append(_on_create_end)
    return config
