"""What people type, checked: the forms the pages and the JSON API both validate with.

A form that makes something hands the operation one value (`KeyForm.order()` → `KeyOrder`);
its messages are the ones both doors show.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date
from typing import Any, ClassVar, TypedDict, cast

from django import forms
from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db.models import Q, QuerySet
from django.http import QueryDict

from apikeys.credentials import networks, public_keys, workloads
from apikeys.models import (
    EVENT_LABELS,
    EVENT_TYPES,
    Api,
    ApiKey,
    AuditEntry,
    Permission,
    RegistrationToken,
    Team,
    TeamRole,
    UnknownPermission,
    User,
    WorkloadIssuer,
    printable_validator,
)
from apikeys.operations.lifecycle import KeyOrder

PUBLIC_KEY_HELP = (
    "Its public key only: a PEM public key or certificate, a JWK or a JWKS. Never the "
    "private key. RSA (2048 bits or more), EC P-256 or P-384, or Ed25519."
)


NETWORKS_HELP = (
    "Where its applications ask for tokens from: CIDR ranges or addresses, e.g. "
    "203.0.113.0/24, 2001:db8::/48, 198.51.100.7; one per line or comma-separated. Keycloak "
    "refuses token requests from anywhere else. Empty: anywhere."
)


DPOP_LABEL = "Require DPoP-bound tokens (RFC 9449)"
DPOP_HELP = (
    "Your partner's software then proves it holds a key of its own with each token request "
    "and each API call, so a stolen token is useless alone: its HTTP library needs DPoP "
    "support (e.g. requests-oauth2client in Python)."
)


def _ranges(text: str) -> list[str]:
    try:
        return networks.parse(text)
    except networks.BadRanges as bad:
        raise forms.ValidationError(str(bad)) from None


class NetworksForm(forms.Form):
    networks = forms.CharField(
        max_length=2000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        label="Allowed networks",
        help_text=NETWORKS_HELP,
    )

    def clean_networks(self) -> list[str]:
        return _ranges(self.cleaned_data["networks"])


class DpopForm(forms.Form):
    """Whether the key's tokens are bound to DPoP proofs (RFC 9449), on its page."""

    # Required, "true" or "false": a request without it changes nothing (never turns it off).
    requires_dpop = forms.TypedChoiceField(
        choices=(("true", "required"), ("false", "not required")),
        coerce=lambda value: value == "true",
        label=DPOP_LABEL,
        help_text=DPOP_HELP,
    )


class IssuerChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]
    """A trusted workload issuer, chosen by its short name, shown with its issuer URL."""

    def label_from_instance(self, obj: WorkloadIssuer) -> str:
        return f"{obj.name} ({obj.issuer})"


