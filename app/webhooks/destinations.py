"""Where outbound webhooks may go: public internet addresses only.

An admin registers a URL and the worker POSTs to it, reporting status codes and errors in the delivery
log. Without a check, that is a way to make the service call its own network (databases, cloud metadata
at 169.254.169.254, admin ports) and a port scanner reading the answers. So a destination's host is
resolved and every address must be public: not loopback, private, link-local, multicast, reserved,
unspecified, shared (CGNAT), nor an IPv6 form carrying an IPv4 address. Checked when the endpoint is
registered and again at each delivery (DNS answers change), and the delivery connects to the address
that was checked, not to whatever a second lookup returns.

``SAV_WEBHOOKS_ALLOW_PRIVATE=true`` lifts the address rule (a local receiver in development and tests);
with ``SAV_ENV=production`` only ``https`` URLs are accepted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class UnsafeDestination(Exception):
    """The URL may not receive webhooks. ``code`` is the problem code shown to the admin."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.ipv4_mapped is not None or (embedded is not None and not is_public(embedded)):
            return False
        if address.teredo is not None:
            return False
    return address.is_global and not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (an IP literal is itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True)
class Destination:
    """A checked URL and the address to connect to."""

    url: SplitResult
    address: IPAddress | None  # None when private addresses are allowed: connect by name

    @property
    def connect_url(self) -> str:
        if self.address is None:
            return self.url.geturl()
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        netloc = f"{host}:{self.url.port}" if self.url.port else host
        return self.url._replace(netloc=netloc).geturl()

    @property
    def host_header(self) -> str:
        return self.url.netloc.rpartition("@")[2]


def parse(url: str, *, https_only: bool) -> SplitResult:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeDestination("url must be an http(s) URL with a host", code="validation_error")
    if parts.username is not None or parts.password is not None:
        raise UnsafeDestination("url must not carry credentials", code="validation_error")
    if https_only and parts.scheme != "https":
        raise UnsafeDestination("url must use https in production", code="webhook.https_required")
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        raise UnsafeDestination("url has an invalid port", code="validation_error") from None
    return parts


async def check(url: str, *, allow_private: bool, https_only: bool, resolver: Resolver = resolve) -> Destination:
    """The destination to POST to, or :class:`UnsafeDestination` saying why not."""
    parts = parse(url, https_only=https_only)
    if allow_private:
        return Destination(parts, None)
    host = parts.hostname or ""
    addresses = await resolver(host, parts.port or (443 if parts.scheme == "https" else 80))
    if not addresses:
        raise UnsafeDestination(f"the host {host!r} does not resolve", code="webhook.unresolvable_host")
    if not all(is_public(address) for address in addresses):
        # Which address, or whether anything answers there, is not said: the log is not a scanner.
        raise UnsafeDestination(
            f"the host {host!r} resolves to a non-public address; webhooks only go to the public internet",
            code="webhook.private_destination",
        )
    return Destination(parts, addresses[0])
