"""Environment files (``config/<env>.yml``) and how they map onto the configs of the three stages.

The YAML shape is the one users of the original pipeline know::

    data_dir: data/development          # every stage's files live under here
    stages:
      discover:   {...}                 # crawler.discover.DiscoverConfig fields, plus output
      prepare:    {...}                 # enrich.prepare.PrepareConfig fields, plus output
      enrichment: {...}                 # flat keys, mapped onto EnrichConfig by ENRICHMENT_KEYS

Layers, last wins: built-in defaults, ``config/<env>.yml``, each ``--config FILE`` (deep-merged), command-line
flags. Every problem is reported with the key as written in the YAML (``stages.enrichment.max_workers``) and
what is allowed, as one :class:`~enrich.errors.ConfigError`, before anything is fetched.

To add an engine knob: add the field to :class:`~enrich.config.EnrichConfig`, then one line to
:data:`ENRICHMENT_KEYS` (a unit test fails until every EnrichConfig field has a YAML key).
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from crawler.discover import DiscoverConfig
from enrich.config import EnrichConfig
from enrich.errors import ConfigError
from enrich.prepare import PrepareConfig

__all__ = [
    "DEFAULT_LAYOUT",
    "ENRICHMENT_KEYS",
    "EnvSettings",
    "build_env_settings",
    "find_env_file",
    "load_env_settings",
    "merge_mappings",
    "read_yaml",
]

ENRICHMENT_KEYS: dict[str, tuple[str, str]] = {
    # fetching
    "max_workers": ("fetch", "max_concurrency"),
    "timeout": ("fetch", "timeout_s"),
    "connect_timeout": ("fetch", "connect_timeout_s"),
    "retries": ("fetch", "retries"),
    "backoff_base": ("fetch", "backoff_base_s"),
    "backoff_cap": ("fetch", "backoff_cap_s"),
    "backoff_jitter": ("fetch", "backoff_jitter"),
    "retry_after_cap": ("fetch", "retry_after_cap_s"),
    "per_host_limit": ("fetch", "per_host_limit"),
    "dns_ttl": ("fetch", "dns_ttl_s"),
    "max_redirects": ("fetch", "max_redirects"),
    "max_response_bytes": ("fetch", "max_response_bytes"),
    "user_agent": ("fetch", "user_agent"),
    "contact": ("fetch", "contact"),
    # per-site congestion control (AIMD)
    "adaptive.enabled": ("aimd", "enabled"),
    "adaptive.initial": ("aimd", "initial"),
    "adaptive.increase_step": ("aimd", "increase_step"),
    "adaptive.interval": ("aimd", "interval_s"),
    "adaptive.decrease_factor": ("aimd", "decrease_factor"),
    # frontier
    "max_pending": ("frontier", "max_pending"),
    "max_pending_mb": ("frontier", "max_pending_mb"),
    "max_site_pending": ("frontier", "max_site_pending"),
    "max_lookahead": ("frontier", "max_lookahead"),
    # politeness
    "respect_robots": ("politeness", "respect_robots"),
    "per_domain_limit": ("politeness", "per_domain_concurrency"),
    "circuit_failures": ("politeness", "circuit_failures"),
    "circuit_cooldown": ("politeness", "circuit_cooldown_s"),
    "allow_private_addresses": ("politeness", "allow_private_addresses"),
    "max_crawl_delay": ("politeness", "max_crawl_delay_s"),
    # extraction
    "extract_backend": ("extract", "backend"),
    "include_tables": ("extract", "include_tables"),
    "include_comments": ("extract", "include_comments"),
    "max_links": ("extract", "max_links"),
    "max_pdf_pages": ("extract", "max_pdf_pages"),
    "extract_workers": ("extract", "workers"),
    "extract_executor": ("extract", "executor"),
    # NLP
    "nlp_enabled": ("nlp", "enabled"),
    "nlp_backend": ("nlp", "backend"),
    "nlp_model": ("nlp", "model"),
    "nlp_device": ("nlp", "device"),
    "nlp_aggregation": ("nlp", "aggregation"),
    "nlp_executor": ("nlp", "executor"),
    "nlp_workers": ("nlp", "workers"),
    "nlp_batch_size": ("nlp", "batch_size"),
    "batch_wait_ms": ("nlp", "batch_wait_ms"),
    "nlp_batch_chars": ("nlp", "batch_chars"),
    "max_text_chars": ("nlp", "max_chars"),
    "summary_sentences": ("nlp", "summary_sentences"),
    "max_keywords": ("nlp", "max_keywords"),
    "max_entities": ("nlp", "max_entities"),
    "entity_labels": ("nlp", "entity_labels"),
    "detect_language": ("nlp", "detect_language"),
    # output
    "output": ("output", "path"),
    "batch_size": ("output", "batch_size"),
    "flush_interval": ("output", "flush_interval_s"),
    "sqlite_path": ("output", "sqlite_path"),
    "postgres_dsn": ("output", "postgres_dsn"),
    "warc_dir": ("warc", "dir"),
    "warc_max_mb": ("warc", "max_mb"),
    # contacts (the optional stage)
    "contacts.enabled": ("contacts", "enabled"),
    "contacts.default_region": ("contacts", "default_region"),
    "contacts.max_site_pages": ("contacts", "max_site_pages"),
    "contacts.max_per_page": ("contacts", "max_per_page"),
    "contacts.max_per_record": ("contacts", "max_per_record"),
    "contacts.max_sites": ("contacts", "max_sites"),
}
"""YAML key under ``stages.enrichment`` (dotted for nested groups) -> (EnrichConfig section, field)."""

_REVERSE_KEYS = {target: key for key, target in ENRICHMENT_KEYS.items()}

DEFAULT_LAYOUT: dict[str, Path] = {
    "discover": Path("stage01/discovered_urls.txt"),
    "prepare": Path("stage02/prepared_urls.txt"),
    "enrichment": Path("processed/stage03/enrichment_output.jsonl"),
}
"""Each stage's output, relative to ``data_dir``; stage N+1 reads stage N's output from here by default."""

_TOP_KEYS = ("data_dir", "stages")
_STAGE_KEYS = ("discover", "prepare", "enrichment")


@dataclass(frozen=True, slots=True)
class EnvSettings:
    """Everything a run needs from its environment: the folder, each stage's config and output file."""

    env: str
    data_dir: Path
    discover: DiscoverConfig
    prepare: PrepareConfig
    enrich: EnrichConfig
    discover_output: Path
    prepare_output: Path
    sources: tuple[str, ...]
    """The files merged, in order, for the run header and the stats file."""

    @property
    def enrich_output(self) -> Path:
        return self.enrich.output.path