def name_taken(team: Team | None) -> str:
    if team is not None:
        return f"The team {team.name} already has a key with this name."
    return "You already have a key with this name."


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
    credential = forms.ChoiceField(
        choices=ApiKey.Credential.choices,
        initial=ApiKey.Credential.SECRET,
        required=False,  # left out: a secret
        widget=forms.RadioSelect,
        label="How your application signs in",
        help_text="A secret is simplest. With a private key, your application signs each "
        "token request and no secret is shared: give its public key below. With a workload "
        "identity, it presents the token its platform (a Kubernetes cluster, a CI system) gives "
        "it: there is nothing to keep secret.",
    )
    public_key = forms.CharField(
        max_length=public_keys.MAX_TEXT,
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "autocomplete": "off"}),
        label="Public key (private key only)",
        help_text=PUBLIC_KEY_HELP,
    )
    jwks_url = forms.URLField(
        max_length=500,
        required=False,
        assume_scheme="https",
        label="…or the URL of your JWKS (private key only)",
        help_text="Keycloak reads your public keys there, so you rotate them yourself.",
    )
    workload_issuer = IssuerChoiceField(
        queryset=WorkloadIssuer.objects.all(),
        required=False,
        to_field_name="slug",
        empty_label="Choose the issuer of your workload's tokens",
        label="Trusted issuer (workload identity only)",
        error_messages={
            "invalid_choice": "No workload issuer with this short name is trusted here."
        },
    )
    workload_subject = forms.CharField(
        max_length=255,
        required=False,
        widget=forms.TextInput(attrs={"spellcheck": "false", "autocomplete": "off"}),
        label="Subject (workload identity only)",
    )
    requires_dpop = forms.BooleanField(required=False, label=DPOP_LABEL, help_text=DPOP_HELP)

    networks = forms.CharField(
        max_length=2000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
        label="Allowed networks",
        help_text=NETWORKS_HELP,
    )

    # Each as "<api slug>/<name>": the page offers every open API's, and only the chosen
    # API's count. `permissions_given` off (the API's body left them out): the API's defaults.
    permissions = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Permissions",
        help_text="What the key may do at its API (the permissions of the API you chose). "
        "You can take them away later at once; adding one that needs approval waits for an "
        "administrator.",
    )
    permissions_given = forms.BooleanField(required=False, initial=True, widget=forms.HiddenInput)

    # A new one with each blank form: submitting the same form twice makes one key.
    request_id = forms.UUIDField(required=False, widget=forms.HiddenInput)

    def clean_networks(self) -> list[str]:
        return _ranges(self.cleaned_data["networks"])

    def __init__(self, *args: Any, owner: User, team: Team | None = None, **kwargs: Any) -> None:
        """`team`: the team the key is made for (the caller checked the owner may); None: a
        personal key."""
        offered = Permission.objects.filter(api__retired_at__isnull=True).select_related("api")
        kwargs.setdefault(
            "initial",
            {
                "lifetime_days": settings.DEFAULT_KEY_LIFETIME_DAYS,
                "request_id": uuid.uuid4(),
                "permissions": [permission_choice(p) for p in offered if p.default],
            },
        )
        super().__init__(*args, **kwargs)
        self.owner, self.team = owner, team
        self.offered = {permission_choice(p): p for p in offered}
        field = cast(forms.MultipleChoiceField, self.fields["permissions"])
        field.choices = [(value, _permission_label(p)) for value, p in self.offered.items()]
        self._offer_issuers()

    def _offer_issuers(self) -> None:
        """The trusted workload issuers, each with what its subjects look like; with none,
        the workload choice says so and offers nothing to fill in."""
        issuers = list(WorkloadIssuer.objects.all())
        self.issuers_trusted = bool(issuers)
        if not issuers:
            for name in ("workload_issuer", "workload_subject"):
                self.fields[name].widget = forms.HiddenInput()
            credential = cast(forms.ChoiceField, self.fields["credential"])
            credential.choices = [
                (value, f"{label} (no issuer is trusted here yet: ask an administrator)")
                if value == ApiKey.Credential.WORKLOAD
                else (value, label)
                for value, label in ApiKey.Credential.choices
            ]
            return
        hints = [f"{i.name}: {i.subject_hint}." for i in issuers if i.subject_hint]
        self.fields["workload_subject"].help_text = " ".join(
            ["The sub claim of your workload's tokens, exactly as its issuer writes it.", *hints]
        )

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        if ApiKey.objects.held_by(self.owner, self.team).live().filter(name=name).exists():
            raise forms.ValidationError(name_taken(self.team))
        return name

    def order(self) -> KeyOrder:
        """The key asked for, once the form is valid."""
        data = self.cleaned_data
        return KeyOrder(
            api=data["api"],
            name=data["name"],
            lifetime_days=data["lifetime_days"],
            description=data["description"],
            justification=data["justification"],
            credential=data["credential"],
            public_keys=tuple(data["public_keys"]),
            jwks_url=data["jwks_url"],
            request_id=data["request_id"],
            team=self.team,
            networks=tuple(data["networks"]),
            permissions=data["chosen_permissions"],
            requires_dpop=data["requires_dpop"],
            workload_issuer=data["workload_issuer"],
            workload_subject=data["workload_subject"],
        )

    def made_before(self) -> ApiKey | None:
        """The key this same request made already (a form sent twice, a retried
        Idempotency-Key), valid or not: its name is then taken by that very key."""
        try:
            request_id = uuid.UUID(str(self.data.get("request_id") or ""))
        except ValueError:
            return None
        made = self.owner.api_keys.made_by_request(request_id)
        if (
            made is not None
            and made.team is not None
            and not made.team.memberships.filter(user=self.owner).exists()
        ):
            return None  # an ex-member learns nothing of the team's key
        return made

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean() or {}
        api, days = cleaned.get("api"), cleaned.get("lifetime_days")
        if api is not None and days is not None and days > api.max_key_lifetime_days:
            self.add_error(
                "lifetime_days",
                f"Keys for {api.name} can be valid for at most {api.max_key_lifetime_days} days.",
            )
        chosen = self._chosen_permissions(cleaned)
        waits = [p.name for p in chosen or () if p.requires_approval]
        issuer = cleaned.get("workload_issuer")
        if isinstance(issuer, WorkloadIssuer) and issuer.keys_need_approval:
            waits.append(f"a key for a workload of {issuer.name}")
        if (
            api is not None
            and (api.requires_approval or waits)
            and not cleaned.get("justification")
        ):
            what = api.name if api.requires_approval else ", ".join(waits)
            self.add_error(
                "justification",
                f"{what} needs an administrator's approval: say what you will use it for.",
            )
        cleaned["chosen_permissions"] = None if chosen is None else [p.name for p in chosen]
        cleaned["public_keys"] = []
        cleaned["credential"] = cleaned.get("credential") or ApiKey.Credential.SECRET
        if cleaned["credential"] == ApiKey.Credential.SIGNED_JWT:
            read_public_keys(self, cleaned)
        elif (cleaned.get("public_key") or "").strip() or cleaned.get("jwks_url"):
            # A key given with "client secret" chosen: never silently ignored.
            if public_keys.PRIVATE_TEXT.search(cleaned.get("public_key") or ""):
                forget_field(self, "public_key")
                self.add_error("public_key", public_keys.EXPOSED)
            else:
                self.add_error(
                    "credential",
                    "You gave a public key: choose “Private key (signed JWT)”, or leave the "
                    "public key and the JWKS URL empty for a client secret.",
                )
        self._check_workload(cleaned)
        return cleaned

    def _check_workload(self, cleaned: dict[str, Any]) -> None:
        """A workload identity key names a trusted issuer and a subject; others name neither."""
        issuer, subject = cleaned.get("workload_issuer"), cleaned.get("workload_subject", "")
        if "credential" not in cleaned:
            return  # refused already, with what to choose
        if cleaned["credential"] != ApiKey.Credential.WORKLOAD:
            if issuer is not None or subject:  # never silently ignored
                self.add_error(
                    "credential",
                    "You named a workload issuer or subject: choose “Workload identity”, or "
                    "leave both empty.",
                )
            return
        if not self.issuers_trusted:
            self.add_error(
                "credential",
                "No workload issuer is trusted here yet: ask an administrator to trust your "
                "platform's issuer, or choose a secret or a private key.",
            )
            return
        if issuer is None and "workload_issuer" not in self.errors:
            self.add_error("workload_issuer", "Choose the issuer of your workload's tokens.")
        if "workload_subject" not in self.errors:
            try:
                workloads.check_subject(subject)
            except ValueError as bad:
                self.add_error("workload_subject", str(bad))

    def _chosen_permissions(self, cleaned: dict[str, Any]) -> list[Permission] | None:
        """The chosen API's permissions that were ticked; None: not given (its defaults)."""
        api = cleaned.get("api")
        if not cleaned.get("permissions_given") or api is None:
            return None
        ticked = [self.offered[value] for value in cleaned.get("permissions") or ()]
        return [p for p in ticked if p.api_id == api.pk]


