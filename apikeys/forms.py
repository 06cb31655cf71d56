from __future__ import annotations

import uuid
from typing import Any, ClassVar

from django import forms
from django.conf import settings

from apikeys.models import Api, ApiKey, AuditEntry, User, printable_validator


class KeyForm(forms.Form):
    """The customer's request for a new key."""

    name = forms.CharField(
        max_length=64,
        validators=[printable_validator],
        help_text="To tell your keys apart, e.g. “billing service, production”.",
    )
    api = forms.ModelChoiceField(
        queryset=Api.objects.open(), empty_label=None, label="API", to_field_name="slug"
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
    justification = forms.CharField(
        max_length=2000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Why you need it",
        help_text="Required for APIs marked “needs approval”: an administrator reads it.",
    )

    # A new one with each blank form: submitting the same form twice makes one key.
    request_id = forms.UUIDField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, owner: User, **kwargs: Any) -> None:
        kwargs.setdefault(
            "initial",
            {"lifetime_days": settings.DEFAULT_KEY_LIFETIME_DAYS, "request_id": uuid.uuid4()},
        )
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
        if api is not None and api.requires_approval and not cleaned.get("justification"):
            self.add_error(
                "justification",
                f"{api.name} needs an administrator's approval: say what you will use it for.",
            )
        return cleaned


class ApiForm(forms.ModelForm):  # type: ignore[type-arg]
    """An API in the catalog; the slug names its Keycloak scope and cannot change later."""

    # Declared here for their bounds in the form itself (0 is refused as you type it).
    max_key_lifetime_days = forms.IntegerField(
        min_value=1,
        max_value=3650,
        label="Longest key lifetime (days)",
        help_text="Customers choose a lifetime from 1 day up to this.",
    )
    access_token_lifespan = forms.IntegerField(
        min_value=60,
        max_value=3600,
        label="Access token lifetime (seconds)",
        help_text="How long each access token of the API's keys stays valid: 60 to 3600.",
    )

    class Meta:
        model = Api
        fields = Api.EDITABLE_FIELDS
        widgets: ClassVar = {"description": forms.Textarea(attrs={"rows": 3})}
        labels: ClassVar = {
            "requires_approval": "Needs an administrator's approval",
            "checks_revocation": "Checks every token with the portal",
        }
        help_texts: ClassVar = {
            "slug": "Names the Keycloak client scope api-<slug>. It cannot be changed later.",
            "audience": "The aud value the API checks, e.g. https://api.example.com/orders.",
            "requires_approval": "Keys are made disabled and work once an administrator approves.",
            "checks_revocation": (
                "Tick if the API's servers use the portal's token validator in strict mode: "
                "revoking or suspending a key then also ends its tokens already issued, and "
                "owners are told so."
            ),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["slug"].disabled = True


class ReasonForm(forms.Form):
    reason = forms.CharField(
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="The owner reads this in the email and on the key's page.",
    )


class OptionalReasonForm(forms.Form):
    reason = forms.CharField(
        max_length=1000, required=False, widget=forms.Textarea(attrs={"rows": 2})
    )


class KeySearchForm(forms.Form):
    """The admin key list's filters; every field is optional."""

    q = forms.CharField(
        required=False,
        label="Search",
        help_text="Owner email (start of it), client id (apikey-…) or key name.",
    )
    api = forms.ModelChoiceField(
        queryset=Api.objects.all(),
        required=False,
        to_field_name="slug",
        empty_label="Any API",
        label="API",
    )
    status = forms.ChoiceField(choices=[("", "Any status"), *ApiKey.Status.choices], required=False)
    created_after = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    created_before = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    expires_before = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    unused_days = forms.IntegerField(
        required=False,
        min_value=1,
        label="Unused for (days)",
        help_text="Not used (or never used) for at least this many days.",
    )
    sort = forms.ChoiceField(
        required=False,
        choices=[
            ("-created_at", "Newest first"),
            ("created_at", "Oldest first"),
            ("expires_at", "Expiring first"),
            ("last_used_at", "Least recently used"),
        ],
    )


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False, label="Actor email")
    action = forms.ChoiceField(
        choices=[("", "Any action"), *AuditEntry.Action.choices], required=False
    )
    key = forms.CharField(required=False, label="Client id")
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
