"""The portal's records: its users and the catalog of APIs that keys are issued for."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models


class User(AbstractUser):
    """A portal user; `username` holds the Keycloak user's `sub`, which never changes."""

    @property
    def display_name(self) -> str:
        return self.get_full_name() or self.email or self.username


# An audience ends up in a protocol mapper's config, so it is held to a strict shape.
audience_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$",
    "Use letters, digits and . _ : / - only (a URL or a short name), at most 200 characters.",
)


class Api(models.Model):
    """An API in the catalog; keys are issued for one API and carry its audience."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=50, unique=True)
    audience = models.CharField(max_length=200, unique=True, validators=[audience_validator])
    description = models.TextField(blank=True)
    access_token_lifespan = models.PositiveIntegerField(
        default=300,
        validators=[MinValueValidator(60), MaxValueValidator(3600)],
        help_text="Seconds an access token of this API's keys stays valid.",
    )
    max_key_lifetime_days = models.PositiveIntegerField(
        default=365, validators=[MinValueValidator(1), MaxValueValidator(3650)]
    )
    requires_approval = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name

    @property
    def scope_name(self) -> str:
        """The Keycloak client scope that carries this API's audience."""
        return f"api-{self.slug}"
