"""Distributed jobs against a real ``redis-server`` (and PostgreSQL for the records): the queue's guarantees one by
one, the site gate, then whole workers of both engines on a multi-site loopback web, killed and stopped mid-run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from enrich.distributed import JobKeys, RedisSiteGate, WorkQueue, job_status
from enrich.distributed.gate import AT_CAP_WAIT_S
from enrich.errors import DeadLetterError, InvalidURLError
from enrich.record import Record
from enrich.stages import WorkItem
from enrich.urls import InputURL, read_urls

if TYPE_CHECKING:
    from collections.abc import Iterator

    import redis

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tools"))
from multisite_web import MultiSiteWeb, SiteSpec  # noqa: E402

_jobs = iter(range(1, 1_000_000))


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    import redis as redis_lib

    connection = redis_lib.Redis.from_url(redis_url)
    yield connection
    connection.close()


@pytest.fixture
def job() -> str:
    return f"job{next(_jobs)}-{os.getpid()}"


def entries(urls: list[str]) -> list[InputURL]:
    return list(read_urls(enumerate(urls, 1)))


def written(url: str, *, error: Exception | None = None) -> WorkItem:
    record = Record(url=url)
    if error is not None:
        record.fail(error, "fetch")
    return WorkItem(record=record)


# --- the queue ------------------------------------------------------------------------------------------------------


def test_a_url_is_queued_once_whoever_enqueues_it(client: redis.Redis, job: str) -> None:
    urls = [f"http://a.example/{i}" for i in range(30)]
    first = WorkQueue(client, job)
    second = WorkQueue(client, job)  # another process, same job
    assert first.enqueue(entries(urls[:20]), batch=7) == (20, 0)
    assert second.enqueue(entries([*urls[10:], urls[0], "ftp://nope/"]), batch=7) == (11, 11)
    assert first.remaining() == 31
    taken = WorkQueue(client, job, worker="w").take(100)
    assert sorted(d.entry.url for d in taken) == sorted([*urls, "ftp://nope/"])
    invalid = next(d for d in taken if d.entry.url == "ftp://nope/")
    assert isinstance(invalid.entry.error, InvalidURLError)  # it becomes its error record, not a fetch
    assert invalid.entry.fetch_url is None


def test_acknowledged_urls_leave_the_queue_and_are_counted(client: redis.Redis, job: str) -> None:
    queue = WorkQueue(client, job, worker="w1")
    queue.enqueue(entries(["http://a.example/1", "http://a.example/2", "http://a.example/3"]))
    deliveries = queue.take(2)
    assert len(deliveries) == 2
    assert not queue.finished_elsewhere()  # one URL is still queued
    ok, bad = (d.entry.url for d in deliveries)
    assert queue.acknowledge([written(ok), written(bad, error=RuntimeError("boom"))]) == 2
    assert queue.acknowledge([written(ok)]) == 0  # acknowledged once only
    status = job_status(client, job)
    assert (status.queued, status.leased, status.done, status.failed) == (1, 0, 1, 1)
    assert queue.take(5)[0].entry.url == "http://a.example/3"
    assert queue.finished_elsewhere()  # what is left is this worker's own
    queue.acknowledge([written("http://a.example/3")])
    status = job_status(client, job)
    assert status.finished
    assert status.done == 2
    assert [w.records for w in status.workers] == [3]


def test_a_dead_workers_urls_are_reclaimed_after_the_lease_timeout(client: redis.Redis, job: str) -> None:
    dead = WorkQueue(client, job, worker="dead", lease_timeout_s=0.5)
    dead.enqueue(entries([f"http://a.example/{i}" for i in range(5)]))
    assert len(dead.take(5)) == 5  # then it dies: it never renews nor acknowledges
    alive = WorkQueue(client, job, worker="alive", lease_timeout_s=0.5)
    assert alive.take(5) == []  # the leases still hold
    assert not alive.finished_elsewhere()  # and the job is not over: the worker must wait, not exit
    time.sleep(0.6)
    alive._next_reclaim = 0.0
    reclaimed = alive.take(5)
    assert sorted(d.entry.url for d in reclaimed) == sorted(f"http://a.example/{i}" for i in range(5))
    assert alive.reclaimed == 5
    assert not any(d.dead for d in reclaimed)


def test_renewed_leases_are_not_reclaimed(client: redis.Redis, job: str) -> None:
    holder = WorkQueue(client, job, worker="holder", lease_timeout_s=0.6)
    holder.enqueue(entries(["http://a.example/1"]))
    holder.take(1)
    other = WorkQueue(client, job, worker="other", lease_timeout_s=0.6)
    for _ in range(4):
        time.sleep(0.25)
        holder.renew()
        other._next_reclaim = 0.0
        assert other.take(1) == []
    assert holder.lost == 0


def test_a_url_that_killed_its_workers_is_dead_lettered(client: redis.Redis, job: str) -> None:
    url = "http://a.example/poison"
    WorkQueue(client, job).enqueue(entries([url]))
    holders = [WorkQueue(client, job, worker=f"w{i}", lease_timeout_s=0.2, max_deliveries=2) for i in range(3)]
    assert [d.dead for d in holders[0].take(1)] == [False]  # delivered once; its worker dies
    time.sleep(0.25)
    assert [d.dead for d in holders[1].take(1)] == [False]  # delivered twice; this one dies too
    time.sleep(0.25)
    (last,) = holders[2].take(1)
    assert last.dead
    assert isinstance(last.entry.error, DeadLetterError)
    assert "2 workers died" in str(last.entry.error)
    holders[2].acknowledge([written(url, error=last.entry.error)])
    status = job_status(client, job)
    assert (status.dead_lettered, status.failed, status.done, status.finished) == (1, 0, 0, True)
    assert client.lrange(JobKeys(job).dead, 0, -1) == [url.encode()]


def test_a_graceful_stop_gives_unstarted_urls_back_at_once(client: redis.Redis, job: str) -> None:
    stopping = WorkQueue(client, job, worker="stopping", lease_timeout_s=300)
    stopping.enqueue(entries([f"http://a.example/{i}" for i in range(4)]))
    taken = stopping.take(4)
    stopping.acknowledge([written(taken[0].entry.url)])
    assert stopping.release_unstarted() == 3
    other = WorkQueue(client, job, worker="other", lease_timeout_s=300)
    assert sorted(d.entry.url for d in other.take(10)) == sorted(d.entry.url for d in taken[1:])
    status = job_status(client, job)
    assert (status.done, status.leased, status.queued) == (1, 3, 0)


# --- the site gate --------------------------------------------------------------------------------------------------


def test_the_gate_shares_a_sites_spacing_and_cap_between_workers(client: redis.Redis, job: str) -> None:
    one = RedisSiteGate(client, job, worker="one", permit_ttl_s=30)
    two = RedisSiteGate(client, job, worker="two", permit_ttl_s=30)
    token, wait, _ = one.acquire("slow.example", cap=4, spacing_s=0.3)
    assert token is not None
    assert wait == 0
    one.stamp("slow.example", token, spacing_s=0.3)  # the request leaves at once
    refused, wait, _ = two.acquire("slow.example", cap=4, spacing_s=0.3)
    assert refused is None
    assert 0.2 < wait <= 0.3  # the other worker waits for the site's next turn
    assert two.acquire("other.example", cap=4, spacing_s=0.3)[0] is not None  # other sites are not held up
    time.sleep(wait)
    assert two.acquire("slow.example", cap=4, spacing_s=0.3)[0] is not None

    first, _, _ = one.acquire("capped.example", cap=1, spacing_s=0)
    assert first is not None
    assert two.acquire("capped.example", cap=1, spacing_s=0)[0] is None  # at the cap over both workers
    one.release("capped.example", first, rest_s=0)
    assert two.acquire("capped.example", cap=1, spacing_s=0)[0] is not None


def test_a_worker_new_to_a_site_keeps_the_spacing_another_worker_learnt(client: redis.Redis, job: str) -> None:
    known = RedisSiteGate(client, job, worker="known", permit_ttl_s=30)
    newcomer = RedisSiteGate(client, job, worker="newcomer", permit_ttl_s=30)
    token, _, _ = known.acquire("delayed.example", cap=2, spacing_s=0.3)
    assert token is not None
    known.release("delayed.example", token, rest_s=0)
    time.sleep(0.31)
    # the newcomer has not read robots.txt yet (cap and spacing 0): the job's cap (2) and spacing (0.3 s) apply
    late, _, _ = newcomer.acquire("delayed.example", cap=0, spacing_s=0)
    assert late is not None
    refused, wait, _ = known.acquire("delayed.example", cap=2, spacing_s=0.3)
    assert refused is None
    assert 0.2 < wait <= 0.3  # the job's spacing, though the newcomer gave none
    time.sleep(0.35)
    refused, wait, _ = known.acquire("delayed.example", cap=2, spacing_s=0.3)
    assert refused is None
    assert wait == AT_CAP_WAIT_S  # the newcomer's request has not left yet: the next one waits for it
    newcomer.stamp("delayed.example", late, spacing_s=0)  # it leaves, late: the turn counts from now
    refused, wait, _ = known.acquire("delayed.example", cap=2, spacing_s=0.3)
    assert refused is None
    assert 0.25 < wait <= 0.3
    time.sleep(wait)
    granted, _, _ = known.acquire("delayed.example", cap=2, spacing_s=0.3)
    assert granted is not None
    # cap 2, spacing counted: one in flight (the newcomer's, never released) and this one; a third waits
    known.stamp("delayed.example", granted, spacing_s=0.3)
    time.sleep(0.31)
    assert known.acquire("delayed.example", cap=2, spacing_s=0.3)[0] is None


def test_a_backoff_rests_the_site_for_every_worker(client: redis.Redis, job: str) -> None:
    one = RedisSiteGate(client, job, worker="one", permit_ttl_s=30)
    two = RedisSiteGate(client, job, worker="two", permit_ttl_s=30)
    token, _, _ = one.acquire("busy.example", cap=8, spacing_s=0)
    assert token is not None
    one.release("busy.example", token, rest_s=2.0)  # e.g. a 429 with Retry-After: 2
    refused, wait, _ = two.acquire("busy.example", cap=8, spacing_s=0)
    assert refused is None
    assert 1.5 < wait <= 2.0


def test_an_open_circuit_is_open_for_every_worker(client: redis.Redis, job: str) -> None:
    one = RedisSiteGate(client, job, worker="one", permit_ttl_s=30)
    two = RedisSiteGate(client, job, worker="two", permit_ttl_s=30)
    token, _, _ = one.acquire("down.example", cap=8, spacing_s=0)
    assert token is not None
    one.release("down.example", token, rest_s=0, open_s=0.4, reason="circuit open for down.example (last: HTTP 503)")
    refused, wait, refusal = two.acquire("down.example", cap=8, spacing_s=0)
    assert refused is None
    assert 0.3 < wait <= 0.4
    assert refusal is not None
    assert refusal.startswith("circuit open for down.example (last: HTTP 503)")
    time.sleep(wait)
    assert two.acquire("down.example", cap=8, spacing_s=0)[0] is not None  # the cooldown is over: a trial


def test_a_dead_workers_permit_expires(client: redis.Redis, job: str) -> None:
    dead = RedisSiteGate(client, job, worker="dead", permit_ttl_s=0.3)
    assert dead.acquire("site.example", cap=1, spacing_s=0)[0] is not None  # never released
    alive = RedisSiteGate(client, job, worker="alive", permit_ttl_s=0.3)
    assert alive.acquire("site.example", cap=1, spacing_s=0)[0] is None
    time.sleep(0.35)
    assert alive.acquire("site.example", cap=1, spacing_s=0)[0] is not None


# --- whole workers --------------------------------------------------------------------------------------------------

CAP = 2
DELAY_S = 0.25

SPECS = [
    SiteSpec("delayed", "127.0.0.60", 6, 10, crawl_delay_s=DELAY_S, not_found_rate=0, redirect_rate=0),
    SiteSpec("fast", "127.0.0.61", 40, 5, not_found_rate=0.1, redirect_rate=0),
    SiteSpec("slow", "127.0.0.62", 40, 80, not_found_rate=0, redirect_rate=0.1),
    SiteSpec("slower", "127.0.0.65", 30, 150, not_found_rate=0.05, redirect_rate=0),
    SiteSpec("throttled", "127.0.0.63", 12, 5, "throttled", max_rps=6, not_found_rate=0, redirect_rate=0),
    SiteSpec("refused", "127.0.0.64", 2, 0, "refused"),
    SiteSpec("dead", "dead-1.invalid", 1, 0, "unresolvable"),
]


def worker_config(tmp: Path, *, per_site: int = CAP) -> Path:
    path = tmp / "config.yml"
    config = {
        "stages": {
            "enrichment": {
                "allow_private_addresses": True,
                "max_workers": 6,
                "retries": 1,
                "backoff_base": 0.05,
                "backoff_cap": 0.2,
                "retry_after_cap": 2.0,
                "per_domain_limit": per_site,
                "max_crawl_delay": 1.0,
            }
        }
    }
    import yaml

    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def crawler(*argv: str) -> list[str]:
    return [sys.executable, "-m", "crawler", *argv]


def start_worker(redis_url: str, job: str, dsn: str, config: Path, name: str, *extra: str) -> subprocess.Popen[str]:
    argv = crawler("worker", "--redis", redis_url, "--job", job, "--postgres", dsn, "--name", name, "--no-nlp")
    argv += ["--config", str(config), "--progress", "off", *extra]
    return subprocess.Popen(argv, cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True, start_new_session=True)


def rows(dsn: str, table: str = "records") -> Counter[str]:
    import psycopg

    with psycopg.connect(dsn) as db:
        return Counter(url for (url,) in db.execute(f"SELECT url FROM {table}"))


def reset_table(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS records")


def finish(process: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, err = process.communicate()
        pytest.fail(f"worker did not finish: {err[-3000:]}")
    return process.returncode, err


def stop_all(processes: list[subprocess.Popen[str]]) -> None:
    """Kill what is still running (a failed test must leave no worker behind)."""
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()


@pytest.fixture(scope="module")
def web() -> Iterator[MultiSiteWeb]:
    with MultiSiteWeb(SPECS) as running:
        yield running


def enqueue(redis_url: str, job: str, urls: list[str], tmp: Path) -> None:
    path = tmp / "urls.txt"
    path.write_text("\n".join(urls) + "\n", encoding="utf-8")
    result = subprocess.run(
        crawler("enqueue", "--redis", redis_url, "--job", job, "--input", str(path)),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"{len(set(urls))} URLs queued" in result.stdout


def status(redis_url: str, job: str) -> dict[str, Any]:
    """The job's figures, as ``status --json`` prints them (read in-process: polling must be quick)."""
    import redis as redis_lib

    with redis_lib.Redis.from_url(redis_url) as connection:
        return job_status(connection, job).to_dict()


