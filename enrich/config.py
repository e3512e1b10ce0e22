"""One typed, validated configuration shared by both engines.

Every knob of a run lives here, grouped by concern. Values are frozen and validated on creation: an unknown key,
a wrong type or an impossible value raises :class:`~enrich.errors.ConfigError` naming the key and what is allowed,
before any fetch starts. The YAML files under ``config/`` and the command line both end up in :class:`EnrichConfig`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import phonenumbers
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from enrich.errors import ConfigError

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_TRANSFORMERS_MODEL",
    "AIMDConfig",
    "ContactsConfig",
    "EnrichConfig",
    "ExtractConfig",
    "FetchConfig",
    "FrontierConfig",
    "NLPConfig",
    "OutputConfig",
    "PolitenessConfig",
    "WarcConfig",
    "config_error_message",
    "load_config",
    "nlp_options",
]

DEFAULT_MODEL = "en_core_web_sm"
"""The official spaCy English model; :mod:`enrich.nlp` falls back to its re-upload when it is not installed."""

DEFAULT_TRANSFORMERS_MODEL = "dslim/bert-base-NER"
"""The model of ``nlp.backend: transformers`` while ``nlp.model`` is left at :data:`DEFAULT_MODEL` (the shipped
configs name it): BERT-base fine-tuned on CoNLL-2003 English (PER, ORG, LOC, MISC; 108 M parameters, 430 MB),
the most used English NER model on the Hugging Face hub. Any other ``nlp.model`` is taken as it is."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class FetchConfig(_Frozen):
    """How pages are fetched. Both engines map these onto their own transport settings."""

    max_concurrency: int = Field(50, ge=1, le=10_000, description="Upper bound of requests in flight.")
    per_host_limit: int = Field(16, ge=0, description="Connections per host; 0 means no per-host limit.")
    dns_ttl_s: float = Field(300.0, ge=0, description="How long resolved addresses are cached.")
    timeout_s: float = Field(30.0, gt=0, description="Total time allowed for one attempt, body included.")
    connect_timeout_s: float = Field(10.0, gt=0, description="Time allowed to open a connection.")
    max_redirects: int = Field(10, ge=0, le=100)
    max_response_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Bodies past this are cut and flagged.")
    retries: int = Field(2, ge=0, le=20, description="Retries after the first attempt (2 means 3 attempts).")
    backoff_base_s: float = Field(1.0, ge=0, description="First retry delay; doubles on each retry.")
    backoff_cap_s: float = Field(30.0, ge=0, description="Largest retry delay.")
    backoff_jitter: float = Field(0.1, ge=0, le=1, description="Random extra delay, as a fraction of the delay.")
    retry_after_cap_s: float = Field(60.0, ge=0, description="Largest Retry-After honoured.")
    user_agent: str = Field("webenrich/0.1 (+https://github.com/webenrich/webenrich)", min_length=1)
    contact: str | None = Field(None, description="Contact (mail or URL) added to the User-Agent.")

    @model_validator(mode="after")
    def _check_bounds(self) -> FetchConfig:
        if self.backoff_base_s > self.backoff_cap_s:
            raise ValueError(
                f"backoff_base_s ({self.backoff_base_s}) must not exceed backoff_cap_s ({self.backoff_cap_s})"
            )
        return self

    @property
    def full_user_agent(self) -> str:
        return f"{self.user_agent} contact: {self.contact}" if self.contact else self.user_agent


class AIMDConfig(_Frozen):
    """Per-site congestion control: each site's in-flight cap grows additively while it answers well and shrinks
    multiplicatively on congestion signals only (429, 503, timeouts, rising latency; never on dead links)."""

    enabled: bool = Field(True, description="False pins every site's cap at politeness.per_domain_concurrency.")
    initial: int | None = Field(None, ge=1, description="A new site's starting cap; default per_domain_concurrency.")
    increase_step: int = Field(1, ge=1, description="Cap added per cap's worth of successful answers.")
    interval_s: float = Field(1.0, gt=0, description="Shortest time between two decreases of one site's cap.")
    decrease_factor: float = Field(0.5, gt=0, lt=1, description="Cap multiplier on a congestion signal.")


class FrontierConfig(_Frozen):
    """The frontier: how far ahead of the fetches the input is read (per-site queues in memory)."""

    max_pending: int = Field(50_000, ge=1, description="Queued URLs before reading the input pauses.")
    max_pending_mb: int = Field(64, ge=1, description="Megabytes of queued URLs before reading the input pauses.")
    max_site_pending: int = Field(
        1000,
        ge=2,
        description="URLs of one site queued in memory; while every site waits, its further URLs are read ahead "
        "into a temporary file instead, so other sites are found.",
    )
    max_lookahead: int = Field(
        1_000_000,
        ge=1,
        description="URLs read ahead in a row, while every site waits, without finding a new site, before the "
        "search gives up (a one-site list would otherwise be read to its end into the temporary file).",
    )


