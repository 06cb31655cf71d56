"""The network ranges a key may get tokens from: checked here, enforced inside Keycloak.

Keycloak has no address allow-list for the client-credentials grant, so the portal's extension
(keycloak-extension/, the `apikey-portal-networks` client policy executor) refuses a token
request for a key's client from any address outside the client's `portal.networks` attribute,
with `unauthorized_client`. Keycloak finds the caller's address itself, honouring its
`proxy-headers` setting behind a reverse proxy (docs/operators.md).

What an owner types is checked and normalised here: CIDR ranges (IPv4 or IPv6, a bare address
is one address), at most MAX_RANGES, none wider than an IPv4 /8 or an IPv6 /16 (every address
is "anywhere": no ranges at all, said explicitly), no IPv6 zone, and IPv4-mapped IPv6 ranges
written as the IPv4 ranges they are (as the executor reads them).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

# The attribute the executor reads (comma-separated), and the error detail it gives on a
# refusal (Keycloak's CLIENT_LOGIN_ERROR event carries it as `client_policy_error_detail`,
# with `error` unauthorized_client: the usage counts them apart).
ATTRIBUTE = "portal.networks"
REFUSED_REASON = "portal.networks: not allowed from this address"
MAX_RANGES = 20
WIDEST = {4: 8, 6: 16}  # the shortest prefix allowed, by IP version

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class BadRanges(ValueError):
    """What is wrong with the ranges given; the message is fit to show."""


def parse(text: str | Iterable[str]) -> list[str]:
    """Normalised ranges from a text (commas, spaces or lines between them) or a list;
    BadRanges with every problem found."""
    items = re.split(r"[\s,]+", text) if isinstance(text, str) else list(text)
    items = [item.strip() for item in items if item and item.strip()]
    problems, ranges = [], []
    for item in items:
        network = _network(item)
        if network is None or "%" in item:
            problems.append(f"“{item[:60]}” is not an address or a CIDR range")
            continue
        if network.prefixlen == 0:
            problems.append(f"{network} is every address: choose “anywhere” (no ranges) instead")
            continue
        if network.prefixlen < WIDEST[network.version]:
            problems.append(
                f"{network} is too wide: at most /{WIDEST[network.version]} for "
                f"IPv{network.version}, or “anywhere”"
            )
            continue
        if str(network) not in ranges:
            ranges.append(str(network))
    if len(ranges) > MAX_RANGES:
        problems.append(f"at most {MAX_RANGES} ranges ({len(ranges)} given)")
    if problems:
        raise BadRanges("; ".join(problems) + ".")
    return ranges


def _network(text: str) -> Network | None:
    """The range `text` names; an IPv4-mapped IPv6 range as its IPv4 range; None if none."""
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    mapped = getattr(network.network_address, "ipv4_mapped", None)
    if isinstance(network, ipaddress.IPv6Network) and mapped is not None:
        if network.prefixlen < 96:
            return network  # wider than the mapped block: an IPv6 range (the executor agrees)
        return ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}")
    return network


def attribute(ranges: Sequence[str]) -> str:
    """The client attribute's value: "" (no limit) or the ranges, comma-separated."""
    return ",".join(ranges)


def read(value: str | None) -> list[Network] | None:
    """The ranges a client's attribute holds; None if it cannot be read."""
    found = [_network(v) for v in re.split(r"[\s,]+", value or "") if v]
    if "%" in (value or "") or any(n is None for n in found):
        return None
    return [n for n in found if n is not None]


def narrower(client: str | None, record: Sequence[str]) -> bool:
    """Whether the client's ranges allow no address the record's do not (an operator narrowed
    them in Keycloak): restrictive wins, and reconcile leaves them for an administrator."""
    given = read(client)
    if given is None:
        return True  # unreadable: the executor refuses every request
    if not given:
        return False  # no limit at all
    wanted = [ipaddress.ip_network(r) for r in record]
    if not wanted:
        return True  # the record allows every address
    return all(
        any(g.version == w.version and g.subnet_of(w) for w in wanted)  # type: ignore[arg-type]
        for g in given
    )


def allows(ranges: Sequence[str], address: str | None) -> bool:
    """Whether `address` is in one of the (normalised) `ranges`; an IPv4-mapped IPv6
    address counts as its IPv4 address. No address known: not allowed (fail closed)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(
        ip.version == network.version and ip in network
        for network in map(ipaddress.ip_network, ranges)
    )
