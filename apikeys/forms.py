from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

from apikeys.models import Api, User, printable_validator


class KeyForm(forms.Form):
    """The customer's request for a new key."""

    name = forms.CharField(
        max_length=64,
        validators=[printable_validator],
        help_text="To tell your keys apart, e.g. “billing service, production”.",
    )
    api = forms.ModelChoiceField(
        queryset=Api.objects.all(), empty_label=None, label="API", to_field_name="slug"
    )
    lifetime_days = forms.IntegerField(
        min_value=1,
        label="Valid for (days)",
        help_text="The key stops working after this many days. You can revoke it sooner.",
    )
    description = forms.CharField(
        max_length=500,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="What uses this key, and who to ask about it.",
    )

    def __init__(self, *args: Any, owner: User, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {"lifetime_days": settings.DEFAULT_KEY_LIFETIME_DAYS})
        super().__init__(*args, **kwargs)
        self.owner = owner

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        if self.owner.api_keys.live().filter(name=name).exists():
            raise forms.ValidationError("You already have a key with this name.")
        return name

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean() or {}
        api, days = cleaned.get("api"), cleaned.get("lifetime_days")
        if api is not None and days is not None and days > api.max_key_lifetime_days:
            self.add_error(
                "lifetime_days",
                f"Keys for {api.name} can be valid for at most {api.max_key_lifetime_days} days.",
            )
        return cleaned