class PolitenessConfig(_Frozen):
    """Being a good citizen of the web, and protecting the crawl from bad hosts."""

    respect_robots: bool = True
    per_domain_concurrency: int = Field(8, ge=1, description="Requests in flight per domain.")
    circuit_failures: int = Field(5, ge=1, description="Consecutive failures that open a domain's circuit.")
    circuit_cooldown_s: float = Field(30.0, ge=0, description="Time before an open circuit lets one request through.")
    allow_private_addresses: bool = Field(True, description="False refuses private/loopback/link-local targets.")
    max_crawl_delay_s: float = Field(10.0, ge=0, description="Largest robots.txt Crawl-delay honoured.")


class ExtractConfig(_Frozen):
    """Extraction of text and metadata from fetched documents."""

    backend: Literal["trafilatura", "resiliparse"] = Field(
        "trafilatura",
        description="HTML main-text extractor: trafilatura (more precise) or resiliparse (several times faster; the "
        "'fast' extra). docs/benchmarks.md compares them.",
    )
    include_tables: bool = True
    include_comments: bool = False
    max_links: int = Field(1000, ge=0, description="Outgoing links kept per page.")
    max_pdf_pages: int = Field(500, ge=1, description="PDF pages read; the rest are skipped and flagged.")
    workers: int = Field(
        1, ge=1, le=64, description="Extraction threads (processes with executor process and NLP not in processes)."
    )
    executor: Literal["thread", "process"] = Field(
        "thread",
        description="Where extraction runs: threads of the engine's process, or worker processes: the NLP stage's own "
        "when nlp.executor is process (one pool for both steps, so the engine's process only fetches and writes), "
        "else a pool of its own.",
    )


class NLPConfig(_Frozen):
    """The NLP stage: entities (spaCy or a transformers model), keywords, extractive summary, language."""

    enabled: bool = True
    backend: Literal["spacy", "transformers"] = Field(
        "spacy",
        description="Where entities come from: a spaCy model, or a Hugging Face token-classification model "
        "(pip install webenrich[transformers]).",
    )
    model: str = Field(
        DEFAULT_MODEL,
        min_length=1,
        description="spaCy: package name or path. transformers: Hugging Face hub id or local folder; the spaCy "
        f"default ({DEFAULT_MODEL}) stands for {DEFAULT_TRANSFORMERS_MODEL} there.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="transformers backend: CUDA when torch sees a GPU (auto), else CPU; cuda insists."
    )
    aggregation: Literal["simple", "first", "average", "max"] = Field(
        "first",
        description="transformers backend: how word pieces are grouped into entities (the pipeline's "
        "aggregation_strategy); first labels a word by its first piece, so a word is never split.",
    )
    executor: Literal["thread", "process"] = "thread"
    workers: int = Field(1, ge=1, le=64, description="Worker threads or processes, each with its own model.")
    batch_size: int = Field(16, ge=1, le=10_000, description="Texts per nlp.pipe call.")
    batch_wait_ms: float = Field(20.0, ge=0, description="How long a partial batch waits for more texts.")
    batch_chars: int = Field(
        200_000,
        ge=1_000,
        description="Characters per batch: a batch's memory grows with its text (unbounded, 16 long pages took a "
        "worker to 870 MB); a longer text still goes alone.",
    )
    max_chars: int = Field(100_000, ge=100, description="Characters of a text sent to the model.")
    summary_sentences: int = Field(3, ge=0, le=50)
    max_keywords: int = Field(10, ge=0, le=200)
    max_entities: int = Field(50, ge=0, le=10_000)
    entity_labels: tuple[str, ...] | None = Field(None, description="Keep only these labels; None keeps all.")
    detect_language: bool = Field(True, description="Detect the language when the page does not declare it.")

    @model_validator(mode="before")
    @classmethod
    def _use_transformers(cls, data: Any) -> Any:
        return nlp_options(data) if isinstance(data, dict) else data

    @property
    def model_name(self) -> str:
        """The model the backend loads: ``model``, except the spaCy default under the transformers backend,
        which stands for :data:`DEFAULT_TRANSFORMERS_MODEL`."""
        if self.backend == "transformers" and self.model == DEFAULT_MODEL:
            return DEFAULT_TRANSFORMERS_MODEL
        return self.model


