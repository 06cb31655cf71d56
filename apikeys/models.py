"""The portal's records: users, the catalog of APIs, the keys issued for them, the audit trail."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, ClassVar, TypeVar

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import connection, models, transaction
from django.db.models import F, Q, prefetch_related_objects
from django.utils import timezone


class User(AbstractUser):
    """A portal user; `username` holds the Keycloak user's `sub`, which never changes."""

    # The time (epoch ms, Keycloak's) of the newest account event applied to this user: an
    # older one arriving late (pushed batches are not ordered) changes nothing.
    account_event_at = models.BigIntegerField(null=True, blank=True, editable=False)
    # The same for the `portal-admin` role: an older grant arriving after a newer removal
    # gives no rights back.
    role_event_at = models.BigIntegerField(null=True, blank=True, editable=False)

    @property
    def display_name(self) -> str:
        return self.get_full_name() or self.email or self.username

    def set_admin_role(self, *, granted: bool, how: str, at_ms: int | None = None) -> None:
        """Give or take admin rights (`is_staff`, the `portal-admin` role), audited if changed.

        `at_ms`: the time of the Keycloak event that says so; a change older than one applied
        already (events arrive out of order) changes nothing.
        """
        if self.is_staff == granted and not self._state.adding and at_ms is None:
            return  # the common case, with no write (on SQLite every write locks the database)
        with transaction.atomic():
            user = User.objects.select_for_update().get(pk=self.pk)
            if at_ms is not None:
                if user.role_event_at is not None and at_ms < user.role_event_at:
                    return
                user.role_event_at = at_ms
                user.save(update_fields=["role_event_at"])
            if user.is_staff == granted:
                return
            user.is_staff = granted
            user.save(update_fields=["is_staff"])
            action = AuditEntry.Action.ADMIN_GRANTED if granted else AuditEntry.Action.ADMIN_REMOVED
            reason = f"The portal-admin role was {'granted' if granted else 'removed'} {how}."
            AuditEntry.record(user, action, actor=None, reason=reason)


# An audience ends up in a protocol mapper's config, so it is held to a strict shape.
audience_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$",
    "Use letters, digits and . _ : / - only (a URL or a short name), at most 200 characters.",
)


_Model = TypeVar("_Model", bound=models.Model)


class ApiQuerySet(models.QuerySet["Api"]):
    def open(self) -> ApiQuerySet:
        """APIs that take new keys."""
        return self.filter(retired_at__isnull=True)

    def now_with_permissions(self, pk: int) -> Api:
        """The API as it is now, its permissions read with it: one query (two for an API
        without any), where `prefetch_related("permissions")` makes two. Issuing a key reads
        it so (`lifecycle._check_order`)."""
        these = self.filter(pk=pk)
        permissions = list(Permission.objects.select_related("api").filter(api__in=these))
        api = permissions[0].api if permissions else these.get()
        return as_prefetched(api, "permissions", permissions)


def as_prefetched(instance: _Model, relation: str, objects: list[Any]) -> _Model:
    """`instance` with `objects` as its `relation`, as `prefetch_related(relation)` would have
    read them, without the query."""
    read = getattr(instance, relation).all()
    read._result_cache = objects
    read._prefetch_done = True  # as Django sets it
    instance._prefetched_objects_cache = {relation: read}  # type: ignore[attr-defined]
    return instance


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
    # Whether every key of this API must be limited to network ranges.
    requires_networks = models.BooleanField(
        default=False, help_text="Keys are refused unless limited to network ranges."
    )
    # How long a customer may keep a rotated secret working beside the new one.
    max_rotation_grace_hours = models.PositiveIntegerField(
        default=168,
        validators=[MaxValueValidator(720)],
        help_text="Hours an old secret may keep working after a rotation: 0 to 720.",
    )
    # Whether the API's servers check each token's key against the portal's revocation feed
    # (the token validator's strict mode), so that revoking or suspending a key ends its
    # tokens already issued too, within seconds.
    checks_revocation = models.BooleanField(default=False)
    # The dormant-key policy for this API's keys, instead of DORMANT_KEY_DAYS and
    # DORMANT_SUSPEND_DAYS (apikeys/operations/dormancy.py); empty: the global settings.
    dormant_warn_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="Days unused before the owner is warned; empty for the portal's setting.",
    )
    dormant_suspend_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(3650)],
        help_text="Days unused before the key is suspended (0: never); empty for the "
        "portal's setting.",
    )
    # SHA-256 of the token the API's servers read its revocation feed with (shown once).
    feed_token_digest = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # A retired API takes no new keys; its live keys keep working until they end.
    retired_at = models.DateTimeField(null=True, blank=True)

    objects = ApiQuerySet.as_manager()

    # What an admin edits in the catalog (the form, and the audit entry of a change).
    EDITABLE_FIELDS = (
        "name",
        "slug",
        "audience",
        "description",
        "requires_approval",
        "requires_networks",
        "checks_revocation",
        "max_key_lifetime_days",
        "access_token_lifespan",
        "max_rotation_grace_hours",
        "dormant_warn_days",
        "dormant_suspend_days",
    )

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name

    @property
    def dormant_policy(self) -> tuple[int, int]:
        """(days unused before the owner is warned, before the key is suspended; 0: never):
        this API's, else DORMANT_KEY_DAYS and DORMANT_SUSPEND_DAYS
        (apikeys/operations/dormancy.py)."""
        warn = self.dormant_warn_days or settings.DORMANT_KEY_DAYS
        suspend = self.dormant_suspend_days
        return warn, settings.DORMANT_SUSPEND_DAYS if suspend is None else suspend

    @property
    def scope_name(self) -> str:
        """The Keycloak client scope that carries this API's audience."""
        return f"api-{self.slug}"

    def permissions_called(self, names: Iterable[str] | None) -> list[Permission]:
        """Its permissions called `names`; None: those it gives new keys by default. An
        unknown name is refused (UnknownPermission) with the ones there are."""
        offered = {p.name: p for p in self.permissions.all()}
        if names is None:
            return [p for p in offered.values() if p.default]
        wanted = {name.strip() for name in names if name.strip()}
        if unknown := sorted(wanted - offered.keys()):
            there = ", ".join(sorted(offered)) or "none"
            raise UnknownPermission(
                f"{self.name} has no permission {', '.join(unknown)}. Its permissions: {there}."
            )
        return [offered[name] for name in sorted(wanted)]


class UnknownPermission(ValueError):
    """A name that is not a permission of the API (the message lists the ones there are)."""


def printable_validator(value: str) -> None:
    if not value.isprintable():
        raise ValidationError("Use printable characters only (no tabs, line breaks or controls).")


# A permission's name: a resource and an action ("invoices:read"), lower case, no spaces. The
# colon keeps names apart from Keycloak's own scopes (openid, profile…) and the APIs' (api-…).
permission_name_validator = RegexValidator(
    r"^[a-z][a-z0-9_-]{0,30}(:[a-z][a-z0-9_-]{0,30}){1,2}\Z",
    "Use a resource and an action such as invoices:read: lower-case letters, digits, - and _, "
    "parts joined by a colon (two or three parts).",
)


