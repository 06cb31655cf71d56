"""The customer's webhook endpoints, for scripts: the same operations as /webhooks/.

An endpoint is its owner's, hearing about their personal keys, or a team's (`team`), hearing
about the team's keys: its members see it, developers and owners change it (apikeys/access.py).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.http import HttpResponse
from django.views.decorators.debug import sensitive_variables
from ninja import Query, Router, Status

from apikeys.access import CHANGE, SEE, endpoint_for, team_for
from apikeys.api.auth import PortalToken
from apikeys.api.paging import PageQuery, paginate
from apikeys.api.problems import FAILURES, Problem, refuse_over_limit
from apikeys.api.schemas import (
    EndpointIn,
    EndpointOut,
    EndpointPatch,
    EndpointSecret,
    MessageOut,
    MessagePage,
    SecretRotationIn,
)
from apikeys.assurance import recent_factor_required, require_recent_factor
from apikeys.client_address import client_ip
from apikeys.http import ApiRequest
from apikeys.models import WebhookEndpoint, WrongState
from apikeys.operations import webhooks

router = Router(auth=PortalToken(), tags=["webhooks"])


@router.get(
    "",
    response={200: list[EndpointOut], **FAILURES},
    summary="Your webhook endpoints, or with ?team= a team's",
)
def list_endpoints(request: ApiRequest, team: uuid.UUID | None = None) -> Any:
    space = team_for(request.auth, team, to=SEE) if team else None
    return WebhookEndpoint.objects.held_by(request.auth, space)


@router.post(
    "", response={201: EndpointSecret, **FAILURES}, summary="Add an endpoint (its secret, once)"
)
@recent_factor_required
def create_endpoint(request: ApiRequest, response: HttpResponse, body: EndpointIn) -> Any:
    team = team_for(request.auth, body.team, to=CHANGE) if body.team else None
    _limit(request)
    try:
        revealed = webhooks.create_endpoint(
            request.auth,
            url=body.url,
            events=body.events,
            description=body.description,
            ip_address=client_ip(request),
            team=team,
        )
    except webhooks.Refused as refusal:
        raise Problem(422, str(refusal)) from None
    return Status(201, _secret(revealed, response))


@router.get("/{endpoint_id}", response={200: EndpointOut, **FAILURES}, summary="One endpoint")
def show_endpoint(request: ApiRequest, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    return endpoint_for(request.auth, endpoint_id, to=SEE)


@router.patch(
    "/{endpoint_id}",
    response={200: EndpointOut, **FAILURES},
    summary="Change an endpoint; active=false pauses it, true resumes it",
)
def change_endpoint(request: ApiRequest, endpoint_id: uuid.UUID, body: EndpointPatch) -> Any:
    endpoint = endpoint_for(request.auth, endpoint_id)
    _limit(request)
    if body.url is not None and body.url != endpoint.url:  # deliveries go elsewhere: a new endpoint
        require_recent_factor(request, request.auth)
    try:
        return webhooks.update_endpoint(
            endpoint,
            actor=request.auth,
            ip_address=client_ip(request),
            **body.dict(exclude_unset=True),
        )
    except webhooks.Refused as refusal:
        raise Problem(422, str(refusal)) from None


@router.delete(
    "/{endpoint_id}", response={204: None, **FAILURES}, summary="Delete an endpoint and its log"
)
def delete_endpoint(request: ApiRequest, endpoint_id: uuid.UUID) -> Any:
    endpoint = endpoint_for(request.auth, endpoint_id)
    _limit(request)
    webhooks.delete_endpoint(endpoint, actor=request.auth, ip_address=client_ip(request))
    return Status(204, None)


@router.post(
    "/{endpoint_id}/rotate-secret",
    response={200: EndpointSecret, **FAILURES},
    summary="A new signing secret (once); the old one also signs during the overlap",
)
def rotate_secret(
    request: ApiRequest, response: HttpResponse, endpoint_id: uuid.UUID, body: SecretRotationIn
) -> Any:
    endpoint = endpoint_for(request.auth, endpoint_id)
    _limit(request)
    revealed = webhooks.rotate_signing_secret(
        endpoint,
        actor=request.auth,
        overlap=timedelta(seconds=body.overlap_seconds),
        ip_address=client_ip(request),
    )
    return _secret(revealed, response)


@router.post(
    "/{endpoint_id}/test", response={202: MessageOut, **FAILURES}, summary="Send a test event"
)
def send_test(request: ApiRequest, endpoint_id: uuid.UUID) -> Any:
    endpoint = endpoint_for(request.auth, endpoint_id)
    _limit(request)
    return Status(202, webhooks.send_test(endpoint))


@router.get(
    "/{endpoint_id}/messages",
    response={200: MessagePage, **FAILURES},
    summary="The delivery log: messages, newest first, with their attempts",
)
def messages(request: ApiRequest, endpoint_id: uuid.UUID, query: Query[PageQuery]) -> Any:
    endpoint = endpoint_for(request.auth, endpoint_id, to=SEE)
    return paginate(endpoint.messages.prefetch_related("attempts_made"), query)


@router.post(
    "/{endpoint_id}/messages/{message_id}/resend",
    response={202: MessageOut, **FAILURES},
    summary="Deliver a message again, with the same id",
)
def resend(request: ApiRequest, endpoint_id: uuid.UUID, message_id: str) -> Any:
    endpoint = endpoint_for(request.auth, endpoint_id)
    _limit(request)
    message = endpoint.messages.filter(pk=message_id).first()
    if message is None:
        raise Problem(404, "This endpoint has no message with this id.")
    try:
        return Status(202, webhooks.resend(message))
    except WrongState as refusal:
        raise Problem(409, str(refusal)) from None


def _limit(request: ApiRequest) -> None:
    refuse_over_limit(request, "webhooks", "Too many webhook changes in a short time.")


@sensitive_variables()
def _secret(revealed: webhooks.Revealed, response: HttpResponse) -> dict[str, Any]:
    response["Cache-Control"] = "no-store"
    return {"endpoint": revealed.endpoint, "signing_secret": revealed.secret}
