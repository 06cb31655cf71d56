"""Requests the portal makes to addresses its users give it (a JWKS URL, a webhook endpoint).

Such an address could point the portal at its own network (SSRF). So: https only, the host
must resolve to public addresses only, the connection goes to the address that was checked
(no second lookup for a rebinding DNS server to answer differently), no redirects, a short
timeout and a small answer. The dev and test profiles allow http and private or loopback
addresses (OUTBOUND_ALLOW_PRIVATE), since their partners run on the same machine.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.response import BaseHTTPResponse

MAX_BYTES = 64 * 1024


class RefusedAddress(ValueError):
    """The address is not one the portal will fetch; the message says why, for people."""


def check_address(url: str) -> None:
    """Raise RefusedAddress unless the portal may fetch `url` (its scheme and its host)."""
    try:
        parts = urlsplit(url)
        parts.hostname  # noqa: B018 - raises for a malformed host (an open [ bracket)
    except ValueError:
        raise RefusedAddress("This is not a valid address.") from None
    if len(url) > 2000 or any(ch.isspace() for ch in url):
        raise RefusedAddress("This is not a valid address.")
    allowed = ("https", "http") if settings.OUTBOUND_ALLOW_PRIVATE else ("https",)
    if parts.scheme not in allowed or not parts.hostname:
        raise RefusedAddress("Give an https:// address.")
    if parts.username or parts.password:
        raise RefusedAddress("Leave user names and passwords out of the address.")
    _public_addresses(parts.hostname, _port(url))


def _port(url: str) -> int:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # out of range, or not a number
        raise RefusedAddress("The address's port is not a valid port.") from None
    if port is None:
        return 443 if parts.scheme == "https" else 80
    if port == 0:
        raise RefusedAddress("The address's port is not a valid port.")
    if not settings.OUTBOUND_ALLOW_PRIVATE and port not in settings.OUTBOUND_PORTS:
        ports = ", ".join(str(p) for p in settings.OUTBOUND_PORTS)
        raise RefusedAddress(f"Use the standard https port ({ports}), not {port}.")
    return port


def _public_addresses(host: str, port: int) -> list[str]:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise RefusedAddress(f"{host} does not resolve to an address.") from None
    addresses = [str(info[4][0]) for info in found]
    if not settings.OUTBOUND_ALLOW_PRIVATE:
        for address in addresses:
            if not is_public(address):
                raise RefusedAddress(f"{host} points at a private or reserved address.")
    return addresses


NAT64 = ipaddress.ip_network("64:ff9b::/96")
# IPv6 forms that carry an IPv4 address in their last 32 bits, or that a site translates:
# IPv4-compatible (::a.b.c.d), IPv4-translated (::ffff:0:a.b.c.d), local-use NAT64.
REFUSED_V6 = (
    ipaddress.ip_network("::/96"),
    ipaddress.ip_network("::ffff:0:0:0/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
)


def is_public(address: str) -> bool:
    """A globally reachable address, including any IPv4 address an IPv6 one carries."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in network for network in REFUSED_V6):
            return False
        carried = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if carried is None and ip in NAT64:
            carried = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if carried is not None and not carried.is_global:
            return False
        if ip.is_site_local:  # deprecated, but still routed inside some sites
            return False
    # is_global counts multicast (224.0.0.0/4, ff0e::/16) as global: no receiver lives there.
    return ip.is_global and not ip.is_multicast


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes  # at most `max_bytes` + 1: more means it was cut
    elapsed: float  # seconds


def send(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    max_bytes: int = MAX_BYTES,
    timeout: float | None = None,
) -> Answer:
    """One request as described above; RefusedAddress for a refusal or a failure, explained.

    Any answer counts, whatever its status (redirects are not followed: a 3xx is an answer).
    The timeout is a deadline for the whole exchange: a watchdog shuts the socket at that
    moment, however slowly the other side trickles its answer.
    """
    check_address(url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = _port(url)
    address = _public_addresses(host, port)[0]
    limit = timeout or settings.OUTBOUND_TIMEOUT
    started = time.monotonic()
    conn = _connection(parts.scheme, host, address, port, limit)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    opened: list[socket.socket] = []  # the socket, kept: http.client may drop its own reference
    watchdog = threading.Timer(limit, _cut, args=(opened,))
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.connect()
        opened.append(conn.sock)
        conn.request(
            method,
            path,
            body=body,
            headers={"Host": parts.netloc, **(headers or {})},
            preload_content=False,  # read below, in pieces, within the deadline and the cap
        )
        response = conn.getresponse()
        received = _read_capped(response, max_bytes)
    except (OSError, urllib3.exceptions.HTTPError, http.client.HTTPException) as error:
        if time.monotonic() - started >= limit:
            raise RefusedAddress(f"{url} took longer than {limit:g} s.") from None
        raise RefusedAddress(f"{url} could not be reached ({type(error).__name__}).") from None
    finally:
        watchdog.cancel()
        conn.close()
    if time.monotonic() - started >= limit and len(received) <= max_bytes:
        raise RefusedAddress(f"{url} took longer than {limit:g} s.")
    return Answer(response.status, received, time.monotonic() - started)


def _connection(scheme: str, host: str, address: str, port: int, limit: float) -> HTTPConnection:
    """A connection to the checked `address`; over TLS, the certificate still names `host`."""
    if scheme == "https":
        return HTTPSConnection(
            address, port, timeout=limit, server_hostname=host, assert_hostname=host
        )
    return HTTPConnection(address, port, timeout=limit)


def _read_capped(response: BaseHTTPResponse, max_bytes: int) -> bytes:
    """The answer's body, read in pieces, stopped one piece past `max_bytes`."""
    received = b""
    while len(received) <= max_bytes:
        chunk = response.read1(4096)
        if not chunk:
            break
        received += chunk
    return received


def _cut(opened: list[socket.socket]) -> None:
    """The deadline: shut the connection's socket, so that a blocked read returns at once."""
    for sock in opened:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def fetch(url: str) -> bytes:
    """GET `url` (a JSON document of at most MAX_BYTES); RefusedAddress says what failed."""
    answer = send("GET", url, headers={"Accept": "application/json"})
    if answer.status != 200:
        raise RefusedAddress(f"{url} answered {answer.status}, not 200.")
    if len(answer.body) > MAX_BYTES:
        raise RefusedAddress(f"{url} answered with more than {MAX_BYTES // 1024} KiB.")
    return answer.body
