"""How a page answers an action on a key: what happened, as a message, then back.

The operations refuse with two exceptions: `WrongState` (the key's state does not allow it;
its message is for people) and `KeycloakFailure` (Keycloak failed; what that means depends
on the action, so each caller says it). The JSON API answers the same two in one place
(apikeys/api/__init__.py).
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.http import HttpRequest, HttpResponse

from apikeys.keycloak.client import KeycloakFailure
from apikeys.models import WrongState


def act_on_key(
    request: HttpRequest,
    action: Callable[[], object],
    *,
    done: str | Callable[[], str],
    unreached: Callable[[str], str],
    then: Callable[[], HttpResponse],
) -> HttpResponse:
    """Run `action`; say `done`, or why it was refused, or `unreached(why Keycloak failed)`."""
    try:
        action()
    except KeycloakFailure as failure:
        messages.error(request, unreached(failure.for_people))
    except WrongState as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(request, done() if callable(done) else done)
    return then()


def refusal(failure: KeycloakFailure | WrongState, then: str) -> str:
    """Why an action was refused, in words for the page; `then` follows a Keycloak failure."""
    if isinstance(failure, WrongState):
        return str(failure)
    return f"{failure.for_people} {then}"
