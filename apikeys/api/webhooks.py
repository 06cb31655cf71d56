"""The customer's webhook endpoints, for scripts: the same operations as /webhooks/."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views.decorators.debug import sensitive_variables
from ninja import Query, Router, Status

from apikeys.api.auth import PortalToken
from apikeys.api.paging import PageQuery, paginate
from apikeys.api.problems import Problem
from apikeys.api.schemas import (
    EndpointIn,
    EndpointOut,
    EndpointPatch,
    EndpointSecret,
    MessageOut,
    MessagePage,
    SecretRotationIn,
)
from apikeys.api.schemas import Problem as ProblemOut
from apikeys.client_address import client_ip
from apikeys.limits import over_limit
from apikeys.models import User, WebhookEndpoint, WrongState
from apikeys.operations import webhooks

router = Router(auth=PortalToken(), tags=["webhooks"])
FAILURES: dict[int | str, Any] = dict.fromkeys(
    (400, 401, 403, 404, 409, 422, 429, 502, 503), ProblemOut
)


@router.get("", response={200: list[EndpointOut], **FAILURES}, summary="Your webhook endpoints")
def list_endpoints(request: HttpRequest) -> Any:
    return _user(request).webhook_endpoints.all()


@router.post(
    "", response={201: EndpointSecret, **FAILURES}, summary="Add an endpoint (its secret, once)"
)
def create_endpoint(request: HttpRequest, response: HttpResponse, body: EndpointIn) -> Any:
    _limit(request)
    try:
        revealed = webhooks.create_endpoint(
            _user(request),
            url=body.url,
            events=body.events,
            description=body.description,
            ip_address=client_ip(request),
        )
    except webhooks.Refused as refusal:
        raise Problem(422, str(refusal)) from None
    return Status(201, _secret(revealed, response))


@router.get("/{endpoint_id}", response={200: EndpointOut, **FAILURES}, summary="One endpoint")
def show_endpoint(request: HttpRequest, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    return _endpoint(request, endpoint_id)


@router.patch(
    "/{endpoint_id}",
    response={200: EndpointOut, **FAILURES},
    summary="Change an endpoint; active=false pauses it, true resumes it",
)
def change_endpoint(request: HttpRequest, endpoint_id: uuid.UUID, body: EndpointPatch) -> Any:
    endpoint = _endpoint(request, endpoint_id)
    _limit(request)
    try:
        return webhooks.update_endpoint(
            endpoint,
            actor=_user(request),
            ip_address=client_ip(request),
            **body.dict(exclude_unset=True),
        )
    except webhooks.Refused as refusal:
        raise Problem(422, str(refusal)) from None


@router.delete(
    "/{endpoint_id}", response={204: None, **FAILURES}, summary="Delete an endpoint and its log"
)
def delete_endpoint(request: HttpRequest, endpoint_id: uuid.UUID) -> Any:
    endpoint = _endpoint(request, endpoint_id)
    _limit(request)
    webhooks.delete_endpoint(endpoint, actor=_user(request), ip_address=client_ip(request))
    return Status(204, None)


@router.post(
    "/{endpoint_id}/rotate-secret",
    response={200: EndpointSecret, **FAILURES},
    summary="A new signing secret (once); the old one also signs during the overlap",
)
def rotate_secret(
    request: HttpRequest, response: HttpResponse, endpoint_id: uuid.UUID, body: SecretRotationIn
) -> Any:
    endpoint = _endpoint(request, endpoint_id)
    _limit(request)
    revealed = webhooks.rotate_signing_secret(
        endpoint,
        actor=_user(request),
        overlap=timedelta(seconds=body.overlap_seconds),
        ip_address=client_ip(request),
    )
    return _secret(revealed, response)


@router.post(
    "/{endpoint_id}/test", response={202: MessageOut, **FAILURES}, summary="Send a test event"
)
def send_test(request: HttpRequest, endpoint_id: uuid.UUID) -> Any:
    endpoint = _endpoint(request, endpoint_id)
    _limit(request)
    return Status(202, webhooks.send_test(endpoint))


@router.get(
    "/{endpoint_id}/messages",
    response={200: MessagePage, **FAILURES},
    summary="The delivery log: messages, newest first, with their attempts",
)
def messages(request: HttpRequest, endpoint_id: uuid.UUID, query: Query[PageQuery]) -> Any:
    endpoint = _endpoint(request, endpoint_id)
    return paginate(endpoint.messages.prefetch_related("attempts_made"), query)


@router.post(
    "/{endpoint_id}/messages/{message_id}/resend",
    response={202: MessageOut, **FAILURES},
    summary="Deliver a message again, with the same id",
)
def resend(request: HttpRequest, endpoint_id: uuid.UUID, message_id: str) -> Any:
    endpoint = _endpoint(request, endpoint_id)
    _limit(request)
    message = endpoint.messages.filter(pk=message_id).first()
    if message is None:
        raise Problem(404, "This endpoint has no message with this id.")
    try:
        return Status(202, webhooks.resend(message))
    except WrongState as refusal:
        raise Problem(409, str(refusal)) from None


def _user(request: HttpRequest) -> User:
    user: User = request.auth  # type: ignore[attr-defined]
    return user


def _endpoint(request: HttpRequest, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    """The caller's endpoint, or 404."""
    endpoint = _user(request).webhook_endpoints.filter(pk=endpoint_id).first()
    if endpoint is None:
        raise Problem(404, "You have no webhook endpoint with this id.")
    return endpoint


def _limit(request: HttpRequest) -> None:
    if over_limit(request, "webhooks"):
        raise Problem(
            429, "Too many webhook changes in a short time.", headers={"Retry-After": "60"}
        )


@sensitive_variables()
def _secret(revealed: webhooks.Revealed, response: HttpResponse) -> dict[str, Any]:
    response["Cache-Control"] = "no-store"
    return {"endpoint": revealed.endpoint, "signing_secret": revealed.secret}