class Permission(models.Model):
    """One thing a key of an API may do (`invoices:read`). Keycloak holds it as a client scope
    of the same name (apikeys/keycloak/desired.py), a default scope of the keys that hold it,
    so their tokens carry it in `scope`; the API's servers check it (`bearer_token_required`).
    """

    api = models.ForeignKey(Api, on_delete=models.PROTECT, related_name="permissions")
    # Also the client scope's name, so unique in the realm, and never changed.
    name = models.CharField(max_length=64, unique=True, validators=[permission_name_validator])
    description = models.CharField(max_length=200, validators=[printable_validator])
    # Granting it (to a new key or an existing one) waits for an administrator's approval.
    requires_approval = models.BooleanField(default=False)
    # New keys get it unless their maker leaves it out.
    default = models.BooleanField(default=True)
    # The client scope's id in Keycloak, known once it exists.
    scope_id = models.CharField(max_length=36, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    EDITABLE_FIELDS = ("description", "requires_approval", "default")

    class Meta:
        ordering = ("api", "name")

    def __str__(self) -> str:
        return self.name


class TeamRole(models.TextChoices):
    """What a member may do in a team (apikeys/access.py decides with it)."""

    # viewer: sees the team's keys, usage and activity; developer: also makes and changes its
    # keys and webhooks; owner: also its members, invitations, roles and settings.
    OWNER = "owner", "Owner"
    DEVELOPER = "developer", "Developer"
    VIEWER = "viewer", "Viewer"


# A role includes every role below it.
ROLE_RANK = {TeamRole.VIEWER: 0, TeamRole.DEVELOPER: 1, TeamRole.OWNER: 2}


class TeamQuerySet(models.QuerySet["Team"]):
    def for_admins(self, q: str = "") -> TeamQuerySet:
        """The administrators' team list (the pages and the API): those without an owner
        first, then by name; `q`: a part of the name."""
        found = self.filter(name__icontains=q) if q else self
        return found.order_by(F("ownerless_since").desc(nulls_last=True), "name", "id")


class Team(models.Model):
    """A company's space: its keys and webhooks belong to it, not to the member who made them."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, validators=[printable_validator])
    created_at = models.DateTimeField(auto_now_add=True)
    # The team's own quota of live keys; empty: MAX_LIVE_KEYS_PER_TEAM.
    max_live_keys = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(100_000)]
    )
    # Set when the team lost its last owner (their account deleted in Keycloak, or a team
    # rebuilt after a restore): administrators are asked to appoint one.
    ownerless_since = models.DateTimeField(null=True, blank=True)
    # Members change nothing (keys, webhooks, tokens, the team) without a second factor in
    # Keycloak (apikeys/access.py); they can still read.
    requires_second_factor = models.BooleanField(default=False)

    objects = TeamQuerySet.as_manager()

    class Meta:
        ordering = ("name", "id")

    def __str__(self) -> str:
        return self.name

    @property
    def key_quota(self) -> int:
        return self.max_live_keys or settings.MAX_LIVE_KEYS_PER_TEAM

    def owners(self) -> models.QuerySet[User]:
        """Its owners whose accounts are active: who is told about its keys."""
        return User.objects.filter(
            memberships__team=self, memberships__role=TeamRole.OWNER, is_active=True
        )


class Membership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=TeamRole.choices)
    joined_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("joined_at", "id")
        constraints = (
            models.UniqueConstraint(fields=["team", "user"], name="one_membership_per_team"),
        )

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"

    def allows(self, role: str) -> bool:
        """Whether this member's role includes `role`."""
        return ROLE_RANK[TeamRole(self.role)] >= ROLE_RANK[TeamRole(role)]


class Invitation(models.Model):
    """An invitation by email to join a team: single use, until it expires or is revoked.

    The link's token is shown in the mail only; the portal keeps its SHA-256.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=TeamRole.choices)
    token_digest = models.CharField(max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "id")

    def __str__(self) -> str:
        return f"{self.email} to {self.team} ({self.state})"

    @property
    def state(self) -> str:
        if self.accepted_at:
            return "accepted"
        if self.revoked_at:
            return "revoked"
        return "expired" if self.expires_at <= timezone.now() else "pending"


class KeyStatus(models.TextChoices):
    # Stored as "provisioning" (its first name), so existing records keep their meaning.
    UNFINISHED = "provisioning", "Unfinished"
    PENDING = "pending", "Awaiting approval"
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    REVOKED = "revoked", "Revoked"
    EXPIRED = "expired", "Expired"
    REJECTED = "rejected", "Rejected"
    # A restrictive decision recorded before Keycloak is told, so that whatever fails next
    # converges to it (the operation's retry, or reconcile), never back to a working key.
    REVOKING = "revoking", "Being revoked"
    SUSPENDING = "suspending", "Being suspended"
    REJECTING = "rejecting", "Being rejected"


# Keys in these states have, or may have, a client in Keycloak (being made, or being ended),
# count against the quota, and are listed among an owner's live keys.
LIVE_STATUSES = (
    KeyStatus.UNFINISHED,
    KeyStatus.PENDING,
    KeyStatus.ACTIVE,
    KeyStatus.SUSPENDED,
    KeyStatus.REVOKING,
    KeyStatus.SUSPENDING,
    KeyStatus.REJECTING,
)
# Keys whose client Keycloak holds and that have not ended.
_ISSUED = (KeyStatus.PENDING, KeyStatus.ACTIVE, KeyStatus.SUSPENDED)
# The restrictive decision each in-between status carries out.
INTENTS = {
    KeyStatus.REVOKING: "revoke",
    KeyStatus.SUSPENDING: "suspend",
    KeyStatus.REJECTING: "reject",
}
# Which status allows which action on a key: the one place this is written. The operations
# (apikeys/operations/lifecycle.py), the jobs, reconcile and the templates (`key.can_rotate`) ask
# it. A recorded decision may always be carried out again (its retry); nothing else may start.
ACTIONS_ALLOWED: dict[str, tuple[KeyStatus, ...]] = {
    "finish": (KeyStatus.UNFINISHED,),
    "discard": (KeyStatus.UNFINISHED,),
    "approve": (KeyStatus.PENDING,),
    "reject": (KeyStatus.PENDING, KeyStatus.REJECTING),
    "suspend": (KeyStatus.ACTIVE, KeyStatus.SUSPENDING),
    "hold": (KeyStatus.SUSPENDED,),  # an administrator's suspension on top of another
    "reinstate": (KeyStatus.SUSPENDED,),
    "rotate": _ISSUED,
    "end_grace": _ISSUED,
    "change_public_keys": _ISSUED,
    "change_networks": _ISSUED,
    "change_permissions": _ISSUED,
    "change_dpop": _ISSUED,
    "revoke": (*_ISSUED, KeyStatus.REVOKING, KeyStatus.SUSPENDING),
    "expire": _ISSUED,
}


class WrongState(Exception):
    """The key is not in a state that allows this action (someone else acted first)."""


def this_instance() -> str:
    return str(settings.PORTAL_INSTANCE_ID)


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def live(self) -> ApiKeyQuerySet:
        return self.filter(status__in=LIVE_STATUSES)

    def ended(self) -> ApiKeyQuerySet:
        return self.exclude(status__in=LIVE_STATUSES)

    def allowing(self, action: str) -> ApiKeyQuerySet:
        """This deployment's keys whose status allows `action` (see ACTIONS_ALLOWED)."""
        return self.filter(status__in=ACTIONS_ALLOWED[action], instance=this_instance())

    def due_to_expire(self, now: datetime) -> ApiKeyQuerySet:
        return self.allowing("expire").filter(expires_at__lte=now)

    def held_by(self, owner: User, team: Team | None) -> ApiKeyQuerySet:
        """The keys of one space: the team's, or `owner`'s personal keys (not their team keys)."""
        if team is not None:
            return self.filter(team=team)
        return self.filter(owner=owner, team__isnull=True)

    def made_by_request(self, request_id: uuid.UUID | None) -> ApiKey | None:
        """The key an earlier submission of the same create request made, if any."""
        return self.filter(request_id=request_id).first() if request_id else None

    def locked_as_known(self, key: ApiKey) -> ApiKey:
        """`key` under its row lock, with its permissions: the object given when its row is
        unchanged since it was read (one light query, no objects built), else read again
        (locked, then its permissions). The objects it holds (its API, owner, team, issuer)
        are kept as read: the caller read them just now (`lifecycle.reserve_key`)."""
        if key.knows_permissions():
            now = self.select_for_update(of=("self",)).filter(pk=key.pk).values().get()
            if now == {f.attname: getattr(key, f.attname) for f in key._meta.concrete_fields}:
                return key
        key = self.locked(key.pk)
        prefetch_related_objects([key], "permissions")
        return key

    def locked(self, pk: uuid.UUID) -> ApiKey:
        """The key as it is now, its row locked until the transaction ends: its row only, not
        its API's, owner's or team's read with it (locking those would stop every insert that
        names them, another key of the API, an audit entry of the team, and deadlock with the
        quota's locks of owner and team)."""
        return (
            self.select_for_update(of=("self",)).select_related("api", "owner", "team").get(pk=pk)
        )

    def search(self, filters: dict[str, Any]) -> ApiKeyQuerySet:
        """Every key matching the admin key list's filters; each uses an index where it can."""
        keys = self.select_related("owner", "api", "team").prefetch_related("permissions")
        if q := (filters.get("q") or "").strip():
            if q.startswith(ApiKey.CLIENT_ID_PREFIX):
                keys = keys.filter(client_id__startswith=q)
            else:
                # Owners are looked up first, and their keys found through the owner index. A
                # join or subquery here makes PostgreSQL walk the whole key table in page order.
                owners = list(
                    User.objects.filter(email__istartswith=q).values_list("pk", flat=True)[:1000]
                )
                if "@" in q:
                    keys = keys.filter(owner__in=owners)
                else:  # names through a trigram index on PostgreSQL (migration 0004)
                    keys = keys.filter(Q(name__icontains=q) | Q(owner__in=owners))
        if api := filters.get("api"):
            keys = keys.filter(api=api)
        if team := filters.get("team"):
            keys = keys.filter(team=team)
        if permission := filters.get("permission"):  # a Permission, or its name
            keys = keys.filter(permissions__name=getattr(permission, "name", permission))
        if status := filters.get("status"):
            keys = keys.filter(status=status)
        if day := filters.get("created_after"):
            keys = keys.filter(created_at__gte=start_of(day))
        if day := filters.get("created_before"):
            keys = keys.filter(created_at__lt=start_of(day) + timedelta(days=1))
        if day := filters.get("expires_before"):
            keys = keys.filter(expires_at__lt=start_of(day) + timedelta(days=1))
        if days := filters.get("unused_days"):
            since = timezone.now() - timedelta(days=days)
            keys = keys.filter(
                Q(last_used_at__lt=since) | Q(last_used_at__isnull=True, created_at__lt=since)
            )
        return keys.order_by(filters.get("sort") or "-created_at", "pk")

    def standing(self, client_id: str) -> KeyStanding | None:
        """What the portal knows of the key behind a token, in one indexed query.

        The sample API shows it (remembered a minute per key); resource servers in strict
        mode read their revocation feed instead. Django takes longer to
        compile the equivalent ORM query (0.7 ms) than PostgreSQL takes to answer this SQL
        (0.2 ms), so it is written out.
        """
        with connection.cursor() as cursor:
            cursor.execute(_STANDING_SQL, [client_id])
            row = cursor.fetchone()
        if row is None:
            return None
        status, expires_at, name, api_name, audience, first, last, email, username, active = row
        owner = User(first_name=first, last_name=last, email=email, username=username)
        return KeyStanding(
            client_id=client_id,
            status=status,
            expires_at=_aware(expires_at),
            name=name,
            api_name=api_name,
            api_audience=audience,
            owner_name=owner.display_name,
            owner_active=bool(active),
        )


def _aware(value: datetime) -> datetime:
    """A datetime from raw SQL: psycopg gives it aware, SQLite naive (stored as UTC)."""
    return value if timezone.is_aware(value) else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class KeyStanding:
    client_id: str
    status: str
    expires_at: datetime
    name: str
    api_name: str
    api_audience: str
    owner_name: str
    owner_active: bool


class Credential(models.TextChoices):
    """How a key's application proves itself to Keycloak's token endpoint."""

    SECRET = "secret", "Client secret"
    # The application signs a short-lived assertion with a private key only it holds;
    # Keycloak checks it against the public keys the owner gave (client-jwt).
    SIGNED_JWT = "private_key_jwt", "Private key (signed JWT)"
    # The application presents a token its platform issued it (a Kubernetes service account's,
    # a CI job's): Keycloak checks it against a trusted issuer's keys (federated-jwt). The key
    # has nothing to leak.
    WORKLOAD = "workload", "Workload identity"


class WorkloadIssuer(models.Model):
    """An issuer of workload identity tokens the portal trusts (an administrator's choice): a
    Kubernetes cluster's service-account issuer, a CI system's OIDC issuer. Keycloak holds it
    as an OpenID Connect identity provider that accepts client assertions and nothing else;
    keys bound to it authenticate with its tokens for their subject."""

    # Its identity provider's alias in Keycloak (ALIAS_PREFIX + slug).
    ALIAS_PREFIX = "workload-"
    # The longest token age an administrator may give, in seconds (`max_token_age`).
    TOKEN_AGES = (60, 86400)

    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100, validators=[printable_validator])
    # The tokens' `iss`, exactly; Keycloak finds the issuer by it.
    issuer = models.URLField(max_length=500, unique=True)
    jwks_url = models.URLField(max_length=500)
    # Whether one token may be presented again while it is young enough (a Kubernetes
    # projected service-account token is read from its file for many requests); otherwise
    # each token request needs a new one.
    allows_reuse = models.BooleanField(default=False)
    # Keycloak takes a token at most this long after its `iat` (its default: 300 s, measured
    # on 26.7.3). The kubelet renews a projected token at 80% of its life: one of
    # expirationSeconds 3600 is read up to 2,880 s old, so a Kubernetes issuer needs 3600.
    max_token_age = models.PositiveIntegerField(
        default=300,
        validators=[MinValueValidator(TOKEN_AGES[0]), MaxValueValidator(TOKEN_AGES[1])],
    )
    # Keys bound to it wait for an administrator's approval, who sees the subject: anyone may
    # name any subject of a shared issuer, and a workload holds one live key (first come).
    keys_need_approval = models.BooleanField(default=True)
    # What subjects look like, shown to customers (e.g. system:serviceaccount:<ns>:<name>).
    subject_hint = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name

    @property
    def alias(self) -> str:
        return f"{self.ALIAS_PREFIX}{self.slug}"