def test_the_status_command_prints_the_jobs_figures(redis_url: str, job: str, tmp_path: Path) -> None:
    enqueue(redis_url, job, ["http://a.example/1", "http://a.example/2", "http://a.example/1"], tmp_path)
    argv = crawler("status", "--redis", redis_url, "--job", job, "--json")
    result = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(result.stdout) == {**status(redis_url, job), "job": job}
    assert (json.loads(result.stdout)["queued"], json.loads(result.stdout)["duplicates_skipped"]) == (2, 1)
    text = subprocess.run(argv[:-1], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True).stdout
    assert f"job {job}: running" in text
    assert "queued 2, leased 0, done 0" in text


def test_workers_of_both_engines_write_every_url_once_and_stay_polite(
    redis_url: str, postgres_dsn: str, web: MultiSiteWeb, job: str, tmp_path: Path
) -> None:
    web.reset()
    reset_table(postgres_dsn)
    urls = web.urls("grouped")
    config = worker_config(tmp_path)
    names = ("scrapy-1", "async-1", "async-2")
    # --wait: the workers stay for work enqueued after they started (and would otherwise leave an empty job)
    workers = [
        start_worker(redis_url, job, postgres_dsn, config, name, "--wait", *(["--no-async-enrichment"] * (i == 0)))
        for i, name in enumerate(names)
    ]
    try:
        deadline = time.monotonic() + 90
        while len(status(redis_url, job)["workers"]) < len(names):
            assert all(w.poll() is None for w in workers), [w.communicate()[1][-2000:] for w in workers]
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.2)
        enqueue(redis_url, job, [*urls, urls[0]], tmp_path)  # a repeated line is queued once
        while not (figures := status(redis_url, job))["finished"] or figures["done"] + figures["failed"] < len(urls):
            assert all(w.poll() is None for w in workers), [w.communicate()[1][-2000:] for w in workers]
            assert time.monotonic() < deadline + 180, f"the job did not finish: {figures}"
            time.sleep(0.2)
        for process in workers:
            process.send_signal(signal.SIGTERM)
        for process in workers:
            code, err = finish(process, timeout=60)
            assert code == 130, err[-3000:]  # stopped by the signal, with nothing to give back
    finally:
        stop_all(workers)

    assert rows(postgres_dsn) == Counter(urls)  # every URL exactly once
    figures = status(redis_url, job)
    assert (figures["queued"], figures["leased"], figures["finished"]) == (0, 0, True)
    assert figures["done"] + figures["failed"] == len(urls)
    assert figures["duplicates_skipped"] == 1
    per_worker = {w["name"]: w["records"] for w in figures["workers"]}
    assert sum(per_worker.values()) == len(urls)
    assert all(per_worker[name] > 0 for name in names), per_worker

    # the three workers together were as polite as one: caps, Crawl-delay, Retry-After, measured at the server
    report = web.politeness_report(per_site_cap=CAP)
    assert report.breaches == []


