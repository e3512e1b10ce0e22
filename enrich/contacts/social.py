"""Social profile links: which link is a profile of someone (not a share button, a post or the network's home)."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

__all__ = ["NETWORKS", "social_profile"]

NETWORKS: dict[str, str] = {
    "twitter.com": "x",
    "x.com": "x",
    "facebook.com": "facebook",
    "fb.com": "facebook",
    "linkedin.com": "linkedin",
    "instagram.com": "instagram",
    "youtube.com": "youtube",
    "github.com": "github",
    "gitlab.com": "gitlab",
    "tiktok.com": "tiktok",
    "pinterest.com": "pinterest",
    "xing.com": "xing",
    "threads.net": "threads",
    "bsky.app": "bluesky",
    "mastodon.social": "mastodon",
    "vimeo.com": "vimeo",
    "medium.com": "medium",
}
"""Host (without ``www.``, ``m.`` and country prefixes) to the network's name."""

_CANONICAL_HOSTS = {"x": "x.com", "facebook": "facebook.com"}
"""Networks known under several hosts: the one their profile URLs are written with."""

_NOT_PROFILES = frozenset(
    {
        "share",
        "sharer",
        "sharer.php",
        "sharearticle",
        "intent",
        "home",
        "search",
        "hashtag",
        "login",
        "signup",
        "dialog",
        "plugins",
        "policies",
        "privacy",
        "legal",
        "help",
        "about",
        "explore",
        "watch",
        "embed",
        "p",
        "reel",
        "reels",
        "i",
        "tr",
        "settings",
        "features",
        "pricing",
        "events",
        "groups",
        "pages",
        "pin",
        "status",
        "feed",
        "tos",
        "terms",
        "results",
        "playlist",
        "shorts",
        "photo.php",
        "permalink.php",
        "story.php",
        "profile.php",
    }
)
"""First path segments that are the network's own pages, a share button or a post, not a profile."""

_TWO_SEGMENTS = {
    "linkedin": frozenset({"in", "company", "school", "showcase"}),
    "youtube": frozenset({"channel", "c", "user"}),
    "xing": frozenset({"profile", "pages", "companies"}),
}
"""Networks whose profiles live one level down (``linkedin.com/in/NAME``); only these first segments qualify."""


def _network(host: str) -> tuple[str, str] | None:
    host = host.lower().rstrip(".")
    labels = host.split(".")
    for start in range(len(labels) - 1):  # www.linkedin.com, de.linkedin.com, m.facebook.com
        candidate = ".".join(labels[start:])
        if candidate in NETWORKS:
            return NETWORKS[candidate], candidate
    return None


def social_profile(url: str) -> tuple[str, str] | None:
    """``(network, profile URL)`` when ``url`` links to a profile on a known network, else ``None``.

    The profile URL is normalized (https, the network's bare host, no query or fragment, no trailing slash), so
    the same profile linked from many pages is one contact.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return None
    found = _network(parts.hostname)
    if found is None:
        return None
    network, host = found
    segments = [s for s in unquote(parts.path).split("/") if s]
    if not segments or segments[0].lower() in _NOT_PROFILES or len(segments[0]) > 100:
        return None
    if network in _TWO_SEGMENTS and not segments[0].startswith("@"):
        if segments[0].lower() not in _TWO_SEGMENTS[network] or len(segments) < 2:
            return None
        segments = segments[:2]
    elif len(segments) > 1 or (network == "mastodon" and not segments[0].startswith("@")):
        return None  # github.com/org/repo, twitter.com/name/status/1: a repository or a post, not a profile
    if network == "youtube" and len(segments) == 1 and not segments[0].startswith("@"):
        return None  # youtube.com/NAME is a legacy vanity URL or a page of YouTube's own
    if network == "facebook" and segments[0].lower().endswith(".php"):
        return None
    return network, f"https://{_CANONICAL_HOSTS.get(network, host)}/" + "/".join(segments)
