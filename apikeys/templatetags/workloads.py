"""What the workload setup snippets fill in from a key's subject."""

from __future__ import annotations

from django import template

from apikeys.models import WorkloadIssuer

register = template.Library()

# Kubernetes names its service accounts' tokens so: system:serviceaccount:<namespace>:<name>.
_SERVICE_ACCOUNT = "system:serviceaccount:"


@register.filter
def service_account(subject: str) -> dict[str, str] | None:
    """The namespace and name of the Kubernetes service account `subject` names, or None."""
    namespace, _, name = subject.removeprefix(_SERVICE_ACCOUNT).partition(":")
    if not subject.startswith(_SERVICE_ACCOUNT) or not namespace or not name or ":" in name:
        return None
    return {"namespace": namespace, "name": name}


# Kubernetes' bounds: a projected token lives at least 10 minutes, and the kubelet renews it
# once it is 80% through its life; an hour is the usual choice.
SHORTEST_PROJECTED, USUAL_PROJECTED = 600, 3600


@register.filter
def projected_lifetime(issuer: WorkloadIssuer) -> int | None:
    """The expirationSeconds of a projected token the issuer's Keycloak provider takes to
    its last renewal (read up to 80% through its life), or None if no lifetime fits."""
    fits = min(USUAL_PROJECTED, issuer.max_token_age * 5 // 4)
    return fits if fits >= SHORTEST_PROJECTED else None
