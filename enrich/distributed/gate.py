"""Politeness across workers: each site's in-flight cap and next allowed start, kept in Redis for the whole job.

Every worker runs its own :class:`~enrich.frontier.Frontier` (its per-site queues, ``Crawl-delay``, backoff, AIMD
cap and circuit, learnt from its own answers). Before a request starts, the frontier asks the :class:`RedisSiteGate`
(the frontier's ``gate``) for a *permit* on the site, in one script call:

* requests of the site in flight, over all workers, must be under the cap the asking worker knows (or, before it has
  read the site's robots.txt, the cap another worker last gave);
* the site's next allowed start (``next``, on Redis's clock) must have come; a permit moves it on by the spacing
  (the site's ``Crawl-delay`` with the frontier's margin, or the pace learnt from its rate limiter). The last
  spacing a worker gave is kept with the site, and used when the asking worker knows none yet (its first request,
  before its robots.txt is read): a newcomer does not start a request right on another worker's heels.

A refused permit says how long to wait; the frontier puts the request back and the site is not ready until then
(no slot is held meanwhile). When the request is really on its way (its headers sent; in Scrapy mode, when it
reaches the downloader) the worker *stamps* the site: ``next`` moves to at least that moment plus the spacing, so
the spacing holds between requests on the wire however long the checks took. When the attempt is over the permit
is released with how long the worker's own policy says the site must rest (a backoff after a 429/503, a learnt
pace): ``next`` moves to at least that for every worker. When the worker's circuit breaker has opened on the site,
the release opens it for the job (``open_until``, with its reason): every worker then refuses the site's requests
(their records say why) until the cooldown is over, and the next request is the trial. N workers together
therefore treat a site as one would.

On a spaced site (a ``Crawl-delay``) the next permit waits for the stamp of the last one, so two workers' requests
leave in turn however late a loaded machine sends them. In-flight permits are a sorted set scored by expiry
(``permit_ttl_s`` from the permit, then from its stamp): a worker that dies mid-request frees its place after that.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from enrich.distributed.queue import JobKeys, text_of

if TYPE_CHECKING:
    import redis

__all__ = ["AT_CAP_WAIT_S", "RedisSiteGate"]

AT_CAP_WAIT_S = 0.05
"""How long a request waits before asking again when the site is at its cap over all workers."""

KEY_TTL_MS = 7 * 24 * 3600 * 1000
"""A site's keys expire a week after their last use."""

_HELPERS = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function known(field, given, default)
  if given > 0 then
    redis.call('HSET', KEYS[1], field, given)
    return given
  end
  return tonumber(redis.call('HGET', KEYS[1], field) or default)
end
local function push_next(at)
  local next_at = tonumber(redis.call('HGET', KEYS[1], 'next') or '0')
  if at > next_at then redis.call('HSET', KEYS[1], 'next', at) end
end
local function clear_starting(token)
  if redis.call('HGET', KEYS[1], 'starting') == token then redis.call('HDEL', KEYS[1], 'starting') end
