"""Requests the portal makes to addresses its users give it (a JWKS URL, a webhook endpoint).

Such an address could point the portal at its own network (SSRF). So: https only, the host
must resolve to public addresses only, the connection goes to the address that was checked
(no second lookup for a rebinding DNS server to answer differently), no redirects, a short
timeout and a small answer. The dev and test profiles allow http and private or loopback
addresses (OUTBOUND_ALLOW_PRIVATE), since their partners run on the same machine.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from django.conf import settings

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
        return parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # out of range, or not a number
        raise RefusedAddress("The address's port is not a valid port.") from None


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


def is_public(address: str) -> bool:
    """A globally reachable address, including any IPv4 address an IPv6 one carries."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        carried = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if carried is None and ip in NAT64:
            carried = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if carried is not None and not carried.is_global:
            return False
    return ip.is_global


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
    """
    check_address(url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = _port(url)
    address = _public_addresses(host, port)[0]
    limit = timeout or settings.OUTBOUND_TIMEOUT
    started = time.monotonic()
    deadline = started + limit
    pool: urllib3.HTTPConnectionPool
    pool_timeout = urllib3.Timeout(total=limit)
    if parts.scheme == "https":  # to the checked address; TLS still checks the host's name
        pool = urllib3.HTTPSConnectionPool(
            address,
            port,
            server_hostname=host,
            assert_hostname=host,
            timeout=pool_timeout,
            retries=False,
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=pool_timeout, retries=False)
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    try:
        with pool:
            response = pool.urlopen(
                method,
                path,
                body=body,
                headers={"Host": parts.netloc, **(headers or {})},
                redirect=False,
                preload_content=False,
            )
            received = b""
            while len(received) <= max_bytes:  # a slow trickle still ends at the deadline
                if time.monotonic() > deadline:
                    raise RefusedAddress(f"{url} took longer than {limit:g} s.")
                chunk = response.read(8192)
                if not chunk:
                    break
                received += chunk
            response.release_conn()
    except urllib3.exceptions.HTTPError as error:
        raise RefusedAddress(f"{url} could not be reached ({type(error).__name__}).") from None
    return Answer(response.status, bytes(received), time.monotonic() - started)


def fetch(url: str) -> bytes:
    """GET `url` (a JSON document of at most MAX_BYTES); RefusedAddress says what failed."""
    answer = send("GET", url, headers={"Accept": "application/json"})
    if answer.status != 200:
        raise RefusedAddress(f"{url} answered {answer.status}, not 200.")
    if len(answer.body) > MAX_BYTES:
        raise RefusedAddress(f"{url} answered with more than {MAX_BYTES // 1024} KiB.")
    return answer.body
