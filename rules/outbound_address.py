"""Where an outbound webhook may be sent: the URL's form and the addresses it resolves to.
Pure: the caller resolves the name (socket.getaddrinfo) and passes the addresses in.

Refused: anything but https (plain http only to a loopback address, for development),
userinfo in the URL, more than 2,048 characters, and addresses in the link-local range or
the cloud metadata addresses (169.254.0.0/16, fd00:ec2::254, fe80::/10): a webhook must never
become a way to read the instance's credentials.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
_METADATA_V6 = ipaddress.IPv6Address("fd00:ec2::254")


class AddressRefused(ValueError):
    """The URL or an address it resolves to may not receive webhooks; the message says why."""


def check_url_form(url: str) -> tuple[str, int]:
    """The URL's host and port if its form is allowed (the addresses are checked apart)."""
    if len(url) > MAX_URL_LENGTH:
        raise AddressRefused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise AddressRefused(f"the URL is not valid ({exc})") from None
    if parts.scheme not in ("https", "http"):
        raise AddressRefused("the URL must start with https:// (http:// only to loopback)")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise AddressRefused("the URL must not carry a user name or password")
    host = parts.hostname
    if not host:
        raise AddressRefused("the URL has no host")
    if any(ch.isspace() for ch in url):
        raise AddressRefused("the URL must not contain spaces")
    return host, port or (443 if parts.scheme == "https" else 80)


def refused_address(address: str) -> str | None:
    """Why `address` (an IP literal) may not receive webhooks; None when it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_link_local or ip == _METADATA_V6:
        return f"{ip} is a link-local or cloud metadata address"
    if ip.is_unspecified or ip.is_multicast:
        return f"{ip} is not a unicast address"
    return None


def check_addresses(url: str, addresses: Iterable[str]) -> None:
    """Raise AddressRefused if any address the URL's host resolved to is refused, or if the
    URL is plain http to anything but loopback."""
    scheme = urlsplit(url).scheme
    found = list(addresses)
    if not found:
        raise AddressRefused("the URL's host does not resolve to any address")
    for address in found:
        reason = refused_address(address)
        if reason:
            raise AddressRefused(f"the URL's host resolves to {reason}")
        if scheme == "http" and not ipaddress.ip_address(address.split("%", 1)[0]).is_loopback:
            raise AddressRefused("plain http:// is allowed only to loopback; use https://")