def permission_choice(permission: Permission) -> str:
    return f"{permission.api.slug}/{permission.name}"


def _permission_label(permission: Permission) -> str:
    approval = " (needs approval)" if permission.requires_approval else ""
    return f"{permission.api.name}: {permission.name} — {permission.description}{approval}"


class PermissionsForm(forms.Form):
    """A key's permissions, as its holder changes them: the ticked ones of its API."""

    permissions = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, label="Permissions"
    )
    justification = forms.CharField(
        max_length=2000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Why the key needs more",
        help_text="Needed when you add a permission that needs approval: an administrator "
        "reads it. The key keeps working with what it has until they decide.",
    )

    def __init__(self, *args: Any, key: ApiKey, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {"permissions": key.permission_names})
        super().__init__(*args, **kwargs)
        field = cast(forms.MultipleChoiceField, self.fields["permissions"])
        field.choices = [
            (
                p.name,
                f"{p.name} — {p.description}"
                + (" (needs approval)" if p.requires_approval else ""),
            )
            for p in key.api.permissions.all()
        ]


class PermissionDefinitionForm(forms.ModelForm):  # type: ignore[type-arg]
    """An administrator's new permission of an API (its name is fixed once made)."""

    give_to_live_keys = forms.BooleanField(
        required=False,
        label="Give it to the API's keys that exist now",
        help_text="So their partners keep working when the API starts checking it.",
    )

    class Meta:
        model = Permission
        fields = ("name", "description", "requires_approval", "default")
        labels: ClassVar[dict[str, str]] = {
            "requires_approval": "Granting it needs an administrator's approval",
            "default": "New keys get it unless their maker leaves it out",
        }
        help_texts: ClassVar[dict[str, str]] = {
            "name": "A resource and an action, e.g. invoices:read. It cannot change."
        }


class PermissionChangeForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Permission
        fields = Permission.EDITABLE_FIELDS
        labels = PermissionDefinitionForm.Meta.labels


