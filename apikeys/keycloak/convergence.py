"""From what Keycloak holds to what the portal wants, in the fewest calls.

`plan` compares a client or client scope as Keycloak represents it with the wanted
representation (`apikeys/keycloak/desired.py`) and lists the differences; it does no I/O, so
reconcile can report them in a dry run. `apply` makes the calls. Bootstrap, the catalog and
reconcile all converge through these two, so "in shape" means the same thing everywhere.

What is compared: every top-level field the wanted representation names (`enabled` apart
from the rest, the "flags"), the attributes it names (others are left alone), the default and
optional client scopes (exactly), and the protocol mappers (exactly: added, updated, and
any other removed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import Connection, Representation
from apikeys.keycloak.key_clients import KeyClient

# Parts of a representation compared on their own; the rest are settings.
_NESTED = ("attributes", "defaultClientScopes", "optionalClientScopes", "protocolMappers")
_SCOPE_KINDS = ("default", "optional")


@dataclass
class Plan:
    """The calls that make one Keycloak object what the portal wants."""

    kind: str  # "client" or "client scope"
    object_id: str  # its id in Keycloak
    label: str  # its clientId or scope name, for reports
    parts: list[str] = field(default_factory=list)  # what differs, in a fixed order
    settings: Representation = field(default_factory=dict)  # a partial PUT, if any
    scopes: list[tuple[str, str, bool]] = field(default_factory=list)  # kind, name, attach
    mappers_added: list[Representation] = field(default_factory=list)
    mappers_updated: list[tuple[str, Representation]] = field(default_factory=list)
    mappers_removed: list[Representation] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.parts)

    def add(self, part: str, change: Representation) -> None:
        """Also send `change` (a partial representation; its attributes are merged)."""
        self.parts.append(part)
        attributes = self.settings.get("attributes", {}) | change.get("attributes", {})
        self.settings |= change | ({"attributes": attributes} if attributes else {})

    @property
    def owner_path(self) -> str:
        return f"/{'clients' if self.kind == 'client' else 'client-scopes'}/{self.object_id}"

    def describe(self) -> list[str]:
        """A line per change, for bootstrap's report."""
        lines = []
        if self.settings:
            lines.append(f"updated {self.kind} {self.label}")
        for kind in _SCOPE_KINDS:
            if any(k == kind for k, _, _ in self.scopes):
                lines.append(f"set {kind} client scopes of {self.label}")
        lines += [f"added mapper {m['name']!r} to {self.label}" for m in self.mappers_added]
        lines += [f"updated mapper {m['name']!r} of {self.label}" for _, m in self.mappers_updated]
        lines += [f"removed mapper {m['name']!r} from {self.label}" for m in self.mappers_removed]
        return lines


def plan(
    current: Representation | KeyClient, wanted: Representation, *, kind: str = "client"
) -> Plan:
    """What differs between `current` (a client or client scope read from Keycloak) and `wanted`."""
    if isinstance(current, KeyClient):
        current = current.representation
    result = Plan(kind, current["id"], str(wanted.get("clientId") or wanted.get("name")))
    top = {k: v for k, v in wanted.items() if k not in _NESTED and k != "id"}  # chosen once
    if "enabled" in top and current.get("enabled") != top["enabled"]:
        result.parts.append("enabled")
    if any(differs(current.get(k), v) for k, v in top.items() if k != "enabled"):
        result.parts.append("flags")
    attributes = current.get("attributes") or {}
    if differs(attributes, wanted.get("attributes", {})):
        result.parts.append("attributes")
    if result.parts:
        result.settings = {**top, "attributes": {**attributes, **wanted.get("attributes", {})}}
    for kind in _SCOPE_KINDS:
        name = f"{kind}ClientScopes"
        if name not in wanted:
            continue
        have, want = set(current.get(name) or []), set(wanted[name])
        if have != want:
            result.parts.append(f"{kind} scopes")
            result.scopes += [(kind, scope, scope in want) for scope in sorted(have ^ want)]
    _plan_mappers(result, current.get("protocolMappers") or [], wanted.get("protocolMappers"))
    return result


def _plan_mappers(
    result: Plan, current: list[Representation], wanted: list[Representation] | None
) -> None:
    if wanted is None:
        return
    have = {m["name"]: m for m in current}
    for mapper in wanted:
        existing = have.pop(mapper["name"], None)
        if existing is None:
            result.mappers_added.append(mapper)
        elif differs(existing, mapper):
            result.mappers_updated.append((existing["id"], {**mapper, "id": existing["id"]}))
    result.mappers_removed = list(have.values())
    if result.mappers_added or result.mappers_updated or result.mappers_removed:
        result.parts.append("protocol mappers")


def apply(conn: Connection, plan: Plan, scope_ids: Mapping[str, str] | None = None) -> None:
    """Make the plan's calls. `scope_ids` maps client scope names to ids (read if not given)."""
    if plan.settings and plan.kind == "client":
        keycloak.update_client(conn, plan.object_id, plan.settings)
    elif plan.settings:
        keycloak.update_client_scope(conn, plan.object_id, plan.settings)
    if plan.scopes:
        ids = scope_ids if scope_ids is not None else scope_ids_by_name(conn)
        for kind, name, attach in plan.scopes:
            if name not in ids:
                raise keycloak.NotFound(404, f"client scope {name} does not exist")
            keycloak.set_client_scope_of_client(
                conn, plan.object_id, kind, ids[name], attached=attach
            )
    for mapper in plan.mappers_added:
        keycloak.add_mapper(conn, plan.owner_path, mapper)
    for mapper_id, mapper in plan.mappers_updated:
        keycloak.update_mapper(conn, plan.owner_path, mapper_id, mapper)
    for mapper in plan.mappers_removed:
        keycloak.delete_mapper(conn, plan.owner_path, mapper["id"])


def scope_ids_by_name(conn: Connection) -> dict[str, str]:
    return {s["name"]: s["id"] for s in keycloak.list_client_scopes(conn)}


def differs(current: Any, wanted: Any) -> bool:
    """True if `current` lacks anything in `wanted`; lists of names compare as sets."""
    if isinstance(wanted, dict):
        if not isinstance(current, dict):
            return True
        return any(differs(current.get(key), value) for key, value in wanted.items())
    if isinstance(wanted, list) and all(isinstance(item, str) for item in wanted):
        return not isinstance(current, list) or set(current) != set(wanted)
    return bool(current != wanted)
