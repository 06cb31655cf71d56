"""Which space a key is in, for the pages: its list's address and its label."""

from __future__ import annotations

from django import template
from django.urls import reverse

from apikeys.models import ApiKey

register = template.Library()


@register.filter
def home_of(key: ApiKey) -> str:
    """The list the key is on: its team's page, or the person's own keys."""
    return reverse("team", args=[key.team_id]) if key.team_id else reverse("home")


@register.filter
def space_of(key: ApiKey) -> str:
    """ "Team Acme" or "Personal"."""
    return f"Team {key.team.name}" if key.team is not None else "Personal"
