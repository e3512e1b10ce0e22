"""Stage 2, prepare: turn a raw URL list into a clean one, and say what was dropped and why.

Each URL is normalized (:func:`enrich.urls.normalize_url`, w3lib's ``canonicalize_url``: scheme and host case,
IDN hosts, default port, fragment, escapes, query order, tracking parameters), then filtered by scheme, domain
(allow and deny lists) and path extension, then de-duplicated on its normalized form. Every input entry ends up
either kept or counted under one :class:`DropReason`.

Engine-agnostic: no I/O besides what the caller iterates; the command line reads and writes the files.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from enrich.config import config_error_message
from enrich.errors import ConfigError, InvalidURLError
from enrich.urls import SUPPORTED_SCHEMES, normalize_url

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = ["DEFAULT_SKIP_EXTENSIONS", "DropReason", "PrepareConfig", "PrepareReport", "URLPreparer"]

DEFAULT_SKIP_EXTENSIONS: tuple[str, ...] = (
    ".css",
    ".js",
    ".mjs",
    ".json",
    ".xml",
    ".rss",
    ".atom",
    ".ico",
    ".svg",
    ".woff",
    ".woff2",
    ".ttf",
    ".eot",
    ".otf",
    ".zip",
    ".gz",
    ".tgz",
    ".bz2",
    ".xz",
    ".7z",
    ".rar",
    ".tar",
    ".exe",
    ".msi",
    ".dmg",
    ".iso",
    ".apk",
    ".bin",
    ".mp3",
    ".mp4",
    ".avi",
    ".mov",
    ".mkv",
    ".webm",
    ".wav",
    ".flac",
    ".ogg",
)
"""Assets and archives with no text worth enriching. Documents (``.pdf``) and images (``.png``, ``.jpg``: the
media extractor reads their metadata) are kept on purpose."""


class DropReason(StrEnum):
    """Why an input entry is not in the prepared list."""

    INVALID = "invalid"
    """Not a fetchable URL (no host, bad port, whitespace...)."""
    SCHEME = "scheme"
    """A scheme outside ``schemes``."""
    DOMAIN_NOT_ALLOWED = "domain_not_allowed"
    """``allow_domains`` is set and the host is not one of them (nor a subdomain)."""
    DOMAIN_DENIED = "domain_denied"
    """The host is in ``deny_domains`` (or a subdomain of one)."""
    EXTENSION = "extension"
    """The path ends with a skipped extension."""
    DUPLICATE = "duplicate"
    """Same normalized URL as an earlier entry."""


def _domain(value: str) -> str:
    """A domain as normalized hosts are written: lower case, IDN in its IDNA (``xn--``) form."""
    domain = value.strip().lower().lstrip("*").lstrip(".").rstrip(".")
    try:
        return domain.encode("idna").decode("ascii") if domain else domain
    except UnicodeError as exc:
        raise ValueError(f"invalid domain {value!r}: {exc}") from exc


def _extension(value: str) -> str:
    value = value.strip().lower()
    return value if value.startswith(".") else f".{value}"


class PrepareConfig(BaseModel):
    """Filters of the prepare stage. Frozen and validated like :class:`~enrich.config.EnrichConfig`."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    schemes: tuple[str, ...] = Field(SUPPORTED_SCHEMES, min_length=1, description="Schemes kept (http, https).")
    allow_domains: tuple[str, ...] = Field((), description="Keep only these hosts and their subdomains; empty: all.")
    deny_domains: tuple[str, ...] = Field((), description="Drop these hosts and their subdomains.")
    skip_extensions: tuple[str, ...] = Field(DEFAULT_SKIP_EXTENSIONS, description="Path endings dropped.")
    allow_extensions: tuple[str, ...] = Field((), description="Path endings kept even if in skip_extensions.")
    strip_tracking: bool = Field(True, description="Remove utm_* and other tracking parameters.")

    @field_validator("schemes")
    @classmethod
    def _check_schemes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        schemes = tuple(s.strip().lower() for s in value)
        unknown = [s for s in schemes if s not in SUPPORTED_SCHEMES]
        if unknown:
            raise ValueError(f"unsupported scheme(s) {', '.join(unknown)}; allowed: {', '.join(SUPPORTED_SCHEMES)}")
        return schemes

    @field_validator("allow_domains", "deny_domains")
    @classmethod
    def _clean_domains(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        domains = tuple(_domain(d) for d in value)
        if any(not d for d in domains):
            raise ValueError("a domain must not be empty")
        return domains

    @field_validator("skip_extensions", "allow_extensions")
    @classmethod
    def _clean_extensions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        extensions = tuple(_extension(e) for e in value)
        if any(e == "." for e in extensions):
            raise ValueError("an extension must not be empty")
        return extensions

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> PrepareConfig:
        """Build and validate from plain data, raising :class:`ConfigError` with one line per problem."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(config_error_message(exc)) from exc


def _matches(host: str, domains: tuple[str, ...]) -> bool:
    return any(host == d or host.endswith("." + d) for d in domains)


@dataclass
class PrepareReport:
    """What the prepare stage kept and dropped, by reason, with the first few dropped entries as examples."""

    read: int = 0
    kept: int = 0
    dropped: Counter[DropReason] = field(default_factory=Counter)
    examples: dict[DropReason, list[str]] = field(default_factory=dict)
    max_examples: int = 3
    """Dropped entries kept per reason, so a surprising count can be checked by eye."""

    def drop(self, reason: DropReason, url: str) -> None:
        self.dropped[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < self.max_examples:
            shown.append(url)

    def to_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "kept": self.kept,
            "dropped": sum(self.dropped.values()),
            "dropped_by_reason": {str(k): v for k, v in self.dropped.most_common()},
            "examples": {str(k): v for k, v in self.examples.items()},
        }

    def summary(self) -> str:
        lines = [f"Read:    {self.read}", f"Kept:    {self.kept}", f"Dropped: {sum(self.dropped.values())}"]
        lines += [f"  {reason}: {count}" for reason, count in self.dropped.most_common()]
        return "\n".join(lines)


class URLPreparer:
    """Normalizes, filters and de-duplicates URLs; keeps a :class:`PrepareReport`.

    De-duplication keeps a 16-byte digest per kept URL rather than the URL itself, so a list of millions of URLs
    costs tens of megabytes, not gigabytes.

    Args:
        config: the filters.
    """

    def __init__(self, *, config: PrepareConfig) -> None:
        self._config = config
        self._seen: set[bytes] = set()
        self.report = PrepareReport()

    def check(self, raw: str) -> str | DropReason:
        """The normalized URL if it is kept, else why it is dropped. Counts it in :attr:`report`."""
        self.report.read += 1
        outcome = self._decide(raw.strip())
        if isinstance(outcome, DropReason):
            self.report.drop(outcome, raw.strip())
        else:
            self.report.kept += 1
        return outcome

    def _decide(self, raw: str) -> str | DropReason:
        cfg = self._config
        try:
            scheme = urlsplit(raw).scheme.lower()
        except ValueError:
            return DropReason.INVALID
        if scheme and scheme not in cfg.schemes:
            return DropReason.SCHEME
        try:
            url = normalize_url(raw, strip_tracking=cfg.strip_tracking)
        except InvalidURLError:
            return DropReason.INVALID
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if cfg.allow_domains and not _matches(host, cfg.allow_domains):
            return DropReason.DOMAIN_NOT_ALLOWED
        if cfg.deny_domains and _matches(host, cfg.deny_domains):
            return DropReason.DOMAIN_DENIED
        name = parts.path.rsplit("/", 1)[-1].lower()
        if name.endswith(cfg.skip_extensions) and not name.endswith(cfg.allow_extensions or ("\0",)):
            return DropReason.EXTENSION
        digest = hashlib.blake2b(url.encode("utf-8"), digest_size=16).digest()
        if digest in self._seen:
            return DropReason.DUPLICATE
        self._seen.add(digest)
        return url

    def prepare(self, lines: Iterable[tuple[int, str]]) -> Iterator[str]:
        """Yield the kept URLs of ``(line number, raw value)`` entries (see :func:`enrich.urls.iter_input_lines`)."""
        for _number, raw in lines:
            outcome = self.check(raw)
            if not isinstance(outcome, DropReason):
                yield outcome