def read_public_keys(form: forms.Form, cleaned: dict[str, Any]) -> None:
    """The public keys of a private_key_jwt key: pasted, or read from the JWKS URL now.

    Pasted private key material is refused, and dropped from the form so that it is not
    shown back (nor kept anywhere): the customer is told the key is exposed.
    """
    text, url = cleaned.get("public_key", ""), cleaned.get("jwks_url", "")
    if bool(text.strip()) == bool(url):
        form.add_error("public_key", "Give either a public key or the URL of your JWKS.")
        return
    if url and not settings.JWKS_URLS_ALLOWED:
        form.add_error("jwks_url", "This portal takes public keys only, not JWKS URLs.")
        return
    try:
        if url:
            cleaned["public_keys"] = public_keys.from_url(url)
        else:
            cleaned["public_keys"] = public_keys.parse(text)
    except public_keys.PrivateKeyMaterial as exposed:
        forget_field(form, "public_key")
        form.add_error("jwks_url" if url else "public_key", str(exposed))
    except public_keys.Refused as refusal:
        form.add_error("jwks_url" if url else "public_key", str(refusal))
    if len(cleaned["public_keys"]) > settings.MAX_PUBLIC_KEYS_PER_KEY:
        form.add_error(
            "public_key", f"At most {settings.MAX_PUBLIC_KEYS_PER_KEY} public keys per key."
        )
    if url:  # Keycloak reads the URL itself; what it served now was only checked
        cleaned["public_keys"] = []


def forget_field(form: forms.Form, name: str) -> None:
    """Drop what was typed into a field, so the re-rendered form does not show it again."""
    data = dict(form.data.items()) if not isinstance(form.data, QueryDict) else form.data.copy()
    data[name] = ""
    form.data = data
    form.cleaned_data.pop(name, None)


class RenameForm(forms.Form):
    """A key's name and description: the portal's own, never sent to Keycloak."""

    name = KeyForm.base_fields["name"]
    description = KeyForm.base_fields["description"]

    def __init__(self, *args: Any, key: ApiKey, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {"name": key.name, "description": key.description})
        super().__init__(*args, **kwargs)
        self.key = key

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        if self.key.siblings().live().filter(name=name).exists():
            raise forms.ValidationError(name_taken(self.key.team))
        return name


class PublicKeyForm(forms.Form):
    """Another public key for a private_key_jwt key (a rotation: add, move over, remove)."""

    public_key = forms.CharField(
        max_length=public_keys.MAX_TEXT,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "autocomplete": "off"}),
        label="New public key",
        help_text=PUBLIC_KEY_HELP,
    )

    def clean_public_key(self) -> list[public_keys.AcceptedKey]:
        try:
            return public_keys.parse(self.cleaned_data["public_key"])
        except public_keys.PrivateKeyMaterial as exposed:
            forget_field(self, "public_key")
            raise forms.ValidationError(str(exposed)) from None
        except public_keys.Refused as refusal:
            raise forms.ValidationError(str(refusal)) from None


# The grace periods offered when rotating, in hours; each API allows those up to its bound.
GRACE_CHOICES = (
    (0, "None: the old secret stops now"),
    (1, "1 hour"),
    (24, "1 day"),
    (72, "3 days"),
    (168, "7 days"),
    (336, "14 days"),
    (720, "30 days"),
)


class RotateForm(forms.Form):
    grace_hours = forms.TypedChoiceField(
        coerce=int,
        initial=0,
        required=False,
        empty_value="0",  # left out: none (coerced to 0)
        label="Keep the old secret working for",
        help_text="Both secrets get tokens until then, while you move your applications over.",
    )
    # A new one with each blank form: sending the same form again rotates nothing.
    request_id = forms.UUIDField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, key: ApiKey, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {"request_id": uuid.uuid4()})
        super().__init__(*args, **kwargs)
        bound = 0 if key.secret_exposed_at else key.api.max_rotation_grace_hours
        field = cast(forms.TypedChoiceField, self.fields["grace_hours"])
        field.choices = [(hours, label) for hours, label in GRACE_CHOICES if hours <= bound]
        if key.secret_exposed_at:
            field.help_text = "The current secret was found exposed: it must stop now."