class _Allows:
    """`key.can_<action>`: whether the key's status allows the action (ACTIONS_ALLOWED)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.action = name.removeprefix("can_")

    def __get__(self, key: ApiKey, owner: type | None = None) -> bool:
        return key.allows(self.action)


class ApiKey(models.Model):
    """An API key: the portal's record of one Keycloak client with a service account.

    The client secret is never stored here; Keycloak holds it and the customer saw it once.
    """

    Status = KeyStatus
    Credential = Credential
    # Every key's client in Keycloak has a clientId with this prefix, so it can be listed.
    CLIENT_ID_PREFIX = "apikey-"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Who made it; for a personal key (no team), also who holds it. Its index is the one by
    # owner and time (Meta.indexes): a second, on the owner alone, would only slow each write.
    owner = models.ForeignKey(
        User, on_delete=models.PROTECT, related_name="api_keys", db_index=False
    )
    # The team that holds it, if any: its members reach it by their roles (apikeys/access.py),
    # and it keeps working whatever becomes of the member who made it. Indexed with the time.
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.PROTECT, related_name="keys", db_index=False
    )
    api = models.ForeignKey(Api, on_delete=models.PROTECT, related_name="keys")
    name = models.CharField(max_length=64, validators=[printable_validator])
    description = models.CharField(max_length=500, blank=True)
    client_id = models.CharField(max_length=64, unique=True, editable=False)
    # The client's UUID in Keycloak, known once the client exists.
    keycloak_id = models.CharField(max_length=36, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UNFINISHED)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    credential = models.CharField(max_length=16, choices=Credential.choices, default="secret")
    # A private_key_jwt key's public keys: these rows (`public_keys`), or this URL of the
    # partner's own JWKS, which Keycloak reads.
    jwks_url = models.URLField(max_length=500, blank=True)
    secret_rotated_at = models.DateTimeField(null=True, blank=True)
    # After a rotation with a grace period, the previous secret gets tokens until then.
    previous_secret_until = models.DateTimeField(null=True, blank=True)
    # When the current secret was reported found exposed (apikeys/operations/leaks.py). Until the
    # owner rotates it, nobody can approve or reinstate the key, nor keep the secret in a grace.
    secret_exposed_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # Why the customer needs the key; required for APIs that need approval.
    justification = models.TextField(blank=True)
    # The last decision about the key (rejection, suspension, revocation), shown to the owner.
    status_reason = models.TextField(blank=True)
    # The last successful client-credentials grant, from Keycloak's CLIENT_LOGIN events.
    last_used_at = models.DateTimeField(null=True, blank=True)
    # The create form's one-time token: a form submitted twice makes one key.
    request_id = models.UUIDField(null=True, blank=True, editable=False)
    # The rotate form's one-time token of the last rotation: a form sent again (a reload of
    # the page that showed the new secret) does not rotate a second time.
    rotation_request_id = models.UUIDField(null=True, blank=True, editable=False)
    # Set by reconcile when the key's client has vanished from Keycloak (not by the portal).
    client_missing_since = models.DateTimeField(null=True, blank=True)
    # The deployment that made it (settings.PORTAL_INSTANCE_ID): a copy of another
    # deployment's database on the same realm changes none of that one's clients.
    instance = models.CharField(max_length=40, default=this_instance, editable=False)
    # Set when reconcile rebuilt this record from the key's client after the portal's
    # database went back in time (a restore); cleared when the owner names the key.
    recovered_at = models.DateTimeField(null=True, blank=True)
    # The last reinstatement: a new quiet spell for the dormant-key policy starts there.
    reinstated_at = models.DateTimeField(null=True, blank=True)
    # The network ranges (normalised CIDR) its tokens may be requested from; empty: anywhere.
    # Keycloak enforces them (apikeys/credentials/networks.py).
    networks = models.JSONField(default=list, blank=True)
    # What its tokens may do at its API: these permissions, in their `scope` claim.
    permissions = models.ManyToManyField(Permission, blank=True, related_name="keys")
    # Set when software registered it with a registration token (RFC 7591), with the SHA-256
    # of the registration access token that reads, updates and deletes it (RFC 7592).
    registered_with = models.ForeignKey(
        "RegistrationToken",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="keys",
    )
    registration_access_digest = models.CharField(max_length=64, blank=True, editable=False)
    # Its tokens are bound to a key its application holds (DPoP, RFC 9449): Keycloak gives
    # tokens only with a proof, and APIs take them only with a fresh one.
    requires_dpop = models.BooleanField(default=False)
    # A workload identity key's trusted issuer and the subject its tokens must name.
    # Removing an issuer needs its keys ended first; ended keys then lose the link.
    workload_issuer = models.ForeignKey(
        WorkloadIssuer, null=True, blank=True, on_delete=models.SET_NULL, related_name="keys"
    )
    workload_subject = models.CharField(max_length=255, blank=True)
    # What the registering software said of itself (RFC 7591 metadata: contacts, its
    # token_endpoint_auth_method), given back when it reads its registration.
    software_metadata = models.JSONField(default=dict, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at",)
        constraints = (
            models.UniqueConstraint(
                fields=["owner", "name"],
                condition=models.Q(status__in=LIVE_STATUSES, team__isnull=True),
                name="unique_live_personal_key_name",
            ),
            models.UniqueConstraint(
                fields=["team", "name"],
                condition=models.Q(status__in=LIVE_STATUSES, team__isnull=False),
                name="unique_live_team_key_name",
            ),
            models.UniqueConstraint(
                fields=["owner", "request_id"], name="one_key_per_create_request"
            ),
            # Keycloak finds a workload's client by its issuer and subject alone.
            models.UniqueConstraint(
                fields=["workload_issuer", "workload_subject"],
                condition=models.Q(status__in=LIVE_STATUSES, workload_issuer__isnull=False),
                name="one_live_key_per_workload",
            ),
        )
        indexes = (
            models.Index(fields=["status", "expires_at"]),
            models.Index(fields=["-created_at"], name="apikey_created_idx"),
            models.Index(fields=["expires_at"], name="apikey_expires_idx"),
            models.Index(fields=["last_used_at"], name="apikey_last_used_idx"),
            models.Index(fields=["name"], name="apikey_name_idx"),
            # A space's keys, newest first (a team's page, a person's list, the admin list's
            # team filter): read in order from here, whatever the space's size. Without it
            # PostgreSQL may walk the whole table newest first to fill a page of a small team.
            models.Index(fields=["team", "-created_at"], name="apikey_team_created_idx"),
            models.Index(fields=["owner", "-created_at"], name="apikey_owner_created_idx"),
        )

    def __str__(self) -> str:
        return f"{self.name} ({self.client_id})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.client_id:
            # Fixed before Keycloak hears of the key, so a retried create meets the same
            # clientId (and a 409) instead of making a second client.
            self.client_id = f"{self.CLIENT_ID_PREFIX}{self.id.hex}"
        super().save(*args, **kwargs)

    def set_status(self, status: KeyStatus, *, reason: str | None = None, **also: Any) -> None:
        """Change the status (and its reason, and the other fields given), saving just those."""
        self.status = status
        changed = ["status"]
        if reason is not None:
            self.status_reason = reason
            changed.append("status_reason")
        for name, value in also.items():
            setattr(self, name, value)
            changed.append(name)
        self.save(update_fields=changed)

    def allows(self, action: str) -> bool:
        return self.status in ACTIONS_ALLOWED[action] and self.is_own

    @property
    def holder_active(self) -> bool:
        """Whoever holds the key is still there: a team always is; a person while their
        account is active in Keycloak. A team key outlives the member who made it."""
        return self.team_id is not None or self.owner.is_active

    @property
    def space(self) -> str:
        """Where the key is, in words: "the team Acme" or "personal"."""
        return f"the team {self.team.name}" if self.team is not None else "personal"

    def siblings(self) -> ApiKeyQuerySet:
        """The keys of the same space (its team's, or its owner's personal keys)."""
        return ApiKey.objects.held_by(self.owner, self.team).exclude(pk=self.pk)

    @property
    def is_own(self) -> bool:
        """Made by this deployment: a record copied from another's database is not."""
        return self.instance == this_instance()

    def knowing_permissions(self, given: list[Permission]) -> ApiKey:
        """The key, its permissions read as `given` (the ones just given it), as
        `prefetch_related("permissions")` would read them, without the query."""
        return as_prefetched(self, "permissions", list(given))

    def knows_permissions(self) -> bool:
        return "permissions" in getattr(self, "_prefetched_objects_cache", {})

    def require(self, action: str) -> None:
        """Raise WrongState unless the key's status allows `action`."""
        if not self.is_own:
            raise WrongState(
                f"{self.client_id} was made by the portal deployment {self.instance!r}; "
                f"this one ({this_instance()!r}) does not change it."
            )
        if not self.allows(action):
            raise WrongState(f"{self.client_id} is {self.get_status_display().lower()}.")

    # For templates: {% if key.can_rotate %}
    can_finish = _Allows()
    can_discard = _Allows()
    can_approve = _Allows()
    can_reject = _Allows()
    can_suspend = _Allows()
    can_hold = _Allows()
    can_reinstate = _Allows()
    can_rotate = _Allows()
    can_revoke = _Allows()
    can_change_public_keys = _Allows()
    can_change_networks = _Allows()
    can_change_permissions = _Allows()
    can_change_dpop = _Allows()

    @property
    def needs_approval(self) -> bool:
        """An administrator approves it before it works: its API, one of its permissions, or
        its workload issuer says so."""
        return (
            self.api.requires_approval
            or any(p.requires_approval for p in self.permissions.all())
            or (self.workload_issuer is not None and self.workload_issuer.keys_need_approval)
        )

    @property
    def permission_names(self) -> list[str]:
        return sorted(p.name for p in self.permissions.all())

    @property
    def uses_secret(self) -> bool:
        return self.credential == Credential.SECRET

    @property
    def uses_workload(self) -> bool:
        return self.credential == Credential.WORKLOAD

    def previous_secret_works(self, now: datetime) -> bool:
        """Whether the secret before the last rotation still gets tokens (its grace)."""
        return self.previous_secret_until is not None and self.previous_secret_until > now

    @property
    def in_grace(self) -> bool:
        return self.previous_secret_works(timezone.now())

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES

    @property
    def is_unfinished(self) -> bool:
        return self.status == self.Status.UNFINISHED

    @property
    def quiet_since(self) -> datetime:
        """When the key's quiet spell began: its last use, creation or reinstatement."""
        return max(t for t in (self.last_used_at, self.created_at, self.reinstated_at) if t)

    def unused_for_days(self, now: datetime) -> int | None:
        """Days the key has been quiet (apikeys/operations/dormancy.py), once past its warning
        days."""
        if self.status != self.Status.ACTIVE:
            return None
        days = (now - self.quiet_since).days
        return days if days >= self.api.dormant_policy[0] else None

    @property
    def dormant_days(self) -> int | None:
        return self.unused_for_days(timezone.now())

    @property
    def expires_soon(self) -> bool:
        return self.is_live and self.expires_at - timezone.now() < timedelta(days=7)

    @property
    def expires_in(self) -> str:
        """How long the key has left, in the largest whole unit: "in 89 days"."""
        left = self.expires_at - timezone.now()
        if left <= timedelta(0):
            return "expired, being disabled"
        if left >= timedelta(days=2):
            return f"in {left.days} days"
        hours = int(left.total_seconds() // 3600)
        if hours >= 2:
            return f"in {hours} hours"
        return f"in {max(int(left.total_seconds() // 60), 1)} minutes"


_STANDING_SQL = """
    SELECT k.status, k.expires_at, k.name, a.name, a.audience,
           u.first_name, u.last_name, u.email, u.username,
           (u.is_active OR k.team_id IS NOT NULL)
    FROM apikeys_apikey k
    JOIN apikeys_api a ON a.id = k.api_id
    JOIN apikeys_user u ON u.id = k.owner_id
    WHERE k.client_id = %s
"""


# Set by the JSON API for its requests (apikeys/api/middleware.py): entries say "via api".
AUDIT_VIA: ContextVar[str] = ContextVar("audit_via", default="web")
# Set for requests to the admin area and the admin API (apikeys/api/middleware.py): an
# administrator acting there acts as one, even on a team they are in (their entries then
# show the team "an administrator", with no address).
AUDIT_AS_ADMIN: ContextVar[bool] = ContextVar("audit_as_admin", default=False)


class RegistrationToken(models.Model):
    """A registration token (RFC 7591's initial access token): software holding it registers
    keys for one API at the portal's registration endpoint, within its limits. Only the
    SHA-256 of the token is kept; it was shown once."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Who made it; the keys it registers are theirs (personal), or their team's.
    owner = models.ForeignKey(User, on_delete=models.PROTECT, related_name="registration_tokens")
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.PROTECT, related_name="registration_tokens"
    )
    api = models.ForeignKey(Api, on_delete=models.PROTECT, related_name="registration_tokens")
    name = models.CharField(max_length=64, validators=[printable_validator])
    # What the keys it registers get: these permissions (none: the API's defaults).
    permissions = models.ManyToManyField(Permission, blank=True, related_name="+")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    max_registrations = models.PositiveIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(1000)]
    )
    registrations = models.PositiveIntegerField(default=0)
    # Where registrations may come from (normalised CIDR); empty: anywhere.
    networks = models.JSONField(default=list, blank=True)
    key_lifetime_days = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.name} ({self.api.name})"

    @property
    def uses_left(self) -> int:
        return max(self.max_registrations - self.registrations, 0)

    def refusal(self, now: datetime) -> str | None:
        """Why the token registers nothing now, or None if it may."""
        if self.revoked_at is not None:
            return "The registration token was revoked."
        if self.expires_at <= now:
            return "The registration token has expired."
        if not self.uses_left:
            return f"The registration token has made all of its {self.max_registrations} keys."
        if self.api.retired_at is not None:
            return f"{self.api.name} is retired and takes no new keys."
        return None


class PermissionRequest(models.Model):
    """A key's request for permissions that need an administrator's approval. The key keeps
    working with what it has until an administrator decides; one open request per key."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="permission_requests")
    permissions = models.ManyToManyField(Permission, related_name="+")
    justification = models.TextField()
    requested_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved = models.BooleanField(null=True)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ("created_at",)
        constraints = (
            models.UniqueConstraint(
                fields=["key"],
                condition=models.Q(decided_at__isnull=True),
                name="one_open_permission_request_per_key",
            ),
        )

    def __str__(self) -> str:
        return f"{', '.join(self.names)} for {self.key}"

    @property
    def names(self) -> list[str]:
        return sorted(p.name for p in self.permissions.all())


class AuditEntryQuerySet(models.QuerySet["AuditEntry"]):
    def of_owner(self, owner: User) -> AuditEntryQuerySet:
        """What a customer may read: the entries of their personal keys and of their account
        (their team keys' entries are the team's)."""
        return self.filter(
            Q(key__owner=owner, key__team__isnull=True) | Q(about_user=owner, team__isnull=True)
        )

    def of_team(self, team: Team) -> AuditEntryQuerySet:
        """What a team's members may read: its keys' entries and its own."""
        return self.filter(team=team)

    def matching(self, filters: dict[str, Any]) -> AuditEntryQuerySet:
        """The entries matching the audit trail's filters."""
        entries = self.select_related("key", "api")
        if actor := filters.get("actor"):
            entries = entries.filter(actor_email__istartswith=actor)
        if action := filters.get("action"):
            entries = entries.filter(action=action)
        if client_id := filters.get("key"):
            entries = entries.filter(client_id__startswith=client_id)
        if day := filters.get("since"):
            entries = entries.filter(at__gte=start_of(day))
        if day := filters.get("until"):
            entries = entries.filter(at__lt=start_of(day) + timedelta(days=1))
        return entries


def start_of(day: date) -> datetime:
    """Midnight at the start of `day`, in the portal's time zone (UTC)."""
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


class AuditEntry(models.Model):
    """One state change of a key, or one admin action: append-only."""

    class Action(models.TextChoices):
        CREATED = "created", "Created"
        ROTATED = "rotated", "Secret rotated"
        REVOKED = "revoked", "Revoked"
        EXPIRED = "expired", "Expired"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        SUSPENDED = "suspended", "Suspended"
        REINSTATED = "reinstated", "Reinstated"
        DISCARDED = "discarded", "Discarded unfinished"
        REPAIRED = "repaired", "Repaired in Keycloak"
        API_CREATED = "api_created", "API added"
        API_CHANGED = "api_changed", "API changed"
        API_RETIRED = "api_retired", "API retired"
        USER_DEACTIVATED = "user_off", "Account deactivated"
        USER_REACTIVATED = "user_on", "Account reactivated"
        ADMIN_GRANTED = "admin_on", "Admin role granted"
        ADMIN_REMOVED = "admin_off", "Admin role removed"
        GRACE_ENDED = "grace_ended", "Previous secret ended"
        NETWORKS_CHANGED = "networks", "Networks changed"
        PUBLIC_KEY_ADDED = "pubkey_added", "Public key added"
        PUBLIC_KEY_REMOVED = "pubkey_removed", "Public key removed"
        JWKS_REFRESHED = "jwks_refreshed", "Public keys re-read"
        LEAK_REPORTED = "leak_reported", "Secret found exposed"
        SETTING_CHANGED = "setting", "Setting changed"
        WEBHOOK_ADDED = "webhook_added", "Webhook endpoint added"
        WEBHOOK_CHANGED = "webhook_changed", "Webhook endpoint changed"
        WEBHOOK_REMOVED = "webhook_removed", "Webhook endpoint removed"
        RECOVERED = "recovered", "Record rebuilt from Keycloak"
        QUARANTINED = "quarantined", "Client quarantined"
        UNQUARANTINED = "unquarantined", "Client deleted after quarantine"
        RENAMED = "renamed", "Renamed"
        DORMANT_WARNED = "dormant_warned", "Owner warned: unused"
        TEAM_CREATED = "team_created", "Team created"
        TEAM_CHANGED = "team_changed", "Team settings changed"
        INVITED = "invited", "Invited to the team"
        INVITATION_REVOKED = "invite_revoked", "Invitation revoked"
        MEMBER_JOINED = "member_joined", "Joined the team"
        MEMBER_REMOVED = "member_removed", "Left the team"
        ROLE_CHANGED = "role_changed", "Role changed"
        OWNER_APPOINTED = "owner_appointed", "Owner appointed"
        TEAM_OWNERLESS = "team_ownerless", "Team lost its last owner"
        TRANSFERRED = "transferred", "Key moved"
        PERMISSIONS_CHANGED = "permissions", "Permissions changed"
        PERMISSIONS_REQUESTED = "perm_requested", "Permissions requested"
        PERMISSIONS_REFUSED = "perm_refused", "Permissions refused"
        PERMISSIONS_WITHDRAWN = "perm_withdrawn", "Permission request withdrawn"
        PERMISSION_DEFINED = "perm_defined", "Permission added to the API"
        PERMISSION_CHANGED = "perm_changed", "Permission changed"
        REGISTRATION_TOKEN_CREATED = "regtok_created", "Registration token created"
        REGISTRATION_TOKEN_REVOKED = "regtok_revoked", "Registration token revoked"
        REGISTERED = "registered", "Registered by software"
        REGISTRATION_UPDATED = "reg_updated", "Registration updated by software"
        DPOP_CHANGED = "dpop", "Proof of possession changed"
        ISSUER_ADDED = "issuer_added", "Workload issuer trusted"
        ISSUER_REMOVED = "issuer_removed", "Workload issuer no longer trusted"
        STEPPED_UP = "stepped_up", "Stepped up (signed in again)"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    # None when the portal acted by itself (expiry from cron, reconcile).
    actor = models.ForeignKey(User, null=True, on_delete=models.PROTECT, related_name="+")
    actor_email = models.CharField(max_length=254, blank=True)
    action = models.CharField(max_length=16, choices=Action.choices)
    key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_entries"
    )
    client_id = models.CharField(max_length=64, blank=True)
    api = models.ForeignKey(Api, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    reason = models.TextField(blank=True)
    # Where the action came from: the pages ("web") or the JSON API ("api").
    via = models.CharField(max_length=8, default="web")
    # The user an entry is about when no key links it: their account, or their key that is
    # gone (a discarded unfinished key). Owners see these entries among their activity.
    about_user = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The team an entry is about: its keys' entries, and its members and invitations.
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_entries"
    )
    # The actor's role in that team when they acted; HOLDER for a personal key's holder
    # acting on it; empty for anyone else (an administrator): members see each other's
    # addresses, never an administrator's.
    actor_role = models.CharField(max_length=16, blank=True)

    HOLDER = "holder"

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ("-at", "-id")
        verbose_name_plural = "audit entries"
        indexes = (models.Index(fields=["action", "-at"], name="audit_action_idx"),)

    def __str__(self) -> str:
        who = self.actor_email or "the portal"
        return f"{self.at:%Y-%m-%d %H:%M} {who} {self.action} {self.client_id or self.api_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ValueError("Audit entries are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise ValueError("Audit entries are append-only.")

    def actor_as_seen_by(self, owner: User | None) -> str:
        """Who acted. To a key's owner (`owner`) or a team's members: themselves and (for a
        team's key still the team's) the team's members by their email; the key's holder
        before it was given to them as "its holder then", a member of the team that held it
        as "a member of its team then"; anyone else as "an administrator". Entries made
        before the portal recorded holders say "an administrator" for both."""
        if self.actor_id is None:
            return "Keycloak" if self.action in LEARNT_FROM_KEYCLOAK else "the portal"
        if owner is None or self.actor_id == owner.pk or self._by_a_member:
            return self.actor_email
        if self.actor_role == self.HOLDER:  # a personal key since given to someone else
            return "its holder then"
        if self.actor_role:  # a key since moved out of the team it was made in
            return "a member of its team then"
        return "an administrator"

    @property
    def _by_a_member(self) -> bool:
        """Done by a member of the team, about the team or a key still the team's (a key
        moved out of the team does not show its new holder who its old team was)."""
        if self.actor_role in ("", self.HOLDER):
            return False
        return self.key_id is None or (self.key is not None and self.key.team_id == self.team_id)

    def key_name_as_seen_by(self, owner: User | None) -> str:
        """The key's name as it is now. To a customer (`owner`), only while the key is held
        where the entry was made: a key moved out of a team may have been renamed by its new
        holder, and the old team reads on by its client id."""
        if self.key is None:
            return ""
        if owner is None or self.key.team_id == self.team_id:
            return self.key.name
        return ""

    def address_as_seen_by(self, owner: User | None) -> str:
        """Where from. An owner sees their own addresses only, never an administrator's; a
        team's members see each other's."""
        if owner is None or self.actor_id == owner.pk or self._by_a_member:
            return self.ip_address or ""
        return ""

    @classmethod
    def record(
        cls,
        subject: ApiKey | Api | User | Team | None,
        action: str,
        *,
        actor: User | None,
        ip_address: str | None = None,
        reason: str = "",
        key_going: bool = False,
        client_id: str = "",
        team: Team | None = None,
    ) -> AuditEntry:
        """Append what `actor` did to a key, a catalog API or a user's account.

        `key_going`: the key's record is about to be deleted (a discard), so the entry keeps
        its client id and owner instead of a link to it. `client_id`: a Keycloak client the
        portal has no record of (reconcile's quarantine), when `subject` is None; or the key
        that left a team or a person's personal keys, when `subject` is that team or person.
        `team`: the team an entry about a user is about (they joined or left it).
        """
        about: dict[str, Any]
        if isinstance(subject, ApiKey) and key_going:
            about = {"client_id": subject.client_id, "api_id": subject.api_id}
            about["about_user"] = subject.owner
            about["team_id"] = subject.team_id
        elif isinstance(subject, ApiKey):
            about = {"key": subject, "client_id": subject.client_id, "api_id": subject.api_id}
            about["team_id"] = subject.team_id
        elif isinstance(subject, Api):
            about = {"api": subject}
        elif isinstance(subject, User):
            about = {"about_user": subject, "team": team, "client_id": client_id}
        elif isinstance(subject, Team):
            about = {"team": subject, "client_id": client_id}  # a key that left it, if any
        else:  # a portal-wide setting, or a client with no record
            about = {"client_id": client_id}
        if about.get("team_id") or about.get("team"):
            team_id = about.get("team_id") or about["team"].pk
            role = Membership.objects.filter(team_id=team_id, user=actor).values_list("role")
            as_member = actor is not None and not AUDIT_AS_ADMIN.get()
            about["actor_role"] = next(iter(role), ("",))[0] if as_member else ""
        elif isinstance(subject, ApiKey) and actor is not None and not AUDIT_AS_ADMIN.get():
            # A personal key: its holder, or an administrator (on the customers' pages too).
            about["actor_role"] = cls.HOLDER if actor.pk == subject.owner_id else ""
        entry = cls.objects.create(
            **about,
            via=AUDIT_VIA.get(),
            action=action,
            actor=actor,
            actor_email=actor.email if actor else "",
            ip_address=ip_address,
            reason=reason,
        )
        if isinstance(subject, ApiKey) and not key_going and action in KEY_EVENTS:
            # In the same transaction as the change it reports: the outbox
            # (apikeys/operations/webhooks.py).
            WebhookMessage.objects.emit(subject, KEY_EVENTS[action], entry=entry)
        return entry


