"""The realm's sign-in: levels of authentication and the second factor (bootstrap's part).

Keycloak's `browser` flow is copied once as `desired.SIGNIN_FLOW`, its forms are rebuilt as
the levels of `desired.signin_flow()`, and the copy is bound as the realm's browser flow; the
built-in `browser` flow is never changed. Each step is found by what it is (a sub-flow by its
alias, an execution by its provider, two of one provider by the alias of their config) and
only what differs is written, so a second run changes nothing, and what an operator added
(another authenticator, a sub-flow, more config keys) stays where they put it.

Keycloak adds most executions disabled: every requirement is set after adding. Executions
cannot be moved between flows: the copy's own password form and conditional OTP are removed
from its forms when the copy is made (or at the next run, if the first stopped before the
levels were made), never later. A realm bound to an operator's own flow is refused with a
message, not taken over.
"""

from __future__ import annotations

import itertools
from typing import Any

from apikeys.keycloak import client as keycloak
from apikeys.keycloak import desired
from apikeys.keycloak.client import Connection, Representation


class SigninFlowTaken(keycloak.KeycloakRejected):
    """The realm signs people in through a flow of an operator's own: the portal does not
    replace it (nor could it know the levels that flow gives)."""

    for_people = (
        "The realm's browser flow is one of your own: bind Keycloak's 'browser' flow (the "
        "portal then makes its own copy) or the portal's 'portal browser', and run bootstrap "
        "again; operators.md says what the portal's flow holds."
    )


def ensure_signin(conn: Connection) -> list[str]:
    """The enrolment actions, the flow and its binding; a line per change."""
    bound = (keycloak.get_realm(conn) or {}).get("browserFlow")
    if bound not in (None, "browser", desired.SIGNIN_FLOW):
        raise SigninFlowTaken(409, f"the realm's browser flow is {bound!r}, not the portal's")
    changes = ensure_enrolment_actions(conn)
    if not any(flow["alias"] == desired.SIGNIN_FLOW for flow in keycloak.top_level_flows(conn)):
        keycloak.copy_flow(conn, "browser", desired.SIGNIN_FLOW)
        changes.append(f"copied the browser flow as {desired.SIGNIN_FLOW!r}")
    forms = [s["displayName"] for s in keycloak.flow_steps(conn, desired.SIGNIN_FLOW)]
    if desired.SIGNIN_FORMS not in forms:
        raise keycloak.NotFound(404, f"{desired.SIGNIN_FLOW!r} has no {desired.SIGNIN_FORMS!r}")
    if _find_subflow(conn, desired.SIGNIN_FORMS, desired.LEVEL_1) is None:
        # A new copy, or one whose first run stopped before its levels were made: its own
        # password form and conditional OTP go (executions cannot be moved into the levels).
        for step in _children(conn, desired.SIGNIN_FORMS):
            keycloak.delete_execution(conn, step["id"])
    for sub in desired.signin_flow():
        changes += _ensure_flow(conn, desired.SIGNIN_FORMS, sub)
    changes += _ensure_order(conn, desired.SIGNIN_FORMS, desired.signin_flow())
    if bound != desired.SIGNIN_FLOW:
        keycloak.update_realm(conn, {"browserFlow": desired.SIGNIN_FLOW})
        changes.append(f"bound {desired.SIGNIN_FLOW!r} as the realm's browser flow")
    return changes


def ensure_enrolment_actions(conn: Connection) -> list[str]:
    """TOTP and passkey enrolment registered and enabled (a fresh realm has both)."""
    changes = []
    for alias in desired.ENROLMENT_ACTIONS:
        present = {row["alias"]: row for row in keycloak.required_actions(conn)}
        if alias not in present:
            keycloak.register_required_action(conn, alias)
            present = {row["alias"]: row for row in keycloak.required_actions(conn)}
            changes.append(f"registered the required action {alias}")
        if not present[alias].get("enabled"):
            keycloak.update_required_action(conn, alias, {**present[alias], "enabled": True})
            changes.append(f"enabled the required action {alias}")
    return changes


def _children(conn: Connection, alias: str) -> list[Representation]:
    return [step for step in keycloak.flow_steps(conn, alias) if step.get("level") == 0]


def _name(step: Representation) -> str:
    """A child as `desired` names it: a sub-flow's alias, else the execution's provider."""
    return str(step["displayName"] if step.get("authenticationFlow") else step.get("providerId"))


