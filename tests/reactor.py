"""In-process Scrapy tests with pytest-twisted, beside the suite's plain asyncio tests.

pytest-twisted (``--reactor=asyncio`` in pyproject's ``addopts``) installs Twisted's asyncio
reactor once for the session and runs it in a greenlet; Scrapy mode needs that reactor (its stages are asyncio
code). Two things keep it from disturbing the rest of the suite, both wired in ``tests/conftest.py``:

* pytest-twisted runs *every* test function inside the reactor's greenlet, where the reactor's loop is running;
  a pytest-asyncio test there cannot start its own loop. Only tests marked ``reactor`` (:func:`in_reactor`) go to
  pytest-twisted; the others are called as pytest calls them (:func:`call_outside_reactor`).
* asyncio keeps "the running loop" per thread, and a greenlet switch does not change it: once the reactor's
  greenlet has run, the main greenlet would still see the reactor's loop as running. :func:`reactor_loop_set`
  sets it for the time a ``reactor`` test runs (when the greenlet resumes inside ``loop.run_forever``) and clears
  it after.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

# pytest's own test call, for the tests that must not run in the reactor's greenlet (pytest-twisted's hook would
# take them all); a private module, but the one place this function is defined
from _pytest.python import pytest_pyfunc_call as _pytest_call

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator

__all__ = ["call_outside_reactor", "in_reactor", "reactor_loop_set"]

REACTOR_MARK = "reactor"


def in_reactor(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., Any]:
    """Mark an ``async def`` test to run as a task of the reactor's asyncio loop (fixtures work as usual).

    The test becomes a plain function returning a Deferred, which pytest-twisted waits for; as a plain function
    it is not taken by pytest-asyncio (``asyncio_mode = auto`` takes every ``async def`` test).
    """
    from twisted.internet.defer import Deferred

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> Deferred[None]:
        return Deferred.fromFuture(asyncio.ensure_future(test(*args, **kwargs)))

    marked: Callable[..., Any] = getattr(pytest.mark, REACTOR_MARK)(run)
    return marked


def is_reactor_test(item: pytest.Item) -> bool:
    return item.get_closest_marker(REACTOR_MARK) is not None


def call_outside_reactor(item: pytest.Function) -> object | None:
    """Call a test as pytest does (``True``), unless it is a ``reactor`` test (``None``: pytest-twisted's)."""
    return None if is_reactor_test(item) else _pytest_call(item)


def _running_reactor_loop() -> asyncio.AbstractEventLoop | None:
    if "twisted.internet.reactor" not in sys.modules:
        return None  # importing it would install the default reactor
    from twisted.internet import reactor

    loop = getattr(reactor, "_asyncioEventloop", None)  # AsyncioSelectorReactor's loop
    running: bool = getattr(reactor, "running", False)
    return loop if running and isinstance(loop, asyncio.AbstractEventLoop) else None


@contextmanager
def reactor_loop_set() -> Iterator[None]:
    """While inside: the reactor's loop is this thread's running loop (if the reactor runs); none after."""
    asyncio.events._set_running_loop(_running_reactor_loop())
    try:
        yield
    finally:
        asyncio.events._set_running_loop(None)


def resume_reactor_loop() -> None:
    """Before pytest-twisted stops the reactor (its greenlet resumes inside ``run_forever``)."""
    asyncio.events._set_running_loop(_running_reactor_loop())