# Changes made in Keycloak that the portal learnt of: done by someone there, not the portal.
LEARNT_FROM_KEYCLOAK = frozenset(
    {
        AuditEntry.Action.USER_DEACTIVATED,
        AuditEntry.Action.USER_REACTIVATED,
        AuditEntry.Action.ADMIN_GRANTED,
        AuditEntry.Action.ADMIN_REMOVED,
    }
)


class ExpiryReminder(models.Model):
    """That the owner was told a key expires within `days`: sent once per key and threshold."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="reminders")
    days = models.PositiveIntegerField()
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = (
            models.UniqueConstraint(fields=["key", "days"], name="one_reminder_per_threshold"),
        )

    def __str__(self) -> str:
        return f"{self.key.client_id}: {self.days} days"


class JobState(models.Model):
    """A periodic job's progress (a watermark) and its lease: one row per job.

    The lease is a committed claim (`locked_until`, `holder`), not a held row lock, so a job
    never keeps a transaction open while it works: on SQLite an open write transaction would
    stop every other writer, and on PostgreSQL it would make a job all-or-nothing.
    """

    name = models.CharField(max_length=50, primary_key=True)
    watermark = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)
    locked_until = models.DateTimeField(null=True, blank=True)
    holder = models.CharField(max_length=32, blank=True)
    # When a run last completed (the metrics' job lag); jobs without a lease set it too.
    last_success_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} at {self.watermark}"


class PublicKey(models.Model):
    """One public key of a private_key_jwt key: Keycloak holds them all as the client's JWKS."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="public_keys")
    kid = models.CharField(max_length=64)
    # RFC 7638 JWK thumbprint (SHA-256, base64url): the same key pasted twice is one key.
    thumbprint = models.CharField(max_length=43)
    jwk = models.JSONField()  # public members only (apikeys/credentials/public_keys.py checks)
    summary = models.CharField(max_length=100)  # e.g. "RSA 3072 bits", "EC P-256"
    added_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("added_at", "id")
        constraints = (
            models.UniqueConstraint(fields=["key", "kid"], name="one_kid_per_key"),
            models.UniqueConstraint(fields=["key", "thumbprint"], name="one_public_key_once"),
        )

    def __str__(self) -> str:
        return f"{self.kid} ({self.summary})"