def test_a_killed_workers_urls_are_finished_by_another(
    redis_url: str, postgres_dsn: str, web: MultiSiteWeb, job: str, tmp_path: Path
) -> None:
    web.reset()
    reset_table(postgres_dsn)
    urls = [u for u in web.urls("shuffled", seed=3) if "127.0.0.62" in u or "127.0.0.65" in u]  # the slow sites
    enqueue(redis_url, job, urls, tmp_path)
    config = worker_config(tmp_path, per_site=1)
    victim = start_worker(redis_url, job, postgres_dsn, config, "victim", "--lease-timeout", "2", "--batch-size", "5")
    deadline = time.monotonic() + 60
    while status(redis_url, job)["done"] + status(redis_url, job)["failed"] < 10:
        assert time.monotonic() < deadline, "the worker made no progress"
        time.sleep(0.2)
    os.killpg(victim.pid, signal.SIGKILL)  # no flush, no requeue: its leases must time out
    victim.communicate()
    held = status(redis_url, job)["leased"]
    assert held > 0
    stats, prom, report = tmp_path / "heir.json", tmp_path / "heir.prom", tmp_path / "heir.html"
    heir = start_worker(
        redis_url,
        job,
        postgres_dsn,
        config,
        "heir",
        *("--lease-timeout", "2", "--stats-file", str(stats)),
        *("--metrics-textfile", str(prom), "--report", str(report)),
    )
    code, err = finish(heir)
    assert code == 0, err[-3000:]
    assert rows(postgres_dsn) == Counter(urls)  # nothing lost, nothing twice
    assert status(redis_url, job)["finished"]
    assert json.loads(stats.read_text(encoding="utf-8"))["worker"]["reclaimed"] == held
    assert "webenrich_records_total" in prom.read_text(encoding="utf-8")  # a worker's metrics, as a run's
    assert "<svg" in report.read_text(encoding="utf-8")