def nlp_options(values: dict[str, Any]) -> dict[str, Any]:
    """NLP settings as given to the programmatic API, with ``use_transformers: true`` (its spelling in the system
    this project implements) turned into ``backend: transformers`` (``false``: ``spacy``); ``model`` in the same
    mapping names the model.

    Raises:
        ValueError: ``use_transformers`` is not a boolean, or contradicts ``backend`` in the same mapping.
    """
    if "use_transformers" not in values:
        return values
    data = dict(values)
    flag = data.pop("use_transformers")
    if not isinstance(flag, bool):
        raise ValueError(f"nlp.use_transformers must be true or false (got {flag!r}), or set nlp.backend instead")
    wanted = "transformers" if flag else "spacy"
    if data.get("backend", wanted) != wanted:
        raise ValueError(f"nlp.use_transformers={flag} contradicts nlp.backend={data['backend']!r}: set only one")
    data["backend"] = wanted
    return data


class ContactsConfig(_Frozen):
    """The optional contacts stage: emails, phone numbers and social profiles of each page and of its site's
    contact, about and team pages (:mod:`enrich.contacts`)."""

    enabled: bool = Field(False, description="Run the contacts stage (--contacts).")
    default_region: str = Field(
        "US", description="Region (ISO 3166-1 alpha-2) of phone numbers written without a country code."
    )
    max_site_pages: int = Field(
        4, ge=0, le=50, description="Contact/about/team pages fetched per site (once per run, then cached)."
    )
    max_per_page: int = Field(50, ge=1, le=10_000, description="Contacts kept per page.")
    max_per_record: int = Field(100, ge=1, le=10_000, description="Contacts kept per record (page and site).")
    max_sites: int = Field(10_000, ge=1, description="Sites whose contacts are kept in memory (least recent go).")

    @field_validator("default_region")
    @classmethod
    def _check_region(cls, value: str) -> str:
        region = value.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {value!r}; use a two-letter country code such as US, GB, DE")
        return region


class OutputConfig(_Frozen):
    """Where and how records are written."""

    path: Path = Path("data/processed/stage03/enrichment_output.jsonl")
    batch_size: int = Field(100, ge=1, le=100_000, description="Records per flush.")
    flush_interval_s: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="A partial batch is written once its first record has waited this long (a slow crawl loses "
        "little on a crash, and a distributed worker acknowledges its URLs).",
    )
    sqlite_path: Path | None = Field(None, description="Also write records to this SQLite database.")
    postgres_dsn: str | None = Field(
        None, min_length=1, description="Also upsert records into PostgreSQL (a libpq DSN or postgresql:// URI)."
    )


class WarcConfig(_Frozen):
    """WARC output: every HTTP exchange (robots.txt and redirect hops included) archived as it went over the wire."""

    dir: Path | None = Field(None, description="Write WARC files (webenrich-*.warc.gz) here; None turns WARC off.")
    max_mb: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="A WARC file is closed and the next one started once it holds this many megabytes (MiB).",
    )

    @field_validator("dir", mode="before")
    @classmethod
    def _check_dir(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must be a folder, or null to turn WARC output off")
        return value

    @property
    def enabled(self) -> bool:
        return self.dir is not None


class EnrichConfig(_Frozen):
    """The whole configuration of an enrichment run."""

    fetch: FetchConfig = FetchConfig()
    aimd: AIMDConfig = AIMDConfig()
    frontier: FrontierConfig = FrontierConfig()
    politeness: PolitenessConfig = PolitenessConfig()
    extract: ExtractConfig = ExtractConfig()
    nlp: NLPConfig = NLPConfig()
    output: OutputConfig = OutputConfig()
    warc: WarcConfig = WarcConfig()
    contacts: ContactsConfig = ContactsConfig()

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> EnrichConfig:
        """Build and validate a config from plain data, raising :class:`ConfigError` with readable messages."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(config_error_message(exc)) from exc

    def replace(self, **sections: dict[str, Any]) -> EnrichConfig:
        """Return a copy with some fields of some sections changed, validated again.

        Example: ``config.replace(fetch={"timeout_s": 5}, nlp={"enabled": False})``.
        """
        data = self.model_dump()
        for section, values in sections.items():
            if section not in data:
                raise ConfigError(f"unknown config section {section!r}; allowed: {', '.join(data)}")
            data[section] = {**data[section], **values}
        return EnrichConfig.from_mapping(data)


def config_error_message(exc: ValidationError) -> str:
    """One line per problem: dotted key, what is wrong, what was given."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see config/development.yml for every key)"
        given = err.get("input")
        shown = "" if err["type"] in {"extra_forbidden", "missing"} or isinstance(given, dict) else f" (got {given!r})"
        lines.append(f"{key}: {msg}{shown}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_config(path: Path) -> EnrichConfig:
    """Load a YAML file holding an ``EnrichConfig`` mapping (sections fetch, aimd, nlp, ...)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(raw).__name__}")
    return EnrichConfig.from_mapping(raw)