class SecretFingerprint(models.Model):
    """A keyed fingerprint of one secret the portal issued, never the secret.

    HMAC-SHA256 under SECRET_FINGERPRINT_KEY: a secret found somewhere can be recognised
    (apikeys/operations/leaks.py), but nothing here gives a secret back, nor lets anyone without the
    key test guesses against the table.
    """

    digest = models.CharField(max_length=64, unique=True)
    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="fingerprints")
    issued_at = models.DateTimeField(default=timezone.now)
    # When a rotation replaced it (it may still work in the grace period after).
    replaced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-issued_at", "-id")

    def __str__(self) -> str:
        return f"{self.key.client_id} {self.issued_at:%Y-%m-%d %H:%M}"


class LeakReport(models.Model):
    """A report that a secret was found exposed, and what the portal did about it."""

    class Verdict(models.TextChoices):
        CURRENT = "current", "The key's current secret"
        PREVIOUS = "previous", "The key's previous secret, in its grace period"
        RETIRED = "retired", "A secret the key no longer uses"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, related_name="leak_reports")
    verdict = models.CharField(max_length=16, choices=Verdict.choices)
    reporter = models.CharField(max_length=100)  # "GitHub secret scanning (key …)"
    url = models.CharField(max_length=2000, blank=True)  # where it was found
    source = models.CharField(max_length=100, blank=True)  # e.g. "content", "commit"
    action = models.CharField(max_length=200)  # what the portal did

    class Meta:
        ordering = ("-at", "-id")

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.key.client_id} {self.verdict}"