def test_sigterm_gives_a_workers_unstarted_urls_back(
    redis_url: str, postgres_dsn: str, web: MultiSiteWeb, job: str, tmp_path: Path
) -> None:
    web.reset()
    reset_table(postgres_dsn)
    urls = [u for u in web.urls("grouped") if "127.0.0.62" in u]  # the slow site
    enqueue(redis_url, job, urls, tmp_path)
    config = worker_config(tmp_path, per_site=1)
    worker = start_worker(
        redis_url, job, postgres_dsn, config, "stopping", "--lease-timeout", "300", "--batch-size", "2"
    )
    deadline = time.monotonic() + 60
    while status(redis_url, job)["done"] < 3:
        assert time.monotonic() < deadline, "the worker made no progress"
        time.sleep(0.1)
    worker.send_signal(signal.SIGTERM)
    code, err = finish(worker, timeout=60)
    assert code == 130, err[-3000:]
    figures = status(redis_url, job)
    assert figures["leased"] == 0  # nothing waits for a 300 s lease: what it held is queued again
    done = rows(postgres_dsn)
    assert figures["queued"] == len(urls) - sum(done.values())
    assert max(done.values()) == 1


def test_enqueue_reads_a_scrapy_redis_start_urls_list(client: redis.Redis, redis_url: str, job: str) -> None:
    key = f"{job}-spider:start_urls"
    client.rpush(key, "http://a.example/1", '{"url": "http://a.example/2", "priority": 3}', "http://a.example/1")
    argv = crawler("enqueue", "--redis", redis_url, "--job", job, "--from-redis-key", key)
    result = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "2 URLs queued, 1 skipped" in result.stdout
    taken = {d.entry.url: d.entry.priority for d in WorkQueue(client, job, worker="w").take(10)}
    assert taken == {"http://a.example/1": 0, "http://a.example/2": 3}
    assert client.llen(key) == 3  # read, not emptied
    client.hset(f"{job}-hash", "a", "b")
    wrong = subprocess.run([*argv[:-1], f"{job}-hash"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2
    assert "a Redis hash, not a list or a set" in wrong.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["worker", "--redis", "redis://127.0.0.1:1/0", "--job", "j", "--postgres", "x"], "cannot reach Redis"),
        (["worker", "--redis", "{redis}", "--job", "j"], "needs somewhere to write"),
        (["worker", "--redis", "{redis}", "--job", "j", "-o", "x.jsonl", "--max-deliveries", "0"], "max-deliveries"),
        (["enqueue", "--redis", "{redis}", "--job", "j", "--input", "/nonexistent.txt"], "no such file"),
        (["status", "--redis", "not-a-url", "--job", "j"], "--redis"),
    ],
)
def test_bad_arguments_say_what_to_fix(redis_url: str, argv: list[str], message: str) -> None:
    argv = [a.replace("{redis}", redis_url) for a in argv]
    result = subprocess.run(crawler(*argv), cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


def test_a_scrapy_worker_killed_with_9_takes_its_crawl_with_it(
    redis_url: str, postgres_dsn: str, web: MultiSiteWeb, job: str, tmp_path: Path
) -> None:
    web.reset()
    reset_table(postgres_dsn)
    urls = [u for u in web.urls("grouped") if "127.0.0.65" in u]  # the slowest site
    enqueue(redis_url, job, urls, tmp_path)
    config = worker_config(tmp_path, per_site=1)
    worker = start_worker(
        redis_url, job, postgres_dsn, config, "scrapy", "--no-async-enrichment", "--lease-timeout", "300"
    )
    try:
        deadline = time.monotonic() + 90
        while status(redis_url, job)["leased"] == 0:
            assert worker.poll() is None, worker.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the worker took nothing"
            time.sleep(0.1)
        worker.kill()  # the worker process only: its Scrapy child is in its own session
        worker.communicate()
        # the child is told (SIGTERM on its parent's death): it stops and gives back what it did not start
        while (figures := status(redis_url, job))["leased"] > 0:
            assert time.monotonic() < deadline + 60, f"the Scrapy child kept its leases: {figures}"
            time.sleep(0.2)
        assert figures["queued"] + figures["done"] + figures["failed"] == len(urls)
        assert figures["queued"] > 0  # it stopped: it did not crawl on to the end under a dead worker's name
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
