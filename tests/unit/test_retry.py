"""The retry policy: what is retried, how long to wait, and the final message."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from enrich.config import FetchConfig
from enrich.errors import FetchError, FetchTimeoutError, InvalidURLError, SinkError
from enrich.policy import RetryPolicy, failure_message, http_error, is_transient_error, parse_retry_after

NOW = 1_800_000_000.0


def policy(**kwargs: object) -> RetryPolicy:
    options: dict[str, object] = {
        "retries": 2,
        "backoff_base_s": 1.0,
        "backoff_cap_s": 30.0,
        "backoff_jitter": 0.1,
        "retry_after_cap_s": 60.0,
        "random": lambda: 0.0,
        "wall_clock": lambda: NOW,
    }
    options.update(kwargs)
    return RetryPolicy(**options)  # type: ignore[arg-type]


def test_from_config() -> None:
    p = RetryPolicy.from_config(FetchConfig(retries=4, backoff_base_s=0.5, backoff_cap_s=3, retry_after_cap_s=7))
    assert (p.retries, p.max_attempts, p.backoff_base_s, p.backoff_cap_s, p.retry_after_cap_s) == (4, 5, 0.5, 3, 7)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_retries_5xx_and_429(status: int) -> None:
    assert policy().should_retry(status, None, 1)


@pytest.mark.parametrize("status", [200, 301, 400, 401, 403, 404, 410, 451])
def test_never_retries_other_statuses(status: int) -> None:
    assert not policy().should_retry(status, None, 1)


@pytest.mark.parametrize(
    "exc",
    [
        TimeoutError(),
        ConnectionRefusedError(),
        ConnectionResetError(),
        OSError("network unreachable"),
        FetchError("dropped"),
        FetchTimeoutError("slow"),
    ],
)
def test_retries_transport_errors(exc: BaseException) -> None:
    assert is_transient_error(exc)
    assert policy().should_retry(None, exc, 1)


@pytest.mark.parametrize("exc", [ValueError("bad"), InvalidURLError("bad url"), SinkError("disk full"), KeyError()])
def test_does_not_retry_other_errors(exc: BaseException) -> None:
    assert not policy().should_retry(None, exc, 1)


def test_at_most_retries_retries() -> None:
    p = policy(retries=2)
    assert [p.should_retry(503, None, attempt) for attempt in (1, 2, 3)] == [True, True, False]
    assert not policy(retries=0).should_retry(None, TimeoutError(), 1)


def test_exponential_backoff_capped() -> None:
    p = policy(backoff_base_s=1.0, backoff_cap_s=5.0, backoff_jitter=0.0)
    assert [p.delay(attempt) for attempt in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_is_a_fraction_of_the_delay() -> None:
    assert policy(backoff_jitter=0.1, random=lambda: 0.5).delay(2) == pytest.approx(2.0 * 1.05)
    assert policy(backoff_jitter=0.1, random=lambda: 0.999).delay(1) < 1.1


def test_retry_after_seconds_honoured_and_capped() -> None:
    assert policy(random=lambda: 0.9).delay(1, "7") == 7.0  # no jitter on a server-named time
    assert policy(retry_after_cap_s=3.0).delay(1, "120") == 3.0


def test_retry_after_http_date() -> None:
    header = formatdate(NOW + 12, usegmt=True)
    assert policy().delay(1, header) == pytest.approx(12.0)
    assert policy().delay(1, formatdate(NOW - 100, usegmt=True)) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-3", "1.5"])
def test_bad_retry_after_falls_back_to_backoff(value: str | None) -> None:
    assert policy(backoff_jitter=0.0).delay(2, value) == 2.0


def test_parse_retry_after() -> None:
    assert parse_retry_after("  30 ") == 30.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0) == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0


def test_failure_message() -> None:
    assert failure_message(3, "Connection timeout") == "Fetch failed after 3 attempts: Connection timeout"
    assert failure_message(1, "Connection refused") == "Fetch failed after 1 attempt: Connection refused"


def test_http_error() -> None:
    info = http_error(404)
    assert (info.type, info.message, info.stage) == ("HTTPError", "HTTP 404 Not Found", "fetch")
    assert http_error(503, attempts=3).message == "Fetch failed after 3 attempts: HTTP 503 Service Unavailable"
    assert http_error(599).message == "HTTP 599"


def test_negative_retries_rejected() -> None:
    with pytest.raises(ValueError, match="retries"):
        policy(retries=-1)