class CheckSecretForm(forms.Form):
    secret = forms.CharField(
        max_length=200,
        strip=True,
        widget=forms.PasswordInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
        label="Secret",
        help_text="Pasted here, it is checked and forgotten: not stored, not logged.",
    )


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
    max_rotation_grace_hours = forms.IntegerField(
        min_value=0,
        max_value=720,
        required=False,
        initial=168,
        label="Longest grace period when rotating (hours)",
        help_text="How long a customer may keep the old secret working beside the new one "
        "when rotating: 0 (never) to 720. Left empty: 168 (7 days).",
    )

    class Meta:
        model = Api
        fields = Api.EDITABLE_FIELDS
        widgets: ClassVar = {"description": forms.Textarea(attrs={"rows": 3})}
        labels: ClassVar = {
            "requires_approval": "Needs an administrator's approval",
            "requires_networks": "Every key must be limited to network ranges",
            "checks_revocation": "Checks every token against the revocation feed",
            "dormant_warn_days": "Warn owners of unused keys after (days)",
            "dormant_suspend_days": "Suspend unused keys after (days)",
        }
        help_texts: ClassVar = {
            "slug": "Names the Keycloak client scope api-<slug>. It cannot be changed later.",
            "audience": "The aud value the API checks, e.g. https://api.example.com/orders.",
            "requires_approval": "Keys are made disabled and work once an administrator approves.",
            "checks_revocation": (
                "Tick if the API's servers use the portal's token validator in strict mode "
                "with this API's revocation feed: revoking or suspending a key then also ends "
                "its tokens already issued, within seconds, and owners are told so."
            ),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["slug"].disabled = True

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        warn, suspend = Api(
            dormant_warn_days=cleaned.get("dormant_warn_days"),
            dormant_suspend_days=cleaned.get("dormant_suspend_days"),
        ).dormant_policy
        if suspend and suspend <= warn:
            self.add_error(
                "dormant_suspend_days",
                f"Suspend after more days than the warning ({warn}), so that owners are "
                "warned first; 0 never suspends.",
            )
        return cleaned

    def clean_max_rotation_grace_hours(self) -> int:
        hours = self.cleaned_data["max_rotation_grace_hours"]
        return 168 if hours is None else int(hours)


class IssuerForm(forms.Form):
    """An administrator's new trusted workload issuer, checked field by field with the rules
    `workload_issuers.trust_issuer` holds it to (apikeys/credentials/workloads.py)."""

    slug = forms.CharField(
        max_length=40,
        label="Short name",
        help_text="Lowercase letters, digits and hyphens, e.g. prod-cluster. It names the "
        "issuer's identity provider in Keycloak (workload-<short name>) and cannot change.",
    )
    name = forms.CharField(
        max_length=100,
        validators=[printable_validator],
        help_text="As customers will recognise it, e.g. “Production Kubernetes cluster”.",
    )
    issuer = forms.CharField(
        max_length=500,
        widget=forms.URLInput(attrs={"spellcheck": "false"}),
        label="Issuer URL",
        help_text="Exactly the iss claim of its tokens, e.g. "
        "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE or "
        "https://token.actions.githubusercontent.com.",
    )
    jwks_url = forms.CharField(
        max_length=500,
        widget=forms.URLInput(attrs={"spellcheck": "false"}),
        label="JWKS URL",
        help_text="Where the issuer publishes its public keys. Keycloak reads them when a "
        "token arrives, so nothing is fetched now.",
    )
    allows_reuse = forms.BooleanField(
        required=False,
        label="A token may be presented again until it expires",
        help_text="Kubernetes projected service-account tokens need this: the kubelet writes "
        "one token, renews it well before it expires, and the workload presents it for each "
        "token request. Leave it off for issuers that make a new token each time (CI "
        "systems): a token then works once.",
    )
    max_token_age = forms.IntegerField(
        min_value=WorkloadIssuer.TOKEN_AGES[0],
        max_value=WorkloadIssuer.TOKEN_AGES[1],
        required=False,  # left out: 300, Keycloak's default
        initial=300,
        label="Longest token age (seconds)",
        help_text="Keycloak takes a token up to this long after it was issued: 60 to 86,400. "
        "Kubernetes renews a projected token at 80% of its life, so a workload may present "
        "one up to 48 minutes old (with expirationSeconds: 3600): give a Kubernetes issuer "
        "3600. 300 suits issuers that make a new token for each request.",
    )
    keys_need_approval = forms.BooleanField(
        required=False,
        initial=True,
        label="Keys bound to it need an administrator's approval",
        help_text="Anyone may name any subject of an issuer, and each subject holds one live "
        "key: with approval, an administrator checks that the subject is the customer's (their "
        "namespace, their repository) before the key works. Leave it on for a shared issuer.",
    )
    subject_hint = forms.CharField(
        max_length=200,
        required=False,
        label="What subjects look like",
        help_text="Shown to customers when they make a key, e.g. "
        "system:serviceaccount:<namespace>:<service account>.",
    )

    def clean_slug(self) -> str:
        return _checked(workloads.check_issuer_slug, self.cleaned_data["slug"])

    def clean_max_token_age(self) -> int:
        age = self.cleaned_data["max_token_age"]
        return 300 if age is None else int(age)

    def clean_issuer(self) -> str:
        return _checked(workloads.check_issuer_url, self.cleaned_data["issuer"], "issuer")

    def clean_jwks_url(self) -> str:
        return _checked(workloads.check_issuer_url, self.cleaned_data["jwks_url"], "JWKS URL")

    def order(self) -> workloads.IssuerOrder:
        """The issuer to trust, once the form is valid."""
        return workloads.IssuerOrder(**self.cleaned_data)


def _checked(check: Callable[..., str], *given: str) -> str:
    """`check(*given)`, its ValueError as the field's message."""
    try:
        return check(*given)
    except ValueError as bad:
        raise forms.ValidationError(str(bad)) from None


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


def filter_date() -> forms.DateField:
    """A day a list is filtered by: one the database can hold a day after (9999-12-31 cannot
    be given a day more, and the lists filter up to the end of the day)."""
    return forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date", "max": "9998-12-31"}),
        validators=[MaxValueValidator(date(9998, 12, 31), "Choose a day before the year 9999.")],
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
    permission = forms.ModelChoiceField(
        queryset=Permission.objects.all(),
        required=False,
        to_field_name="name",
        empty_label="Any permission",
        label="Permission",
        help_text="Keys that hold it.",
    )
    status = forms.ChoiceField(choices=[("", "Any status"), *ApiKey.Status.choices], required=False)
    created_after = filter_date()
    created_before = filter_date()
    expires_before = filter_date()
    unused_days = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=36500,  # a hundred years; more cannot be subtracted from today
        label="Unused for (days)",
        help_text="Not used (or never used) for at least this many days.",
    )
    team = forms.UUIDField(required=False, widget=forms.HiddenInput)
    sort = forms.ChoiceField(
        required=False,
        choices=[
            ("-created_at", "Newest first"),
            ("created_at", "Oldest first"),
            ("expires_at", "Expiring first"),
            ("last_used_at", "Least recently used"),
        ],
    )

    def clean_team(self) -> Team | None:
        """The team whose keys are asked for (a link from its page): one that exists."""
        team_id = self.cleaned_data.get("team")
        if team_id is None:
            return None
        if (team := Team.objects.filter(pk=team_id).first()) is None:
            raise forms.ValidationError("No team has this id.")
        return team


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False, label="Actor email")
    action = forms.ChoiceField(
        choices=[("", "Any action"), *AuditEntry.Action.choices], required=False
    )
    key = forms.CharField(required=False, label="Client id")
    since = filter_date()
    until = filter_date()