def _ensure_flow(conn: Connection, parent: str, wanted: Representation) -> list[str]:
    """One sub-flow of `parent`, its requirement, and its steps (recursively), in order."""
    alias = wanted["flow"]
    changes = []
    found = _find_subflow(conn, parent, alias)
    if found is None:
        keycloak.add_subflow(conn, parent, alias, wanted["description"])
        changes.append(f"added the sub-flow {alias!r}")
        found = _find_subflow(conn, parent, alias)
        assert found is not None  # noqa: S101 - Keycloak just made it
    changes += _ensure_requirement(conn, parent, found, wanted["requirement"])
    for step in wanted["steps"]:
        if "flow" in step:
            changes += _ensure_flow(conn, alias, step)
        else:
            changes += _ensure_execution(conn, alias, step)
    return changes + _ensure_order(conn, alias, wanted["steps"])


def _find_subflow(conn: Connection, parent: str, alias: str) -> Representation | None:
    return next(
        (s for s in _children(conn, parent) if s.get("authenticationFlow") and _name(s) == alias),
        None,
    )


def _ensure_execution(conn: Connection, parent: str, wanted: Representation) -> list[str]:
    provider, config = wanted["provider"], wanted["config"]
    changes = []
    found = _find_execution(conn, parent, provider, config)
    if found is None:
        keycloak.add_execution(conn, parent, provider)
        changes.append(f"added {provider} to {parent!r}")
        fresh = [s for s in _children(conn, parent) if s.get("providerId") == provider]
        found = fresh[-1]
    changes += _ensure_requirement(conn, parent, found, wanted["requirement"])
    if config is not None:
        changes += _ensure_config(conn, found, *config)
    return changes


def _find_execution(
    conn: Connection, parent: str, provider: str, config: tuple[str, Any] | None
) -> Representation | None:
    """The execution of `provider` in `parent`; of several, the one whose config has the
    alias `desired` gives it (an operator's own one of the same provider is not ours)."""
    same = [s for s in _children(conn, parent) if s.get("providerId") == provider]
    if config is None or not same:
        return same[0] if same else None
    for step in same:
        config_id = step.get("authenticationConfig")
        if config_id and keycloak.get_step_config(conn, config_id)["alias"] == config[0]:
            return step
    unconfigured = [s for s in same if not s.get("authenticationConfig")]
    return unconfigured[0] if unconfigured else None


def _ensure_requirement(
    conn: Connection, parent: str, step: Representation, requirement: str
) -> list[str]:
    if step.get("requirement") == requirement:
        return []
    keycloak.set_requirement(conn, parent, step, requirement)
    return [f"set {_name(step)} in {parent!r} to {requirement}"]


def _ensure_config(
    conn: Connection, step: Representation, alias: str, wanted: dict[str, str]
) -> list[str]:
    """The keys of the step's config the portal sets; other keys an operator set stay."""
    if not step.get("authenticationConfig"):
        keycloak.add_step_config(conn, step["id"], {"alias": alias, "config": wanted})
        return [f"configured {alias!r}"]
    current = keycloak.get_step_config(conn, step["authenticationConfig"])
    merged = {**(current.get("config") or {}), **wanted}
    if merged == current.get("config"):
        return []
    keycloak.update_step_config(conn, current["id"], {**current, "config": merged})
    return [f"updated the config {alias!r}"]


def _ensure_order(conn: Connection, parent: str, wanted: list[Representation]) -> list[str]:
    """The portal's steps in their order, in the places they hold among an operator's steps,
    with distinct priorities: Keycloak gives new executions the same priority and then
    lists them in no fixed order (PostgreSQL), and raising a priority tied with the one
    above changes nothing."""
    names = [step.get("flow") or step["provider"] for step in wanted]
    children = _children(conn, parent)
    places = [i for i, step in enumerate(children) if _name(step) in names]
    ours = sorted((children[i] for i in places), key=lambda step: names.index(_name(step)))
    target = list(children)
    for place, step in zip(places, ours, strict=True):
        target[place] = step
    priorities = [int(step.get("priority") or 0) for step in children]
    if target == children and all(a < b for a, b in itertools.pairwise(priorities)):
        return []
    for index, step in enumerate(target):
        if int(step.get("priority") or 0) != (index + 1) * 10:
            keycloak.set_priority(conn, parent, step, (index + 1) * 10)
    return [f"put the steps of {parent!r} in order"]
