"""Who may reach what: one helper per object, used by every door (pages, the JSON API, the CLI
through the API).

Another person's key or webhook endpoint does not exist for you: the helpers raise `Http404`,
which the pages show as their 404 page and the API turns into its 404 problem document
(apikeys/api/__init__.py). Every query starts from the person asking.
"""

from __future__ import annotations

import uuid

from django.http import Http404

from apikeys.models import ApiKey, User, WebhookEndpoint


def key_for(person: User, key_id: uuid.UUID) -> ApiKey:
    """The key `key_id`, if `person` may see and act on it; else Http404."""
    key = person.api_keys.select_related("api", "owner").filter(pk=key_id).first()
    if key is None:
        raise Http404("You have no key with this id.")
    return key


def any_key(key_id: uuid.UUID) -> ApiKey:
    """Any key, for administrators (their doors let only them through); else Http404."""
    key = ApiKey.objects.select_related("api", "owner").filter(pk=key_id).first()
    if key is None:
        raise Http404("There is no key with this id.")
    return key


def endpoint_for(person: User, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    """The webhook endpoint `endpoint_id`, if it is `person`'s; else Http404."""
    endpoint = person.webhook_endpoints.filter(pk=endpoint_id).first()
    if endpoint is None:
        raise Http404("You have no webhook endpoint with this id.")
    return endpoint