class LeakPolicyForm(forms.Form):
    action = forms.ChoiceField(
        choices=[
            ("suspend", "Suspend the key (its owner rotates the secret and it works again)"),
            ("revoke", "Revoke the key (its owner makes a new one)"),
        ],
        widget=forms.RadioSelect,
        label="When a key's current secret is found exposed",
    )


class WebhookForm(forms.Form):
    url = forms.URLField(
        max_length=500,
        assume_scheme="https",
        label="URL",
        help_text="Where the portal POSTs each event: an https address your receiver serves.",
    )
    description = forms.CharField(
        max_length=200, required=False, help_text="What listens there, e.g. “secret store sync”."
    )
    events = forms.MultipleChoiceField(
        choices=[(event, f"{EVENT_LABELS[event]} ({event})") for event in EVENT_TYPES],
        widget=forms.CheckboxSelectMultiple,
        initial=list(EVENT_TYPES),
        required=False,
        help_text="Events about your keys that this endpoint receives.",
    )


# Overlaps offered when rotating a webhook signing secret, in hours.
OVERLAP_CHOICES = (
    (0, "None: the old secret stops signing now"),
    (1, "1 hour"),
    (24, "1 day"),
    (72, "3 days"),
    (168, "7 days"),
)


class WebhookSecretForm(forms.Form):
    overlap_hours = forms.TypedChoiceField(
        choices=OVERLAP_CHOICES,
        coerce=int,
        required=False,
        empty_value="0",
        initial=24,
        label="Keep signing with the old secret too for",
        help_text="Each message carries both signatures until then: update your receiver "
        "meanwhile.",
    )


class RegistrationTokenOrder(TypedDict):
    """A registration token asked for: `registration.create_token`'s keywords, checked."""

    api: Api
    name: str
    max_registrations: int
    expires_in_days: int
    key_lifetime_days: int
    permissions: list[str] | None
    allow_from: list[str]
    team: Team | None


class PermissionNames(forms.MultipleChoiceField):
    """Ticked permissions as "<api slug>/<name>", checked against the chosen API in the
    form's `clean`, which names the API's permissions when one is unknown."""

    def valid_value(self, value: str) -> bool:
        return True


