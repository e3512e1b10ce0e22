"""Connection timing of the async engine: how long DNS and connecting took for one request (aiohttp tracing).

aiohttp reports connection events to a ``TraceConfig``; the fetcher passes a :class:`ConnectTimer` as each
request's ``trace_request_ctx`` and reads :attr:`ConnectTimer.connect_s` once the headers are in. A request on a
reused (kept-alive) connection has no such events: its connect time is 0. The timer's ``on_sent`` is called once
the request's headers are on the wire (a distributed worker stamps the site's turn then).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import aiohttp

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import SimpleNamespace

__all__ = ["ConnectTimer", "connect_trace_config"]


class ConnectTimer:
    """The DNS + connect time of one request (seconds), filled by :func:`connect_trace_config`'s callbacks."""

    __slots__ = ("_started", "connect_s", "on_sent")

    def __init__(self, on_sent: Callable[[], None] | None = None) -> None:
        self._started: float | None = None
        self.connect_s = 0.0
        self.on_sent = on_sent


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


async def _on_headers_sent(
    _session: aiohttp.ClientSession, context: SimpleNamespace, _params: aiohttp.TraceRequestHeadersSentParams
) -> None:
    timer = _timer(context)
    if timer is not None and timer.on_sent is not None:
        on_sent, timer.on_sent = timer.on_sent, None
        on_sent()


def connect_trace_config() -> aiohttp.TraceConfig:
    """A ``TraceConfig`` that times connection creation (DNS lookup, TCP and TLS handshakes) per request and calls
    the timer's ``on_sent`` when the headers are sent."""
    config = aiohttp.TraceConfig()
    config.on_connection_create_start.append(_on_create_start)
    config.on_connection_create_end.append(_on_create_end)
    config.on_request_headers_sent.append(_on_headers_sent)
    return config