def merge_mappings(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into a copy of ``base``: mappings merge, anything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_mappings(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def find_env_file(env: str, search: tuple[Path, ...]) -> Path | None:
    """``<dir>/<env>.yml`` (or ``.yaml``) in the first search folder that has one."""
    for folder in search:
        for suffix in (".yml", ".yaml"):
            candidate = folder / f"{env}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML file holding a mapping (an empty file is an empty mapping)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping (data_dir, stages), not {type(raw).__name__}")
    return raw


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and any(k.startswith(dotted + ".") for k in ENRICHMENT_KEYS):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _describe(exc: ValidationError, prefix: str, keys: dict[tuple[str, str], str] | None = None) -> list[str]:
    """One line per problem, named as the YAML key; ``keys`` maps EnrichConfig locations back to YAML keys."""
    lines = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if keys is not None:
            name = keys.get((loc[0], loc[1])) if len(loc) >= 2 else None
            if name is None:
                # A check across fields (min above max) is reported on its section: name every key it mentions.
                section = loc[0] if loc else ""
                mentioned = sorted(
                    ((msg.index(f), f, k) for (s, f), k in keys.items() if s == section and f in msg), reverse=True
                )
                for _pos, field_name, key in mentioned:
                    msg = msg.replace(field_name, f"{prefix}{key}")
                name = mentioned[-1][2] if mentioned else section
            key = f"{prefix}{name}" + "".join(f"[{p}]" for p in loc[2:])
        else:
            key = prefix + ".".join(loc) if loc else prefix.rstrip(".")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        given = err.get("input")
        shown = "" if err["type"] in {"extra_forbidden", "missing"} or isinstance(given, dict) else f" (got {given!r})"
        lines.append(f"{key}: {msg}{shown}")
    return lines


def _section(raw: dict[str, Any], name: str, problems: list[str]) -> dict[str, Any]:
    value = raw.get(name, {})
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"stages.{name}: must be a mapping of keys, not {type(value).__name__}")
        return {}
    return dict(value)


def _path(value: Any, key: str, problems: list[str]) -> Path | None:
    if isinstance(value, str | Path) and str(value).strip():
        return Path(value)
    problems.append(f"{key}: must be a non-empty path (got {value!r})")
    return None


