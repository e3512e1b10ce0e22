"""Environment YAML -> stage configs, command-line overrides, and the progress/summary formatting."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest

from crawler.cli import FLAG_KEYS, REPO_ROOT, build_parser
from crawler.env_config import ENRICHMENT_KEYS, build_env_settings, load_env_settings, merge_mappings
from crawler.progress import JsonlTail, ProgressReporter, format_summary
from enrich.config import EnrichConfig
from enrich.errors import ConfigError
from enrich.stats import RunStats

CONFIG_DIR = REPO_ROOT / "config"


def errors_of(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        build_env_settings(raw, env="test")
    return str(info.value)


def enrichment(**values: Any) -> dict[str, Any]:
    return {"stages": {"enrichment": values}}


def test_every_enrich_config_field_has_a_yaml_key() -> None:
    fields = {(name, f) for name, section in EnrichConfig.model_fields.items() for f in section.annotation.model_fields}  # type: ignore[union-attr]
    assert set(ENRICHMENT_KEYS.values()) == fields
    assert len(set(ENRICHMENT_KEYS.values())) == len(ENRICHMENT_KEYS)


def test_every_flag_maps_to_a_known_yaml_key() -> None:
    for key in FLAG_KEYS.values():
        if key.startswith("stages.enrichment."):
            assert key.removeprefix("stages.enrichment.") in ENRICHMENT_KEYS
    dests = {action.dest for action in build_parser()._actions}
    assert set(FLAG_KEYS) <= dests


@pytest.mark.parametrize("env", ["development", "production"])
def test_shipped_environments_load(env: str) -> None:
    settings = load_env_settings(env, search=(CONFIG_DIR,))
    assert settings.data_dir == Path(f"data/{env}")
    assert settings.discover_output == Path(f"data/{env}/stage01/discovered_urls.txt")
    assert settings.prepare_output == Path(f"data/{env}/stage02/prepared_urls.txt")
    assert settings.enrich_output == Path(f"data/{env}/processed/stage03/enrichment_output.jsonl")
    assert settings.sources == (str(CONFIG_DIR / f"{env}.yml"),)


def test_development_file_lists_the_defaults() -> None:
    settings = load_env_settings("development", search=(CONFIG_DIR,))
    defaults = build_env_settings({}, env="development")
    assert settings.prepare == defaults.prepare
    assert settings.discover == defaults.discover
    assert settings.enrich.nlp == defaults.enrich.nlp
    assert settings.enrich.fetch.max_concurrency == 20


def test_mapping_onto_enrich_config() -> None:
    raw = enrichment(
        max_workers=7, timeout=3, nlp_enabled=False, batch_size=9, nlp_batch_size=4, adaptive={"decrease_factor": 0.25}
    )
    raw["data_dir"] = "out"
    config = build_env_settings(raw, env="x").enrich
    assert config.fetch.max_concurrency == 7
    assert config.fetch.timeout_s == 3
    assert config.nlp.enabled is False
    assert config.output.batch_size == 9
    assert config.nlp.batch_size == 4
    assert config.aimd.decrease_factor == 0.25
    assert config.output.path == Path("out/processed/stage03/enrichment_output.jsonl")


def test_absolute_output_paths_stay() -> None:
    raw = enrichment(output="/tmp/x.jsonl", sqlite_path="db.sqlite")
    settings = build_env_settings(raw, env="x")
    assert settings.enrich.output.path == Path("/tmp/x.jsonl")
    assert settings.enrich.output.sqlite_path == Path("data/x/db.sqlite")


def test_warc_keys_map_onto_the_warc_section() -> None:
    assert build_env_settings({}, env="x").enrich.warc.dir is None  # off unless asked for
    settings = build_env_settings(enrichment(warc_dir="warc", warc_max_mb=5), env="x")
    assert settings.enrich.warc.dir == Path("data/x/warc")  # relative to data_dir, like sqlite_path
    assert settings.enrich.warc.max_mb == 5
    assert build_env_settings(enrichment(warc_dir="/srv/warc"), env="x").enrich.warc.dir == Path("/srv/warc")
    assert "stages.enrichment.warc_max_mb: Input should be greater than or equal to 1 (got 0)" in errors_of(
        enrichment(warc_max_mb=0)
    )


def test_unknown_keys_are_named_as_written() -> None:
    message = errors_of({"stage": {}, "stages": {"enrich": {}, "enrichment": {"max_worker": 3}}})
    assert "stage: unknown key (allowed at the top level: data_dir, stages)" in message
    assert "stages.enrich: unknown stage (allowed: discover, prepare, enrichment)" in message
    assert "stages.enrichment.max_worker: unknown key (did you mean 'max_workers'?" in message


def test_negative_and_wrong_type_values_name_the_yaml_key() -> None:
    message = errors_of(enrichment(max_workers=-4, timeout="soon", adaptive={"increase_step": 0}))
    assert "stages.enrichment.max_workers: Input should be greater than or equal to 1 (got -4)" in message
    assert "stages.enrichment.timeout: Input should be a valid number" in message
    assert "(got 'soon')" in message
    assert "stages.enrichment.adaptive.increase_step: Input should be greater than or equal to 1 (got 0)" in message


def test_backoff_base_above_cap_names_both_keys() -> None:
    message = errors_of(enrichment(backoff_base=60, backoff_cap=30))
    assert (
        "stages.enrichment.backoff_base: stages.enrichment.backoff_base (60.0) must not exceed "
        "stages.enrichment.backoff_cap (30.0)"
    ) in message


def test_discover_and_prepare_errors() -> None:
    message = errors_of({"stages": {"discover": {"max_depth": -1, "pages": 3}, "prepare": {"schemes": "ftp"}}})
    assert "stages.discover.max_depth: Input should be greater than or equal to 0 (got -1)" in message
    assert "stages.discover.pages: unknown key" in message
    assert "stages.prepare.schemes:" in message


def test_sections_must_be_mappings() -> None:
    assert "stages.enrichment: must be a mapping" in errors_of({"stages": {"enrichment": [1]}})
    assert "stages: must be a mapping" in errors_of({"stages": 3})


def test_layers_merge_in_order(tmp_path: Path) -> None:
    (tmp_path / "staging.yml").write_text("stages:\n  enrichment:\n    max_workers: 4\n    timeout: 9\n")
    extra = tmp_path / "extra.yml"
    extra.write_text("stages:\n  enrichment:\n    timeout: 5\n")
    settings = load_env_settings(
        "staging",
        config_files=(extra,),
        overrides={"stages": {"enrichment": {"max_workers": 2}}},
        search=(tmp_path,),
    )
    assert settings.enrich.fetch.max_concurrency == 2
    assert settings.enrich.fetch.timeout_s == 5
    assert settings.sources == (str(tmp_path / "staging.yml"), str(extra), "command line")


def test_unknown_environment_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no configuration for environment 'prod'"):
        load_env_settings("prod", search=(tmp_path,))


def test_bad_yaml_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("stages: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_env_settings("development", config_files=(bad,), search=(tmp_path,))
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_env_settings("development", config_files=(bad,), search=(tmp_path,))


def test_merge_mappings_is_deep_and_does_not_mutate() -> None:
    base = {"a": {"b": 1, "c": 2}, "d": [1]}
    merged = merge_mappings(base, {"a": {"b": 3}, "d": [2]})
    assert merged == {"a": {"b": 3, "c": 2}, "d": [2]}
    assert base == {"a": {"b": 1, "c": 2}, "d": [1]}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_bar_shows_done_total_rate_success_concurrency_eta() -> None:
    clock = FakeClock()
    stats = RunStats(total=100, clock=clock, concurrency=lambda: 12)
    stats.processed, stats.success, stats.failed = 40, 38, 2
    clock.now = 4.0
    assert ProgressReporter.status(stats) == "40/100  40% | 10.0 URLs/s | ok 95.0% | conc 12 | ETA 0:00:06"


def test_terminal_bar_fits_the_width_and_ends_its_line() -> None:
    clock = FakeClock()
    stats = RunStats(total=100, clock=clock, concurrency=lambda: 12)
    stats.processed, stats.success = 40, 40
    clock.now = 4.0
    out = io.StringIO()
    reporter = ProgressReporter(stats=lambda: stats, stream=out, tty=True, clock=clock, width=100)
    reporter.tick(force=True)
    stats.processed = stats.success = 100
    reporter.close()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())  # drop the escape sequences
    last = text.rstrip("\n").splitlines()[-1]
    assert "100/100 100% | 25.0 URLs/s | ok 100.0% | conc 12 | ETA 0:00:00" in last
    assert "━" in last  # rich's bar, filling what the status leaves
    assert len(last) <= 100
    assert text.endswith("\n")
    narrow = io.StringIO()
    ProgressReporter(stats=lambda: stats, stream=narrow, tty=True, clock=clock, width=40).close()
    assert all(len(line) <= 40 for line in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", narrow.getvalue()).splitlines())


def test_plain_lines_every_interval() -> None:
    clock = FakeClock()
    stats = RunStats(total=None, clock=clock)
    out = io.StringIO()
    reporter = ProgressReporter(stats=lambda: stats, stream=out, tty=False, interval=5, clock=clock)
    for t in (1, 4, 5.5, 7, 11):
        clock.now = t
        reporter.tick()
    assert out.getvalue().count("\n") == 2
    assert out.getvalue().startswith("Processed: 0 | Success")


def test_jsonl_tail_counts_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    stats = RunStats()
    tail = JsonlTail(path, stats)
    tail.poll()  # no file yet
    path.write_text('{"error": null}\n{"error": {"type": "X"}}\n{"err')
    tail.poll()
    assert (stats.processed, stats.success, stats.failed) == (2, 1, 1)
    with path.open("a") as handle:
        handle.write('or": null}\n')
    tail.poll()
    assert (stats.processed, stats.success, stats.failed) == (3, 2, 1)


def test_summary_table() -> None:
    table = format_summary({"engine": "async", "processed": 3, "success_rate": 0.5, "errors_by_type": {"X": 1}})
    lines = table.splitlines()
    assert lines[1].startswith("| Summary")
    assert "| Success rate | 50.0% |" in table
    assert "| Error X      |     1 |" in table
    assert len({len(line) for line in lines}) == 1


@pytest.mark.parametrize(
    ("flags", "expected"),
    [((), True), (("--engine", "scrapy"), False), (("--no-async-enrichment",), False), (("--engine", "async"), True)],
)
def test_engine_flag_and_its_older_spelling(flags: tuple[str, ...], expected: bool) -> None:
    from crawler.cli import _check_args

    args = build_parser().parse_args([*flags, "-i", "urls.txt"])
    _check_args(args)
    assert args.async_enrichment is expected


def test_contradicting_engine_flags_are_refused() -> None:
    from crawler.cli import _check_args

    args = build_parser().parse_args(["--engine", "scrapy", "--async-enrichment", "-i", "urls.txt"])
    with pytest.raises(ConfigError, match="--engine scrapy contradicts --async-enrichment"):
        _check_args(args)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--extract-executor", "process"], ("process", "trafilatura")),
        (["--extract-backend", "resiliparse", "--extract-executor", "thread"], ("thread", "resiliparse")),
    ],
)
def test_extraction_flags_reach_the_config(flags: list[str], expected: tuple[str, str]) -> None:
    from crawler.cli import _load_settings

    settings = _load_settings(build_parser().parse_args([*flags, "--env", "development"]))
    assert (settings.enrich.extract.executor, settings.enrich.extract.backend) == expected
