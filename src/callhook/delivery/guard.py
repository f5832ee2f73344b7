"""Destination guard: no webhook to loopback, private, link-local or metadata addresses.

``refusal`` judges one address. ``GuardedResolver`` applies it to every address a host name
resolves to, so the address checked is the address connected to (no DNS rebinding window);
aiohttp does not resolve literal IP hosts, so the sender checks those with ``refusal`` itself.
``url_refusal`` is the early check when a rule is created, without DNS.
An address inside an allowed network (``CALLHOOK_ALLOW_NETWORKS``) is never refused.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import TypeAlias
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from callhook.errors import ConfigError

Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
#: a parsed allow-list
Networks: TypeAlias = tuple[Network, ...]

#: how to let a refused destination through, for messages to operators
ALLOW_HINT = "allow it with CALLHOOK_ALLOW_NETWORKS"
LOOPBACK = ipaddress.IPv4Address("127.0.0.1")
METADATA = ipaddress.IPv4Address("169.254.169.254")
#: instance metadata services: AWS/GCP/Azure/OpenStack, AWS over IPv6, Alibaba Cloud
METADATA_ADDRESSES = frozenset(
    {METADATA, ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}
)
CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
PRIVATE = (
    ipaddress.IPv4Network("10.0.0.0/8"),
    ipaddress.IPv4Network("172.16.0.0/12"),
    ipaddress.IPv4Network("192.168.0.0/16"),
    ipaddress.IPv6Network("fc00::/7"),
)
#: host names that always mean this machine, and the address that must be allowed for them
LOCAL_NAMES = {
    "localhost": LOOPBACK,
    "localhost.localdomain": LOOPBACK,
    "ip6-localhost": LOOPBACK,
    "ip6-loopback": LOOPBACK,
    "metadata": METADATA,
    "metadata.google.internal": METADATA,
}
_LEGACY_IPV4 = re.compile(r"[0-9][0-9a-fx.]*")


def parse_networks(text: str) -> Networks:
    """Comma or space separated CIDRs or single addresses, IPv4 or IPv6."""
    networks: list[Network] = []
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(
                f"allowed networks: {item!r} is not an IP address or network "
                "(write CIDRs such as 10.0.0.0/8 or single addresses, separated by commas)"
            ) from None
    return tuple(networks)


def _allowed(ip: Address, allow: Networks) -> bool:
    return any(ip in network for network in allow)


def _kind(ip: Address) -> str | None:
    """What makes ``ip`` an unsafe destination, or None for a public address."""
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip in CGNAT:
        return "a carrier-grade NAT address"
    if any(ip in network for network in PRIVATE):
        return "a private address"
    if ip in THIS_NETWORK:
        return "a this-network address"
    if ip.is_reserved or not ip.is_global:
        return "a reserved or special-purpose address"
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped", ip.ipv4_mapped
    if ip in NAT64:
        return "NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return "6to4", ip.sixtofour
    return None


def refusal(ip: Address, allow: Networks) -> str | None:
    """Why a webhook must not go to ``ip``, or None when it may."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        ip = ipaddress.IPv6Address(str(ip).partition("%")[0])
    if _allowed(ip, allow):
        return None
    if isinstance(ip, ipaddress.IPv6Address) and (embedded := _embedded_ipv4(ip)) is not None:
        form, inner = embedded
        if _allowed(inner, allow):
            return None
        kind = _kind(inner)
        return None if kind is None else f"{ip} is the {form} form of {inner}, {kind}"
    kind = _kind(ip)
    return None if kind is None else f"{ip} is {kind}"


def literal_ip(host: str) -> Address | None:
    """The address a URL host spells out, brackets and zone allowed, or None for a name."""
    bare = host.removeprefix("[").removesuffix("]").partition("%")[0]
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        return None


def url_refusal(url: str, allow: Networks) -> str | None:
    """Why a rule must not point at ``url``, judged from the URL alone (no DNS)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None  # not a URL: rule validation reports that
    if not host:
        return None
    host = host.rstrip(".")
    ip = literal_ip(host)
    if ip is None and _LEGACY_IPV4.fullmatch(host):
        try:  # 127.1, 0x7f.0.0.1, 2130706433: resolvers read these as IPv4 addresses
            ip = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            ip = None
    if ip is not None:
        return refusal(ip, allow)
    local = LOCAL_NAMES.get(host)
    if local is None and host.endswith(".localhost"):
        local = LOOPBACK
    if local is None or _allowed(local, allow):
        return None
    return f"{host} is {_kind(local)}"


class RefusedDestination(OSError):
    """Every address of a host was refused; the message says which and why."""

    def __init__(self, host: str, reasons: list[str]) -> None:
        self.host = host
        self.reasons = reasons
        super().__init__(f"refused destination {host}: {'; '.join(reasons)} ({ALLOW_HINT})")

    def __str__(self) -> str:
        return str(self.args[0])


class GuardedResolver(AbstractResolver):
    """Resolves with ``inner`` (a ThreadedResolver by default), dropping refused addresses."""

    def __init__(self, allow: Networks, inner: AbstractResolver | None = None) -> None:
        self._allow = allow
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = ThreadedResolver()
        kept: list[ResolveResult] = []
        reasons: list[str] = []
        for result in await self._inner.resolve(host, port, family):
            ip = literal_ip(result["host"])
            reason = (
                "resolver returned a non-IP address" if ip is None else refusal(ip, self._allow)
            )
            if reason is None:
                kept.append(result)
            elif reason not in reasons:
                reasons.append(reason)
        if not kept:
            raise RefusedDestination(host, reasons or ["no address"])
        return kept

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()