class RegistrationTokenForm(forms.Form):
    """A customer's new registration token: the keys it registers, and its limits. The bounds
    are the operation's (`registration.create_token`), said here field by field."""

    name = forms.CharField(
        max_length=64,
        validators=[printable_validator],
        help_text="To tell your tokens apart, e.g. “CI pipeline, staging”. Each key it "
        "registers is named by the software that registers it.",
    )
    # Any API, so that a retired one is refused as the operation says it (WrongState: 409 in
    # the JSON API); the page offers the open ones only.
    api = forms.ModelChoiceField(
        queryset=Api.objects.all(),
        empty_label=None,
        label="API",
        to_field_name="slug",
        error_messages={"invalid_choice": "There is no API with this slug."},
    )
    max_registrations = forms.IntegerField(
        initial=1,
        label="How many keys it may register",
        help_text="1 to 1000. Each registration uses one, even if its key is revoked later.",
    )
    expires_in_days = forms.IntegerField(label="It registers keys for (days)")
    key_lifetime_days = forms.IntegerField(
        required=False,  # left out: the portal's default, within the API's limit
        label="Each key it registers is valid for (days)",
        help_text="From its registration; at most the API's limit.",
    )
    permissions = PermissionNames(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Permissions of the keys it registers",
        help_text="Of the API you chose; none ticked: the API's defaults. Software may ask "
        "for fewer when it registers, never for more.",
    )
    permissions_given = forms.BooleanField(required=False, initial=True, widget=forms.HiddenInput)
    networks = forms.CharField(
        max_length=2000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
        label="Registers from these networks only",
        help_text="Where software may register from: CIDR ranges or addresses, e.g. "
        "203.0.113.0/24, 2001:db8::/48; one per line or comma-separated. Empty: anywhere. "
        "(The keys it registers get tokens from anywhere; limit them on their pages.)",
    )

    def __init__(self, *args: Any, team: Team | None = None, **kwargs: Any) -> None:
        """`team`: the team the token is made for (the caller checked the person may)."""
        offered = Permission.objects.filter(api__retired_at__isnull=True).select_related("api")
        longest = settings.REGISTRATION_TOKEN_MAX_DAYS
        kwargs.setdefault(
            "initial",
            {
                "expires_in_days": min(30, longest),
                "key_lifetime_days": settings.DEFAULT_KEY_LIFETIME_DAYS,
                "permissions": [permission_choice(p) for p in offered if p.default],
            },
        )
        super().__init__(*args, **kwargs)
        self.team = team
        field = cast(forms.MultipleChoiceField, self.fields["permissions"])
        field.choices = [(permission_choice(p), _permission_label(p)) for p in offered]
        apis = cast("forms.ModelChoiceField[Api]", self.fields["api"])
        apis.choices = [(api.slug, api.name) for api in Api.objects.open()]
        self.fields["expires_in_days"].help_text = (
            f"1 to {longest}. After that it registers nothing; the keys it registered keep "
            "working until their own expiry."
        )

    def clean_max_registrations(self) -> int:
        count: int = self.cleaned_data["max_registrations"]
        if not 1 <= count <= 1000:
            raise forms.ValidationError("A registration token registers 1 to 1000 keys.")
        return count

    def clean_expires_in_days(self) -> int:
        days: int = self.cleaned_data["expires_in_days"]
        longest = settings.REGISTRATION_TOKEN_MAX_DAYS
        if not 1 <= days <= longest:
            raise forms.ValidationError(f"A registration token lives 1 to {longest} days.")
        return days

    def clean_networks(self) -> list[str]:
        return _ranges(self.cleaned_data["networks"])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        api, days = cleaned.get("api"), cleaned.get("key_lifetime_days")
        if api is not None and days is None and "key_lifetime_days" not in self.errors:
            days = min(settings.DEFAULT_KEY_LIFETIME_DAYS, api.max_key_lifetime_days)
            cleaned["key_lifetime_days"] = days
        if days is not None and days < 1:
            self.add_error("key_lifetime_days", "Each key is valid for at least 1 day.")
        elif api is not None and days is not None and days > api.max_key_lifetime_days:
            self.add_error(
                "key_lifetime_days",
                f"Keys for {api.name} can be valid for at most {api.max_key_lifetime_days} days.",
            )
        cleaned["chosen_permissions"] = self._chosen_permissions(cleaned)
        return cleaned

    def _chosen_permissions(self, cleaned: dict[str, Any]) -> list[str] | None:
        """The chosen API's permissions that were ticked; None: its defaults."""
        api = cleaned.get("api")
        if api is None or not cleaned.get("permissions_given"):
            return None
        prefix = f"{api.slug}/"
        ticked = cleaned.get("permissions") or ()
        names = [value.removeprefix(prefix) for value in ticked if value.startswith(prefix)]
        try:
            api.permissions_called(names)
        except UnknownPermission as unknown:
            self.add_error("permissions", str(unknown))
        return names or None

    def order(self) -> RegistrationTokenOrder:
        """The token asked for, once the form is valid."""
        data = self.cleaned_data
        return RegistrationTokenOrder(
            api=data["api"],
            name=data["name"],
            max_registrations=data["max_registrations"],
            expires_in_days=data["expires_in_days"],
            key_lifetime_days=data["key_lifetime_days"],
            permissions=data["chosen_permissions"],
            allow_from=data["networks"],
            team=self.team,
        )


class TeamForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        validators=[printable_validator],
        help_text="Your company or department, as your colleagues know it.",
    )


class SecondFactorRuleForm(forms.Form):
    requires_second_factor = forms.BooleanField(
        required=False,
        label="Require a second factor of every member",
        help_text="Members without a one-time password or a passkey in their Keycloak account "
        "can still see the team's keys and activity, but change nothing (keys, webhooks, "
        "registration tokens, the team) until they add one. You need one yourself to turn "
        "this on.",
    )


class InviteForm(forms.Form):
    email = forms.EmailField(help_text="They accept signed in with this address (verified).")
    role = forms.ChoiceField(
        choices=TeamRole.choices,
        initial=TeamRole.DEVELOPER,
        help_text="Viewer: sees the team's keys and activity. Developer: also makes and changes "
        "keys and webhooks. Owner: also members, invitations and settings.",
    )


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=TeamRole.choices)


class MoveKeyForm(forms.Form):
    """A person's: move a personal key into a team where they make keys."""

    team = forms.ModelChoiceField(queryset=Team.objects.none(), empty_label=None)

    def __init__(self, *args: Any, teams: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast("forms.ModelChoiceField[Team]", self.fields["team"]).queryset = teams


class AdminMoveForm(forms.Form):
    """An administrator's: give a key to another person, a team, or both (the key page and
    the JSON API). Valid, its data name the new holder: `owner`, an active account (None:
    the key's maker stays its owner), and `team` (None: a personal key)."""

    to_email = forms.EmailField(
        required=False,
        label="To the person (email)",
        help_text="Their personal key, or the team's key made by them if a team is given too.",
    )
    to_team = forms.CharField(
        required=False,
        max_length=100,
        label="To the team (its name or id)",
        help_text="A name several teams share needs the id (in the address of its admin page).",
    )
    reason = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        email, named = data.get("to_email"), (data.get("to_team") or "").strip()
        if not (email or named or self.has_error("to_email") or self.has_error("to_team")):
            self.add_error("to_email", "Say where to: a person's email, a team, or both.")
            return data
        data["owner"] = None
        if email:
            data["owner"] = User.objects.filter(email__iexact=email, is_active=True).first()
            if data["owner"] is None:
                self.add_error("to_email", f"No active portal account has the email {email}.")
        data["team"] = self._team(named) if named else None
        person, team = data["owner"], data["team"]
        if person and team and not team.memberships.filter(user=person).exists():
            self.add_error(
                "to_email",
                f"{person.email} is not a member of the team {team.name}: give a member of "
                "the team as the key's maker.",
            )
        return data

    def _team(self, named: str) -> Team | None:
        """The team of this id, or the one team of this name."""
        try:
            found = list(Team.objects.filter(pk=uuid.UUID(named)))
        except ValueError:
            found = list(Team.objects.filter(name__iexact=named)[:2])
        if len(found) == 1:
            return found[0]
        if found:
            self.add_error("to_team", f"Several teams are called {named}: give its id.")
        else:
            self.add_error("to_team", f"No team is called {named} or has this id.")
        return None


class AppointForm(forms.Form):
    email = forms.EmailField(label="Owner's email", help_text="A person with a portal account.")
    reason = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))


class RegistrationTokenSearchForm(forms.Form):
    """The admin's registration-token search (pages and API): the start of its maker's email,
    or part of its team's or its name; and its API. Django's fields refuse NUL, which the
    database would refuse with an error."""

    q = forms.CharField(required=False, max_length=254, label="Maker, team or name")
    api = forms.CharField(required=False, max_length=100, label="API")

    def filter(self, tokens: QuerySet[RegistrationToken]) -> QuerySet[RegistrationToken]:
        if q := self.cleaned_data["q"].strip():
            tokens = tokens.filter(
                Q(owner__email__istartswith=q) | Q(team__name__icontains=q) | Q(name__icontains=q)
            )
        if api := self.cleaned_data["api"]:
            tokens = tokens.filter(api__slug=api)
        return tokens


class TeamSearchForm(forms.Form):
    """The admin's team search (pages and API)."""

    q = forms.CharField(required=False, max_length=100, label="Name")