class PortalSetting(models.Model):
    """A setting administrators change in the portal's pages (not the deployment's)."""

    LEAKED_SECRET_ACTION = "leaked_secret_action"  # noqa: S105 - a name
    DEFAULTS: ClassVar[dict[str, str]] = {LEAKED_SECRET_ACTION: "suspend"}

    name = models.CharField(max_length=50, primary_key=True)
    value = models.CharField(max_length=200)

    def __str__(self) -> str:
        return f"{self.name}={self.value}"

    @classmethod
    def get(cls, name: str) -> str:
        row = cls.objects.filter(name=name).first()
        return row.value if row else cls.DEFAULTS[name]


# The webhook event each audited change of a key sends (apikeys/operations/webhooks.py), by audit
# action. A decision (revoke, suspend, reject) is sent when it is recorded: it stands from then on.
KEY_EVENTS: dict[str, str] = {
    AuditEntry.Action.CREATED: "key.created",
    AuditEntry.Action.APPROVED: "key.approved",
    AuditEntry.Action.REJECTED: "key.rejected",
    AuditEntry.Action.ROTATED: "key.rotated",
    AuditEntry.Action.SUSPENDED: "key.suspended",
    AuditEntry.Action.REINSTATED: "key.reinstated",
    AuditEntry.Action.REVOKED: "key.revoked",
    AuditEntry.Action.EXPIRED: "key.expired",
    AuditEntry.Action.TRANSFERRED: "key.transferred",
    AuditEntry.Action.NETWORKS_CHANGED: "key.updated",
    AuditEntry.Action.PERMISSIONS_CHANGED: "key.updated",
    AuditEntry.Action.DPOP_CHANGED: "key.updated",
}
# Sent by the jobs rather than an audited change: a reminder threshold, dormancy; and on demand.
JOB_EVENTS = ("key.expiring", "key.unused")
TEST_EVENT = "webhook.test"
# Each once: several actions are one event (key.updated).
EVENT_TYPES = tuple(dict.fromkeys((*KEY_EVENTS.values(), *JOB_EVENTS)))
EVENT_LABELS = {
    "key.created": "A key is created",
    "key.approved": "A key is approved",
    "key.rejected": "A key request is rejected",
    "key.rotated": "A key's secret is rotated",
    "key.suspended": "A key is suspended",
    "key.reinstated": "A key is reinstated",
    "key.revoked": "A key is revoked",
    "key.expiring": "A key expires soon (the reminder days)",
    "key.expired": "A key expired",
    "key.unused": "A key has not been used for a while",
    "key.transferred": "A key moves to another team or owner",
    "key.updated": "A key's permissions, allowed networks or DPoP requirement change",
}