def build_env_settings(raw: dict[str, Any], *, env: str, sources: tuple[str, ...] = ()) -> EnvSettings:
    """Validate a merged environment mapping and build every stage's config.

    Raises:
        ConfigError: listing every problem found, one per line, each naming its YAML key.
    """
    problems: list[str] = []
    for key in raw:
        if key not in _TOP_KEYS:
            problems.append(f"{key}: unknown key (allowed at the top level: {', '.join(_TOP_KEYS)})")
    data_dir = _path(raw.get("data_dir", f"data/{env}"), "data_dir", problems) or Path(f"data/{env}")
    stages = raw.get("stages") or {}
    if not isinstance(stages, dict):
        problems.append(f"stages: must be a mapping with {', '.join(_STAGE_KEYS)}, not {type(stages).__name__}")
        stages = {}
    for key in stages:
        if key not in _STAGE_KEYS:
            problems.append(f"stages.{key}: unknown stage (allowed: {', '.join(_STAGE_KEYS)})")

    outputs: dict[str, Path] = {}
    sections = {name: _section(stages, name, problems) for name in _STAGE_KEYS}
    for name in _STAGE_KEYS:
        value = sections[name].pop("output", None)
        path = DEFAULT_LAYOUT[name] if value is None else _path(value, f"stages.{name}.output", problems)
        if name == "enrichment" and str(path) == "-":
            outputs[name] = Path("-")  # standard output, not a file named '-' in the data folder
            continue
        outputs[name] = data_dir / (path or DEFAULT_LAYOUT[name])  # an absolute path stays as it is

    discover = DiscoverConfig()
    try:
        discover = DiscoverConfig.model_validate(sections["discover"])
    except ValidationError as exc:
        problems += _describe(exc, "stages.discover.")
    prepare = PrepareConfig()
    try:
        prepare = PrepareConfig.model_validate(sections["prepare"])
    except ValidationError as exc:
        problems += _describe(exc, "stages.prepare.")

    mapped: dict[str, dict[str, Any]] = {"output": {"path": outputs["enrichment"]}}
    for key, value in _flatten(sections["enrichment"]).items():
        if key not in ENRICHMENT_KEYS:
            close = difflib.get_close_matches(key, ENRICHMENT_KEYS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(
                f"stages.enrichment.{key}: unknown key ({hint}allowed: {', '.join(sorted(ENRICHMENT_KEYS))})"
            )
            continue
        section, field_name = ENRICHMENT_KEYS[key]
        if key in {"sqlite_path", "warc_dir"} and isinstance(value, str) and value.strip():
            value = data_dir / value  # an absolute path stays as it is
        mapped.setdefault(section, {})[field_name] = value
    enrich = EnrichConfig()
    try:
        enrich = EnrichConfig.model_validate(mapped)
    except ValidationError as exc:
        problems += _describe(exc, "stages.enrichment.", _REVERSE_KEYS)

    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return EnvSettings(
        env=env,
        data_dir=data_dir,
        discover=discover,
        prepare=prepare,
        enrich=enrich,
        discover_output=outputs["discover"],
        prepare_output=outputs["prepare"],
        sources=sources,
    )


def _check_shape(raw: dict[str, Any], sources: list[str]) -> None:
    """Sections that must be mappings are mappings in each file, before a merge could hide a mistake."""
    where = f" in {sources[-1]}" if sources else ""
    stages = raw.get("stages")
    if stages is None:
        return
    if not isinstance(stages, dict):
        raise ConfigError(
            f"invalid configuration{where}:\n  stages: must be a mapping with {', '.join(_STAGE_KEYS)}, "
            f"not {type(stages).__name__}"
        )
    for name, section in stages.items():
        if section is not None and not isinstance(section, dict):
            raise ConfigError(
                f"invalid configuration{where}:\n  stages.{name}: must be a mapping of keys, "
                f"not {type(section).__name__}"
            )


def load_env_settings(
    env: str,
    *,
    config_files: tuple[Path, ...] = (),
    overrides: dict[str, Any] | None = None,
    search: tuple[Path, ...] = (),
) -> EnvSettings:
    """Read ``<env>.yml`` from the first folder of ``search`` holding one, merge ``config_files`` and
    ``overrides`` (a mapping of the same shape, from command-line flags) over it, validate.

    An environment without a file is allowed only when ``--config`` files are given or the environment is
    ``development`` (built-in defaults); otherwise a typo in ``--env`` would silently run with defaults.

    Raises:
        ConfigError: a file is missing, unreadable or invalid.
    """
    raw: dict[str, Any] = {}
    sources: list[str] = []
    env_file = find_env_file(env, search)
    if env_file is not None:
        raw = read_yaml(env_file)
        sources.append(str(env_file))
    elif not config_files and env != "development":
        looked = ", ".join(str(folder / f"{env}.yml") for folder in search)
        raise ConfigError(f"no configuration for environment {env!r} (looked for {looked}); use --config FILE")
    _check_shape(raw, sources)
    for path in config_files:
        layer = read_yaml(path)
        _check_shape(layer, [str(path)])
        raw = merge_mappings(raw, layer)
        sources.append(str(path))
    if overrides:
        raw = merge_mappings(raw, overrides)
        sources.append("command line")
    return build_env_settings(raw, env=env, sources=tuple(sources))
