"""An aiohttp resolver that refuses non-public addresses after DNS resolution.

aiohttp resolves every connection it opens (each redirect hop included) through the connector's resolver, so
wrapping the default one is the single place where a name resolving to ``127.0.0.1``, ``10.x`` or
``169.254.169.254`` can be caught before any socket is opened. The decision is
:meth:`enrich.policy.AddressPolicy.check_addresses`; a refusal leaves as
:class:`~enrich.errors.BlockedAddressError`, which aiohttp lets through untouched (it only wraps ``OSError``).

IP-literal hosts never reach a resolver (aiohttp connects to them directly): the fetcher checks those with
:meth:`~enrich.policy.AddressPolicy.check_host` before each request and redirect hop.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver

from enrich.errors import BlockedAddressError
from enrich.policy.addresses import address_kind

if TYPE_CHECKING:
    from aiohttp.abc import ResolveResult

    from enrich.policy.addresses import AddressPolicy

__all__ = ["AddressCheckingResolver"]


class AddressCheckingResolver(AbstractResolver):
    """Resolves with ``resolver`` (aiohttp's default one when ``None``), then lets ``policy`` judge the addresses.

    Build it inside the running loop (the default resolver binds to it).

    Args:
        policy: refuses non-public addresses unless it allows private ones.
        resolver: the resolver doing the lookups.

    Raises:
        BlockedAddressError: from :meth:`resolve`, when any resolved address is refused.
    """

    def __init__(self, *, policy: AddressPolicy, resolver: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._resolver = resolver if resolver is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        addresses = [result["host"] for result in results]
        reason = self.policy.check_addresses(host, addresses)
        if reason is not None:
            refused = next((ip for ip in addresses if address_kind(ip) is not None), addresses[0] if addresses else "")
            raise BlockedAddressError(reason, host=host, address=refused)
        return results

    async def close(self) -> None:
        await self._resolver.close()