def default_events() -> list[str]:
    return list(EVENT_TYPES)


class WebhookEndpointQuerySet(models.QuerySet["WebhookEndpoint"]):
    def held_by(self, owner: User, team: Team | None) -> WebhookEndpointQuerySet:
        """The endpoints of one space: the team's, or `owner`'s personal ones."""
        if team is not None:
            return self.filter(team=team)
        return self.filter(owner=owner, team__isnull=True)

    def of_space(self, key: ApiKey) -> WebhookEndpointQuerySet:
        return self.held_by(key.owner, key.team)


class WebhookEndpoint(models.Model):
    """Where a customer wants to hear about their keys: a URL, the events, a signing secret.

    The signing secret signs every message (Standard Webhooks), so the portal keeps it,
    encrypted with a key derived from WEBHOOK_ENCRYPTION_KEY; it is shown once. After a
    rotation the previous one also signs, until `previous_secret_until`.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(User, on_delete=models.CASCADE, related_name="webhook_endpoints")
    # A team's endpoint hears about the team's keys; a personal one (no team) about its
    # owner's personal keys.
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.PROTECT, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True)
    events = models.JSONField(default=default_events)
    active = models.BooleanField(default=True)
    # Why the portal paused it (a receiver answering 410 Gone); empty if the owner did.
    disabled_reason = models.CharField(max_length=200, blank=True)
    secret_encrypted = models.TextField()
    previous_secret_encrypted = models.TextField(blank=True)
    previous_secret_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # When its owner was last mailed about a delivery given up on (at most one a day).
    failure_mailed_at = models.DateTimeField(null=True, blank=True)

    objects = WebhookEndpointQuerySet.as_manager()

    class Meta:
        ordering = ("created_at", "id")

    def __str__(self) -> str:
        return self.url

    def wants(self, event_type: str) -> bool:
        return event_type == TEST_EVENT or event_type in self.events


class WebhookMessageQuerySet(models.QuerySet["WebhookMessage"]):
    def emit(
        self, key: ApiKey, event_type: str, *, entry: AuditEntry | None = None, **extra: Any
    ) -> list[WebhookMessage]:
        """One message per endpoint of the key's space (its team's, or its owner's personal
        ones) that wants `event_type`. A paused endpoint's messages wait: resuming it delivers
        them."""
        endpoints = [e for e in WebhookEndpoint.objects.of_space(key) if e.wants(event_type)]
        if not endpoints:
            return []
        data: dict[str, Any] = {"key": key_payload(key)} | extra
        if entry is not None:
            data["reason"] = entry.reason
            data["actor"] = entry.actor_as_seen_by(key.owner)
            data["via"] = entry.via
        made = [self.create(endpoint=e, event_type=event_type, data=data) for e in endpoints]
        wake_workers()
        return made

    def due(self, now: datetime) -> WebhookMessageQuerySet:
        return self.filter(status=WebhookMessage.Status.PENDING, next_attempt_at__lte=now).filter(
            Q(locked_until__isnull=True) | Q(locked_until__lt=now)
        )


# On PostgreSQL, idle webhook workers LISTEN on this channel (apikeys/operations/webhooks.py: work).
WAKE_CHANNEL = "webhook_messages"


def wake_workers() -> None:
    """Wake idle workers when the messages just written commit (NOTIFY is transactional)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"NOTIFY {WAKE_CHANNEL}")


