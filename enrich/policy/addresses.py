"""Which IP addresses a crawl may connect to: refusing private, loopback and other non-public targets.

A URL from an untrusted list (or a redirect from an untrusted server) can point at the crawler's own network:
``http://localhost:6379/``, ``http://169.254.169.254/latest/meta-data/`` (cloud metadata), ``http://10.0.0.1/``.
With ``politeness.allow_private_addresses`` set to ``False``, engines refuse such targets **after DNS
resolution**, on the addresses they are about to connect to, so that a public-looking name resolving to a private
address (or a redirect to one) is caught too.

Pure logic: no sockets, no DNS. Engines call :meth:`AddressPolicy.check_addresses` from their resolver (every
connection, including each redirect hop, resolves through it) and :meth:`AddressPolicy.check_host` for hosts that
are IP literals (which transports connect to without asking the resolver).

IPv6 addresses that embed an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, 6to4
``2002::/16``, NAT64 ``64:ff9b::/96``) are judged by the IPv4 address they lead to.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING

from enrich.errors import BlockedAddressError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from enrich.config import PolitenessConfig

__all__ = [
    "AddressPolicy",
    "BlockedAddressError",
    "IPAddress",
    "address_kind",
    "is_public_address",
    "refusal_message",
]

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
"""An address as the :mod:`ipaddress` module parses it."""

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _parse(ip: str | IPAddress) -> IPAddress:
    if isinstance(ip, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return ip
    text = ip.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return ipaddress.ip_address(text)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    packed = int(ip)
    # IPv4-compatible (::a.b.c.d, deprecated): upper 96 bits zero; :: and ::1 are handled as themselves.
    if packed >> 32 == 0 and packed > 1:
        return ipaddress.IPv4Address(packed)
    return None


def address_kind(ip: str | IPAddress) -> str | None:
    """Why an address is not public, as a short phrase, or ``None`` when it is a public unicast address.

    The phrases: ``unspecified``, ``loopback``, ``link-local``, ``multicast``, ``reserved``, ``private``,
    ``site-local``, ``shared (carrier-grade NAT)``, ``not globally routable``.

    Args:
        ip: an address object or its text (IPv6 may carry brackets or a ``%zone``).

    Raises:
        ValueError: ``ip`` is not an IP address.
    """
    addr = _parse(ip)
    if isinstance(addr, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(addr)
        if embedded is not None:
            return address_kind(embedded)
        if addr.is_site_local:
            return "site-local"
    checks = (
        ("unspecified", addr.is_unspecified),
        ("loopback", addr.is_loopback),
        ("link-local", addr.is_link_local),
        ("multicast", addr.is_multicast),
        ("reserved", addr.is_reserved),
        ("private", addr.is_private),
    )
    for kind, matched in checks:
        if matched:
            return kind
    if isinstance(addr, ipaddress.IPv4Address) and addr in ipaddress.IPv4Network("100.64.0.0/10"):
        return "shared (carrier-grade NAT)"
    if not addr.is_global:
        return "not globally routable"
    return None


def is_public_address(ip: str | IPAddress) -> bool:
    """Whether a crawl may connect to ``ip``: a globally routable unicast address.

    Raises:
        ValueError: ``ip`` is not an IP address.
    """
    return address_kind(ip) is None


def refusal_message(host: str, ip: str | IPAddress) -> str:
    """The message of a refused target, e.g.
    ``refused to connect to localhost: it resolves to 127.0.0.1, a loopback address
    (set politeness.allow_private_addresses to allow)``.

    For an IP-literal host the middle part reads ``127.0.0.1 is a loopback address``.
    """
    addr = _parse(ip)
    kind = address_kind(addr) or "public"
    host_text = host.strip("[]")
    if host_text == str(addr):
        target = f"{addr} is a {kind} address"
    else:
        target = f"it resolves to {addr}, a {kind} address"
    return f"refused to connect to {host_text}: {target} (set politeness.allow_private_addresses to allow)"


class AddressPolicy:
    """Refuses non-public targets unless private addresses are allowed; counts refusals.

    Args:
        allow_private: ``True`` allows every address (the default config, convenient for local sites);
            ``False`` refuses anything :func:`is_public_address` rejects.
    """

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private
        self.checked = 0
        self.refused = 0
        self.refused_by_kind: dict[str, int] = {}

    @classmethod
    def from_config(cls, politeness: PolitenessConfig) -> AddressPolicy:
        return cls(allow_private=politeness.allow_private_addresses)

    def check_addresses(self, host: str, addresses: Iterable[str | IPAddress]) -> str | None:
        """After DNS resolution: a refusal message if **any** resolved address is not public, else ``None``.

        Refusing on any (not only the first) address closes the trick of a name resolving to one public and one
        private address and the transport picking the private one.

        Args:
            host: the host name as in the URL (for the message).
            addresses: the addresses the resolver returned.

        Raises:
            ValueError: an address is not an IP address.
        """
        self.checked += 1
        if self.allow_private:
            return None
        for ip in addresses:
            kind = address_kind(ip)
            if kind is not None:
                return self._refuse(host, ip, kind)
        return None

    def check_host(self, host: str) -> str | None:
        """Before connecting: a refusal message if ``host`` is an IP literal that is not public, else ``None``.

        Host names return ``None``: they are judged after resolution by :meth:`check_addresses`.
        """
        try:
            addr = _parse(host)
        except ValueError:
            return None
        return self.check_addresses(host, [addr])

    def _refuse(self, host: str, ip: str | IPAddress, kind: str) -> str:
        self.refused += 1
        self.refused_by_kind[kind] = self.refused_by_kind.get(kind, 0) + 1
        message = refusal_message(host, ip)
        logger.info("address refused: %s", message, extra={"host": host, "address": str(ip)})
        return message

    def stats(self) -> dict[str, object]:
        """Counts for the run summary."""
        return {
            "allow_private": self.allow_private,
            "checked": self.checked,
            "refused": self.refused,
            "refused_by_kind": dict(self.refused_by_kind),
        }
