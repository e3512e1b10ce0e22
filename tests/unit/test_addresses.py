"""Refusing non-public targets after DNS resolution: pure logic over the ipaddress module."""

from __future__ import annotations

import ipaddress

import pytest

from enrich.config import PolitenessConfig
from enrich.errors import FetchError
from enrich.policy.addresses import (
    AddressPolicy,
    BlockedAddressError,
    address_kind,
    is_public_address,
    refusal_message,
)


@pytest.mark.parametrize(
    "ip",
    ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001:82a::200e", "::ffff:8.8.8.8"],
)
def test_public_addresses(ip: str) -> None:
    assert is_public_address(ip)
    assert address_kind(ip) is None


@pytest.mark.parametrize(
    ("ip", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.0.0.2", "loopback"),
        ("::1", "loopback"),
        ("[::1]", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "shared (carrier-grade NAT)"),
        ("fec0::1", "site-local"),
        ("192.0.2.10", "private"),  # documentation range
        # IPv6 forms that lead to an IPv4 address are judged by it.
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::127.0.0.1", "loopback"),
        ("2002:7f00:0001::1", "loopback"),  # 6to4 of 127.0.0.1
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
    ],
)
def test_non_public_addresses(ip: str, kind: str) -> None:
    assert not is_public_address(ip)
    assert address_kind(ip) == kind


def test_accepts_address_objects() -> None:
    assert not is_public_address(ipaddress.ip_address("127.0.0.1"))
    assert is_public_address(ipaddress.IPv6Address("2606:4700:4700::1111"))


def test_not_an_address_raises() -> None:
    with pytest.raises(ValueError, match="does not appear to be"):
        is_public_address("example.com")


def test_refusal_message() -> None:
    assert refusal_message("localhost", "127.0.0.1") == (
        "refused to connect to localhost: it resolves to 127.0.0.1, a loopback address "
        "(set politeness.allow_private_addresses to allow)"
    )
    assert refusal_message("169.254.169.254", "169.254.169.254") == (
        "refused to connect to 169.254.169.254: 169.254.169.254 is a link-local address "
        "(set politeness.allow_private_addresses to allow)"
    )
    assert refusal_message("[::1]", "::1").startswith("refused to connect to ::1: ::1 is a loopback address")


def test_policy_allows_everything_by_default_config() -> None:
    policy = AddressPolicy.from_config(PolitenessConfig())
    assert policy.allow_private
    assert policy.check_addresses("localhost", ["127.0.0.1"]) is None
    assert policy.check_host("10.0.0.1") is None


def test_policy_refuses_if_any_address_is_not_public() -> None:
    policy = AddressPolicy.from_config(PolitenessConfig(allow_private_addresses=False))
    assert policy.check_addresses("example.com", ["93.184.216.34"]) is None
    message = policy.check_addresses("rebind.test", ["93.184.216.34", "10.0.0.5"])
    assert message is not None
    assert message.startswith("refused to connect to rebind.test: it resolves to 10.0.0.5, a private address")
    assert policy.check_host("127.0.0.1") is not None
    assert policy.check_host("[::ffff:127.0.0.1]") is not None
    assert policy.check_host("example.com") is None  # names are judged after resolution
    assert policy.stats() == {
        "allow_private": False,
        "checked": 4,
        "refused": 3,
        "refused_by_kind": {"private": 1, "loopback": 2},
    }


def test_blocked_address_error() -> None:
    exc = BlockedAddressError("refused", url="http://localhost/", host="localhost", address="127.0.0.1")
    assert isinstance(exc, FetchError)
    assert (exc.url, exc.host, exc.address, exc.attempts) == ("http://localhost/", "localhost", "127.0.0.1", 0)