# A restrictive decision is sent when it is recorded, with the status it stands for.
DECIDED_STATUS = {"revoking": "revoked", "suspending": "suspended", "rejecting": "rejected"}


def key_payload(key: ApiKey) -> dict[str, Any]:
    """What a webhook says about a key: never a secret."""
    return {
        "id": str(key.pk),
        "client_id": key.client_id,
        "name": key.name,
        "api": key.api.slug,
        "api_name": key.api.name,
        "status": DECIDED_STATUS.get(key.status, key.status),
        "team": str(key.team_id) if key.team_id else None,
        "credential": key.credential,
        "expires_at": key.expires_at.isoformat(),
        "networks": list(key.networks),
        "permissions": sorted(p.name for p in key.permissions.all()),
        "dpop": key.requires_dpop,
        "workload": (
            {"issuer": key.workload_issuer.slug, "subject": key.workload_subject}
            if key.workload_issuer is not None
            else None
        ),
    }


def message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


class WebhookMessage(models.Model):
    """One event for one endpoint: written in the transaction of the change (the outbox),
    delivered by `deliver_webhooks`. Its id is the `webhook-id` of every attempt."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Given up"

    id = models.CharField(max_length=40, primary_key=True, default=message_id, editable=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="messages")
    event_type = models.CharField(max_length=40)
    data = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # A worker's lease on the message while it delivers it: another worker leaves it alone
    # until then; if the worker dies, the message is delivered again after it. Only the
    # holder records the outcome.
    locked_until = models.DateTimeField(null=True, blank=True)
    locked_by = models.CharField(max_length=32, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # The retry window and the backoff count from here: its creation, a resend, a resume.
    retry_from = models.DateTimeField(default=timezone.now)
    failures = models.PositiveIntegerField(default=0)  # since retry_from

    objects = WebhookMessageQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = (models.Index(fields=["status", "next_attempt_at"], name="webhook_due_idx"),)

    def __str__(self) -> str:
        return f"{self.id} {self.event_type}"

    def payload(self) -> dict[str, Any]:
        """The body: Standard Webhooks' recommended shape, {type, timestamp, data}."""
        return {
            "type": self.event_type,
            "timestamp": self.created_at.isoformat(),
            "data": self.data,
        }


class WebhookAttempt(models.Model):
    """One delivery attempt of a message: the endpoint's delivery log."""

    message = models.ForeignKey(
        WebhookMessage, on_delete=models.CASCADE, related_name="attempts_made"
    )
    at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    response_excerpt = models.CharField(max_length=500, blank=True)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ("-at", "-id")

    def __str__(self) -> str:
        return f"{self.message_id} {self.status_code or self.error}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class UnusedNotice(models.Model):
    """That a key was announced unused (key.unused) since this moment: once per quiet spell.
    `owner_warned`: its owner was mailed (notices from before the dormant-key policy were
    webhook events only, and do not count as a warning)."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="unused_notices")
    since = models.DateTimeField()
    sent_at = models.DateTimeField(default=timezone.now)
    owner_warned = models.BooleanField(default=False)

    class Meta:
        constraints = (
            models.UniqueConstraint(fields=["key", "since"], name="one_unused_notice_per_spell"),
        )

    def __str__(self) -> str:
        return f"{self.key.client_id} unused since {self.since:%Y-%m-%d}"


class KeyUsage(models.Model):
    """A key's token requests on one day (UTC), from Keycloak's client-login events: a row
    per key per day, not per event."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="usage")
    day = models.DateField()
    grants = models.PositiveIntegerField(default=0)
    # Failed attempts: a wrong secret or signed assertion (invalid_client_credentials), and
    # every other refusal (the client disabled, deleted, or its secret expired).
    wrong_credentials = models.PositiveIntegerField(default=0)
    refused = models.PositiveIntegerField(default=0)
    # Refused because the request came from outside the key's network ranges.
    outside_networks = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = (
            models.UniqueConstraint(fields=["key", "day"], name="one_usage_row_per_day"),
        )

    def __str__(self) -> str:
        return f"{self.key_id} {self.day}: {self.grants} grants"


class ReceivedEvent(models.Model):
    """A Keycloak event the portal applied (its id), so that one delivered twice is applied
    once. Kept KEYCLOAK_EVENT_IDS_KEPT_HOURS."""

    id = models.CharField(max_length=64, primary_key=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return self.id
