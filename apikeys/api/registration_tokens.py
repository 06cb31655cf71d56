"""Registration tokens, for scripts: the same operations and rules as /registration-tokens/.

A token is its maker's, registering their personal keys, or a team's (`team`), registering the
team's keys: its members see it, developers and owners make and revoke it (apikeys/access.py).
The token itself appears once, in the response that makes it, sent with `no-store`.
Administrators list and revoke every token in admin.py.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.urls import reverse
from django.views.decorators.debug import sensitive_variables
from ninja import Query, Router, Status

from apikeys.access import (
    CHANGE,
    SEE,
    registration_token_for,
    registration_tokens_of,
    team_for,
)
from apikeys.api.auth import PortalToken
from apikeys.api.paging import PageQuery, paginate
from apikeys.api.problems import FAILURES, Problem, form_errors, refuse_over_limit
from apikeys.api.schemas import (
    RegistrationTokenDetail,
    RegistrationTokenIn,
    RegistrationTokenPage,
    RegistrationTokenSecret,
    with_token_details,
)
from apikeys.assurance import recent_factor_required
from apikeys.client_address import client_ip
from apikeys.credentials.networks import BadRanges
from apikeys.forms import RegistrationTokenForm
from apikeys.http import ApiRequest
from apikeys.models import UnknownPermission
from apikeys.operations import registration_tokens

router = Router(auth=PortalToken(), tags=["registration tokens"])


@router.get(
    "",
    response={200: RegistrationTokenPage, **FAILURES},
    summary="Your registration tokens, or with ?team= a team's",
    description="Newest first. The tokens themselves are never shown again.",
)
def list_tokens(request: ApiRequest, query: Query[PageQuery], team: uuid.UUID | None = None) -> Any:
    space = team_for(request.auth, team, to=SEE) if team else None
    return paginate(with_token_details(registration_tokens_of(request.auth, space)), query)


@router.post(
    "",
    response={201: RegistrationTokenSecret, **FAILURES},
    summary="Make a registration token (the token itself, once)",
    description="Software sends the token as a bearer token to `registration_endpoint` "
    "(RFC 7591) to register a key for the API, with the token's permissions, as many times "
    "as it allows and until it expires. Bounds refused by field (422); a retired API, 409.",
)
@recent_factor_required
def create_token(request: ApiRequest, response: HttpResponse, body: RegistrationTokenIn) -> Any:
    team = team_for(request.auth, body.team, to=CHANGE) if body.team else None
    _limit(request)
    form = RegistrationTokenForm(_form_data(body), team=team)
    if not form.is_valid():
        errors = form_errors(form)
        raise Problem(422, "The registration token was not made: see errors.", errors=errors)
    try:
        made = registration_tokens.create_token(
            request.auth, **form.order(), ip_address=client_ip(request)
        )
    except (UnknownPermission, BadRanges) as refused:
        raise Problem(422, str(refused)) from None
    except ValidationError as invalid:
        raise Problem(422, " ".join(invalid.messages)) from None
    return Status(201, _revealed(made, response))


@router.get(
    "/{token_id}",
    response={200: RegistrationTokenDetail, **FAILURES},
    summary="One registration token, with the keys it registered",
)
def show_token(request: ApiRequest, token_id: uuid.UUID) -> Any:
    return registration_token_for(request.auth, token_id, to=SEE)


@router.delete(
    "/{token_id}",
    response={200: RegistrationTokenDetail, **FAILURES},
    summary="Revoke a registration token: it registers nothing more (its keys keep working)",
    description="From the next registration on, the token is refused (401 invalid_token). "
    "The keys it registered stay; revoke them one by one if they should stop too. Revoking "
    "a revoked token changes nothing.",
)
def revoke_token(request: ApiRequest, token_id: uuid.UUID) -> Any:
    token = registration_token_for(request.auth, token_id)
    _limit(request)
    return registration_tokens.revoke_token(
        token, actor=request.auth, ip_address=client_ip(request)
    )


def _form_data(body: RegistrationTokenIn) -> dict[str, Any]:
    """The request body as the page's form takes it."""
    return body.dict(exclude={"team", "networks", "permissions"}) | {
        "key_lifetime_days": body.key_lifetime_days,
        "networks": "\n".join(body.networks),
        # The form's choices are "<api slug>/<name>" (the page offers every API's at once).
        "permissions": [f"{body.api}/{name.strip()}" for name in body.permissions or ()],
        "permissions_given": True,
    }


def _limit(request: ApiRequest) -> None:
    refuse_over_limit(
        request, "keys", "Too many key actions in a short time: try again in a minute."
    )


@sensitive_variables()  # (every API view is marked so too: apikeys/urls.py)
def _revealed(
    made: registration_tokens.NewRegistrationToken, response: HttpResponse
) -> dict[str, Any]:
    response["Cache-Control"] = "no-store"
    return {
        "registration_token": made.token,
        "token": made.secret,
        "registration_endpoint": f"{settings.PORTAL_URL}{reverse('software_registration')}",
    }
