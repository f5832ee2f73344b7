from __future__ import annotations

import ipaddress
import re
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from callhook.delivery.guard import (
    GuardedResolver,
    RefusedDestination,
    parse_networks,
    refusal,
    url_refusal,
)
from callhook.errors import ConfigError

NONE: tuple[()] = ()


def test_parse_networks_accepts_cidrs_and_single_addresses() -> None:
    networks = parse_networks(" 10.0.0.0/8, 127.0.0.1  fd00::/8,::1,\n192.168.1.7/24 ")
    assert [str(n) for n in networks] == [
        "10.0.0.0/8",
        "127.0.0.1/32",
        "fd00::/8",
        "::1/128",
        "192.168.1.0/24",
    ]
    assert parse_networks("") == ()
    assert parse_networks(" , ") == ()


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "localhost", "10.0.0", "fe80::/129x"])
def test_parse_networks_names_the_bad_item(bad: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"'{bad}' is not an IP address or network")):
        parse_networks(f"10.0.0.0/8, {bad}")


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.255.0.9", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("172.31.255.255", "a private address"),
        ("192.168.0.10", "a private address"),
        ("fd12:3456::1", "a private address"),
        ("169.254.1.1", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("fe80::1%2", "a link-local address"),
        ("169.254.169.254", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("100.100.100.200", "a cloud metadata address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("0.0.0.0", "the unspecified address"),
        ("::", "the unspecified address"),
        ("0.1.2.3", "a this-network address"),
        ("100.64.0.1", "a carrier-grade NAT address"),
        ("100.127.255.254", "a carrier-grade NAT address"),
        ("240.0.0.1", "a reserved or special-purpose address"),
        ("255.255.255.255", "a reserved or special-purpose address"),
        ("192.0.2.1", "a reserved or special-purpose address"),
        ("2001:db8::1", "a reserved or special-purpose address"),
    ],
)
def test_unsafe_addresses_are_refused(address: str, kind: str) -> None:
    ip = ipaddress.ip_address(address)
    assert refusal(ip, NONE) == f"{address.partition('%')[0]} is {kind}"


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("::ffff:127.0.0.1", "::ffff:7f00:1 is the IPv4-mapped form of 127.0.0.1, a loopback"),
        ("::ffff:169.254.169.254", "is the IPv4-mapped form of 169.254.169.254, a cloud metadata"),
        ("64:ff9b::a00:1", "64:ff9b::a00:1 is the NAT64 form of 10.0.0.1, a private address"),
        ("2002:7f00:1::", "2002:7f00:1:: is the 6to4 form of 127.0.0.1, a loopback address"),
    ],
)
def test_ipv4_in_ipv6_is_judged_by_its_ipv4_address(address: str, reason: str) -> None:
    found = refusal(ipaddress.ip_address(address), NONE)
    assert found is not None
    assert reason in found


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), NONE) is None


def test_allowed_networks_let_addresses_through() -> None:
    allow = parse_networks("127.0.0.0/8, 10.0.0.0/16, 169.254.169.254")
    for address in ("127.0.0.1", "10.0.9.9", "::ffff:127.0.0.1", "169.254.169.254"):
        assert refusal(ipaddress.ip_address(address), allow) is None
    for address in ("10.1.0.1", "::1", "169.254.169.253"):
        assert refusal(ipaddress.ip_address(address), allow) is not None
    assert refusal(ipaddress.ip_address("::1"), parse_networks("::1")) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8080/x", "127.0.0.1 is a loopback address"),
        ("http://[::1]/x", "::1 is a loopback address"),
        ("https://10.0.0.5/hook", "10.0.0.5 is a private address"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a cloud metadata address"),
        ("http://localhost/x", "localhost is a loopback address"),
        ("http://LOCALHOST./x", "localhost is a loopback address"),
        ("http://app.localhost:3000/x", "app.localhost is a loopback address"),
        ("http://metadata.google.internal/x", "metadata.google.internal is a cloud metadata"),
        ("http://metadata/computeMetadata/v1", "metadata is a cloud metadata address"),
        ("http://127.1/x", "127.0.0.1 is a loopback address"),
        ("http://2130706433/x", "127.0.0.1 is a loopback address"),
        ("http://0x7f.0.0.1/x", "127.0.0.1 is a loopback address"),
        ("http://user:pw@[fe80::1%25eth0]:80/x", "fe80::1 is a link-local address"),
    ],
)
def test_url_refusal_without_dns(url: str, reason: str) -> None:
    found = url_refusal(url, NONE)
    assert found is not None
    assert found.startswith(reason)


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook",
        "http://8.8.8.8/x",
        "https://localhost.example.com/x",
        "https://metadata.example.com/x",
        "https://0xdeadbeef.example/x",
        "not a url",
        "http:///nohost",
    ],
)
def test_url_refusal_passes_other_urls(url: str) -> None:
    assert url_refusal(url, NONE) is None


def test_url_refusal_honours_the_allow_list() -> None:
    assert url_refusal("http://localhost/x", parse_networks("127.0.0.1")) is None
    assert url_refusal("http://127.0.0.1/x", parse_networks("127.0.0.0/8")) is None
    assert url_refusal("http://metadata/x", parse_networks("127.0.0.1")) is not None
    assert url_refusal("http://metadata/x", parse_networks("169.254.0.0/16")) is None


class FakeResolver(AbstractResolver):
    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for address in self.addresses
        ]

    async def close(self) -> None:
        self.closed = True


async def test_resolver_drops_refused_addresses() -> None:
    inner = FakeResolver(["10.0.0.1", "93.184.216.34", "::1", "2606:2800:220:1::1"])
    resolver = GuardedResolver(NONE, inner)
    results = await resolver.resolve("mixed.example", 443, socket.AF_UNSPEC)
    assert [r["host"] for r in results] == ["93.184.216.34", "2606:2800:220:1::1"]
    await resolver.close()
    assert inner.closed


async def test_resolver_refuses_when_nothing_is_left() -> None:
    resolver = GuardedResolver(NONE, FakeResolver(["127.0.0.1", "::1", "127.0.0.1"]))
    with pytest.raises(RefusedDestination) as caught:
        await resolver.resolve("rebind.example", 80)
    message = str(caught.value)
    assert message == (
        "refused destination rebind.example: 127.0.0.1 is a loopback address; "
        "::1 is a loopback address (allow it with CALLHOOK_ALLOW_NETWORKS)"
    )
    assert isinstance(caught.value, OSError)


async def test_resolver_keeps_allowed_addresses() -> None:
    resolver = GuardedResolver(parse_networks("127.0.0.1"), FakeResolver(["127.0.0.1", "::1"]))
    results = await resolver.resolve("localhost", 80)
    assert [r["host"] for r in results] == ["127.0.0.1"]


async def test_default_resolver_resolves_localhost_and_refuses_it() -> None:
    resolver = GuardedResolver(NONE)
    with pytest.raises(RefusedDestination, match=r"localhost: 127\.0\.0\.1 is a loopback address"):
        await resolver.resolve("localhost", 80)
    await resolver.close()