end
"""
"""Shared by the scripts (KEYS[1]: the site's hash; KEYS[2]: its permits): Redis's clock in ms; a cap or spacing
the asking worker gives (kept for the job) or, when it gives 0, the job's last; moving ``next`` only later; ending
the wait for a permit's stamp."""

_ACQUIRE = (
    _HELPERS
    + """
local now = now_ms()
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
if now < open_until then return {2, open_until - now, redis.call('HGET', KEYS[1], 'reason') or ''} end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local next_at = tonumber(redis.call('HGET', KEYS[1], 'next') or '0')
if now < next_at then return {1, next_at - now} end
local starting = redis.call('HGET', KEYS[1], 'starting')
if starting then
  if redis.call('ZSCORE', KEYS[2], starting) then return {1, -1} end
  redis.call('HDEL', KEYS[1], 'starting')
end
if redis.call('ZCARD', KEYS[2]) >= known('cap', tonumber(ARGV[2]), '1') then return {1, -1} end
local spacing = known('spacing', tonumber(ARGV[3]), '0')
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[1])
redis.call('HSET', KEYS[1], 'next', now + spacing)
if spacing > 0 then redis.call('HSET', KEYS[1], 'starting', ARGV[1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return {0, 0}
"""
)

_STAMP = (
    _HELPERS
    + """
local spacing = known('spacing', tonumber(ARGV[2]), '0')
local now = now_ms()
push_next(now + spacing)
clear_starting(ARGV[1])
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then redis.call('ZADD', KEYS[2], 'XX', now + tonumber(ARGV[3]), ARGV[1]) end
return 0
"""
)

_RELEASE = (
    _HELPERS
    + """
redis.call('ZREM', KEYS[2], ARGV[1])
clear_starting(ARGV[1])
local now = now_ms()
local rest = tonumber(ARGV[2])
if rest > 0 then push_next(now + rest) end
local open = tonumber(ARGV[3])
if open > 0 then redis.call('HSET', KEYS[1], 'open_until', now + open, 'reason', ARGV[4]) end
return 0
"""
)


class RedisSiteGate:
    """Per-site permits shared by every worker of a job (see the module docstring).

    Args:
        client: a ``redis.Redis`` client.
        job: the job's name (its keys are :class:`~enrich.distributed.queue.JobKeys`).
        worker: this worker's name, the prefix of its permit tokens.
        permit_ttl_s: how long a permit holds a place if it is never released (its worker died).
    """

    def __init__(self, client: redis.Redis, job: str, *, worker: str, permit_ttl_s: float) -> None:
        self.keys = JobKeys(job)
        self.worker = worker
        self.permit_ttl_ms = max(1, int(permit_ttl_s * 1000))
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._stamp = client.register_script(_STAMP)
        self._tokens = itertools.count(1)
        self.granted = 0
        self.refused = 0
        self.circuit_refusals = 0

    def acquire(self, site: str, *, cap: int, spacing_s: float) -> tuple[str | None, float, str | None]:
        """A permit for one request on ``site`` now: ``(token, 0, None)``; ``(None, seconds to wait, None)``; or,
        while another worker's circuit for the site is open, ``(None, seconds it stays open, refusal)``.

        ``cap`` and ``spacing_s`` are what the asking worker knows of the site; 0 (it has not read the site's
        robots.txt yet) takes what another worker last gave (a cap of 1 if none did)."""
        token = f"{self.worker}:{next(self._tokens)}"
        keys = [self.keys.site(site), self.keys.site_leases(site)]
        args: list[str | int] = [token, cap, int(spacing_s * 1000), self.permit_ttl_ms, KEY_TTL_MS]
        code, ms, *rest = self._acquire(keys=keys, args=args)
        if int(code) == 0:
            self.granted += 1
            return token, 0.0, None
        if int(code) == 2:
            self.circuit_refusals += 1
            reason = text_of(rest[0]) if rest else ""
            return None, int(ms) / 1000, f"{reason} (the job's workers share the site's circuit)"
        self.refused += 1
        return None, AT_CAP_WAIT_S if int(ms) < 0 else int(ms) / 1000, None

    def stamp(self, site: str, token: str, *, spacing_s: float) -> None:
        """The permitted request goes on the wire now: the site's next start is at least ``spacing_s`` from now (the
        job's last known spacing when 0), the next permit of a spaced site may be given, and the permit holds its
        place for ``permit_ttl_s`` from now.

        The permit reserved a turn when the request was handed out; checks in between (robots.txt, the address)
        and a loaded machine can put its real start later, and the spacing must count from there."""
        keys = [self.keys.site(site), self.keys.site_leases(site)]
        self._stamp(keys=keys, args=[token, max(0, int(spacing_s * 1000)), self.permit_ttl_ms])

    def release(self, site: str, token: str, *, rest_s: float, open_s: float = 0.0, reason: str = "") -> None:
        """Give the permit back; no request of the site starts, on any worker, for ``rest_s`` from now; with
        ``open_s``, every worker refuses the site's requests that long (its circuit is open: ``reason``)."""
        keys = [self.keys.site(site), self.keys.site_leases(site)]
        self._release(keys=keys, args=[token, max(0, int(rest_s * 1000)), max(0, int(open_s * 1000)), reason])
