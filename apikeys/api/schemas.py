"""The JSON shapes of the API (pydantic, through django-ninja): what OpenAPI describes."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal
from uuid import UUID

from django.db.models import Count, Prefetch, Q, QuerySet
from django.utils import timezone
from ninja import Field, Schema
from pydantic import ConfigDict

from apikeys.access import keys_registered_with
from apikeys.assurance import second_factors_to_show
from apikeys.models import (
    EVENT_TYPES,
    LIVE_STATUSES,
    Api,
    ApiKey,
    Invitation,
    Membership,
    Permission,
    PermissionRequest,
    PublicKey,
    RegistrationToken,
    User,
    WebhookAttempt,
    WebhookEndpoint,
    WebhookMessage,
    WorkloadIssuer,
)

Role = Literal["owner", "developer", "viewer"]
CredentialKind = Literal["secret", "private_key_jwt", "workload"]
# How a private_key_jwt or workload identity key's application presents its assertion.
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class PermissionOut(Schema):
    name: str = Field(description="What its tokens carry in their scope claim: orders:read.")
    description: str
    requires_approval: bool = Field(
        description="Giving it to a key (new or existing) waits for an administrator."
    )
    default: bool = Field(description="New keys get it unless their maker leaves it out.")


class ApiOut(Schema):
    slug: str
    name: str
    description: str
    audience: str
    requires_approval: bool
    checks_revocation: bool
    max_key_lifetime_days: int
    access_token_lifespan: int = Field(description="Seconds an access token stays valid.")
    max_rotation_grace_hours: int = Field(
        description="The longest grace period a rotation may give the old secret."
    )
    dormant_warn_days: int | None = Field(description="Null: the portal's DORMANT_KEY_DAYS.")
    dormant_suspend_days: int | None = Field(
        description="0: never; null: the portal's DORMANT_SUSPEND_DAYS."
    )
    retired: bool
    permissions: list[PermissionOut] = Field(
        description="What its keys may be allowed to do; ask for them by name."
    )

    @staticmethod
    def resolve_retired(api: Api) -> bool:
        return api.retired_at is not None

    @staticmethod
    def resolve_permissions(api: Api) -> list[Permission]:
        return list(api.permissions.all())


class PublicKeyOut(Schema):
    kid: str
    summary: str = Field(description='e.g. "RSA 3072 bits", "EC P-256", "Ed25519".')
    alg: str
    thumbprint: str = Field(description="RFC 7638 JWK thumbprint (SHA-256).")
    added_at: datetime
    jwk: dict[str, Any] = Field(description="The public JWK, as Keycloak holds it.")

    @staticmethod
    def resolve_alg(public_key: PublicKey) -> str:
        return str(public_key.jwk.get("alg", ""))


class PermissionRequestOut(Schema):
    """Permissions asked for a key, waiting for an administrator's decision."""

    id: int
    permissions: list[str] = Field(description="What was asked for.")
    justification: str
    created_at: datetime

    @staticmethod
    def resolve_permissions(request: PermissionRequest) -> list[str]:
        return request.names


class WorkloadOut(Schema):
    issuer: str = Field(description="The trusted issuer's slug (GET /workload-issuers).")
    subject: str = Field(description="The `sub` its workload's tokens carry.")


class KeyOut(Schema):
    id: UUID
    name: str
    description: str
    client_id: str
    api: str = Field(description="The API's slug.")
    api_name: str
    status: str = Field(description="unfinished (stored as provisioning), pending, active, ...")
    status_label: str
    status_reason: str
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    secret_rotated_at: datetime | None
    ended_at: datetime | None
    client_missing: bool
    justification: str
    credential: CredentialKind
    dpop: bool = Field(
        description="Its tokens are bound to a key its application holds (DPoP, RFC 9449): "
        "Keycloak issues them only with a DPoP proof, as token_type DPoP."
    )
    workload: WorkloadOut | None = Field(
        description="A workload identity key's trusted issuer and the subject its workload's "
        "tokens carry; null: not a workload identity key."
    )
    previous_secret_until: datetime | None = Field(
        description="After a rotation with a grace period: the previous secret works until then."
    )
    secret_exposed_at: datetime | None = Field(
        description="When the current secret was reported found exposed; rotate it."
    )
    jwks_url: str = Field(description="private_key_jwt keys that read their keys from a URL.")
    public_keys: list[PublicKeyOut] = Field(description="private_key_jwt keys' public keys.")
    recovered_at: datetime | None = Field(
        None,
        description="When the portal rebuilt this key's record from Keycloak after a restore "
        "of its database; until you rename the key.",
    )
    team: UUID | None = Field(description="The team that holds the key; null: a personal key.")
    team_name: str | None = Field(description="That team's name; null: a personal key.")
    networks: list[str] = Field(
        description="CIDR ranges its tokens may be requested from (Keycloak refuses others); "
        "empty: anywhere."
    )
    permissions: list[str] = Field(
        description="What it may do at its API: the permissions its tokens carry in scope."
    )
    permission_request: PermissionRequestOut | None = Field(
        description="More permissions asked for and waiting for an administrator (the key "
        "works with what it has meanwhile); null: none."
    )

    @staticmethod
    def resolve_permissions(key: ApiKey) -> list[str]:
        return key.permission_names

    @staticmethod
    def resolve_dpop(key: ApiKey) -> bool:
        return key.requires_dpop

    @staticmethod
    def resolve_workload(key: ApiKey) -> dict[str, str] | None:
        if key.workload_issuer is None:
            return None
        return {"issuer": key.workload_issuer.slug, "subject": key.workload_subject}

    @staticmethod
    def resolve_permission_request(key: ApiKey) -> PermissionRequest | None:
        return next((r for r in key.permission_requests.all() if r.decided_at is None), None)

    @staticmethod
    def resolve_team(key: ApiKey) -> UUID | None:
        return key.team_id

    @staticmethod
    def resolve_team_name(key: ApiKey) -> str | None:
        return key.team.name if key.team is not None else None

    @staticmethod
    def resolve_previous_secret_until(key: ApiKey) -> datetime | None:
        return key.previous_secret_until if key.in_grace else None

    @staticmethod
    def resolve_public_keys(key: ApiKey) -> list[PublicKey]:
        return list(key.public_keys.all())

    @staticmethod
    def resolve_api(key: ApiKey) -> str:
        return key.api.slug

    @staticmethod
    def resolve_api_name(key: ApiKey) -> str:
        return key.api.name

    @staticmethod
    def resolve_status_label(key: ApiKey) -> str:
        return key.get_status_display()

    @staticmethod
    def resolve_client_missing(key: ApiKey) -> bool:
        return key.client_missing_since is not None


def with_key_details(keys: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
    """Keys with what KeyOut shows of each fetched in a few queries, not a few per key."""
    waiting = PermissionRequest.objects.filter(decided_at__isnull=True)
    return keys.select_related("api", "team", "workload_issuer").prefetch_related(
        "public_keys",
        "permissions",
        Prefetch("permission_requests", queryset=waiting.prefetch_related("permissions")),
    )


class AdminKeyOut(KeyOut):
    owner_email: str
    owner_name: str

    @staticmethod
    def resolve_owner_email(key: ApiKey) -> str:
        return key.owner.email

    @staticmethod
    def resolve_owner_name(key: ApiKey) -> str:
        return key.owner.display_name


class WorkloadSetup(Schema):
    """How a workload identity key's workload gets tokens: no secret, but a token its platform
    issues it, sent as the client assertion of a client-credentials request."""

    issuer: str = Field(description="The `iss` its platform's token carries.")
    subject: str = Field(description="The `sub` it carries.")
    audience: str = Field(
        description="The `aud` it must carry: have the platform issue the token for this "
        "audience (a Kubernetes projected service-account token's audience, a CI job's "
        "OIDC audience)."
    )
    grant_type: Literal["client_credentials"] = "client_credentials"
    client_assertion_type: str = JWT_BEARER
    reuse: bool = Field(
        description="Whether one platform token may be sent again until it expires; false: "
        "a new one for each token request."
    )


class Credentials(Schema):
    """A key with its secret: in the one response that makes or rotates it, never again.

    A private_key_jwt key has no secret (null): its application signs a client assertion
    with `assertion_audience` as its `aud`. A workload identity key has none either: its
    workload sends a token of its platform, as `workload` says.
    """

    key: KeyOut
    client_id: str
    client_secret: str | None
    token_endpoint: str
    assertion_audience: str | None = None
    client_assertion_type: str | None = Field(
        None, description="private_key_jwt and workload keys: how the assertion is sent."
    )
    workload: WorkloadSetup | None = Field(
        None, description="A workload identity key: how its workload gets tokens."
    )


class KeyIn(Schema):
    name: str = Field(description="1 to 64 printable characters, unique among your live keys.")
    api: str = Field(description="The slug of an API in the catalog.")
    team: UUID | None = Field(
        None,
        description="The team that will hold the key (you a developer or owner there); "
        "left out: a personal key.",
    )
    lifetime_days: int | None = Field(None, description="Default 90; at most the API's limit.")
    description: str = ""
    justification: str = Field("", description="Required for APIs that need approval.")
    credential: CredentialKind = Field(
        "secret",
        description="private_key_jwt: the application signs with its private key; workload: "
        "it sends a token its platform issued it (workload_issuer, workload_subject).",
    )
    dpop: bool = Field(
        False,
        description="Bind its tokens to a key the application holds (DPoP, RFC 9449): Keycloak "
        "then issues tokens only to requests with a DPoP proof.",
    )
    workload_issuer: str | None = Field(
        None, description="workload: the slug of a trusted issuer (GET /workload-issuers)."
    )
    workload_subject: str | None = Field(
        None,
        description="workload: the `sub` of the workload's tokens, e.g. "
        "system:serviceaccount:billing:invoicer. One live key per issuer and subject.",
    )
    public_key: str | dict[str, Any] | None = Field(
        None,
        description="private_key_jwt: a PEM public key or certificate, a JWK or a JWKS. "
        "Never the private key: that is refused, and must then be considered exposed.",
    )
    jwks_url: str | None = Field(
        None, description="private_key_jwt, instead of public_key: the URL of your JWKS."
    )
    networks: list[str] = Field(
        default_factory=list,
        description="IPv4/IPv6 CIDR ranges (or addresses) its tokens may be requested from, "
        "at most 20; left out: anywhere.",
    )
    permissions: list[str] | None = Field(
        None,
        description="The API's permissions it gets, by name (GET /apis lists them); left out "
        "or null: those the API gives new keys by default; []: none. One that needs approval "
        "makes the key wait for an administrator, and needs a justification.",
    )


class NetworksIn(Schema):
    model_config = ConfigDict(extra="forbid")

    networks: list[str] = Field(
        description="The ranges its tokens may be requested from from now on; [] for anywhere."
    )


class DpopIn(Schema):
    model_config = ConfigDict(extra="forbid")

    required: bool = Field(
        description="true: tokens only with a DPoP proof (RFC 9449), from the next token "
        "request on; false: plain bearer tokens again."
    )


class PermissionsIn(Schema):
    model_config = ConfigDict(extra="forbid")

    permissions: list[str] = Field(
        description="Every permission it should have from now on, by name; [] for none."
    )
    justification: str = Field(
        "",
        max_length=2000,
        description="Why it needs more: required when one added needs approval (an "
        "administrator reads it).",
    )


class PermissionsChanged(Schema):
    """What a change of permissions did: at once, or asked for."""

    key: KeyOut
    added: list[str] = Field(description="Given now: from the key's next token on.")
    removed: list[str] = Field(description="Taken away now: from the key's next token on.")
    requested: PermissionRequestOut | None = Field(
        description="Asked for (they need approval): the key works without them meanwhile."
    )


class RenameIn(Schema):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        None, description="1 to 64 printable characters, unique among your live keys."
    )
    description: str | None = Field(None, description="Up to 500 characters.")


class RotateIn(Schema):
    model_config = ConfigDict(extra="forbid")  # a misspelt grace must not become no grace

    grace_seconds: int = Field(
        0,
        ge=0,
        le=720 * 3600,
        description="How long the old secret keeps working beside the new one: 0 (it stops "
        "at once) up to the API's max_rotation_grace_hours.",
    )


class PublicKeyIn(Schema):
    public_key: str | dict[str, Any] = Field(
        description="A PEM public key or certificate, a JWK or a JWKS."
    )


class SecretIn(Schema):
    secret: str = Field(max_length=200)


class SecretCheckOut(Schema):
    """Whether a secret is one of the portal's, and whose (yours, or any for admins)."""

    ours: bool = Field(description="One of your keys' secrets (any key's, for admins).")
    well_formed: bool = Field(description="It has the portal's format (kcak_ and checksum).")
    which: Literal["current", "previous", "retired"] | None = None
    works: bool = Field(False, description="It can get tokens (once the key is active).")
    key: KeyOut | None = None


class ReasonIn(Schema):
    reason: str = Field(description="Why: the key's owner reads it.")


class NoteIn(Schema):
    reason: str = ""


class ApiIn(Schema):
    name: str
    slug: str = Field(description="Names the Keycloak scope api-<slug>; fixed once made.")
    audience: str
    description: str = ""
    requires_approval: bool = False
    checks_revocation: bool = False
    max_key_lifetime_days: int = 365
    access_token_lifespan: int = 300
    max_rotation_grace_hours: int = 168
    dormant_warn_days: int | None = Field(
        None, description="Days unused before owners are warned; null: the portal's setting."
    )
    dormant_suspend_days: int | None = Field(
        None, description="Days unused before suspension (0: never); null: the portal's setting."
    )


class PermissionIn(Schema):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        description="A resource and an action, e.g. invoices:read: the client scope Keycloak "
        "puts in tokens; unique in the catalog, fixed once made."
    )
    description: str = Field(description="What it allows, for the keys' makers; ≤200 chars.")
    requires_approval: bool = Field(False, description="Giving it waits for an administrator.")
    default: bool = Field(True, description="New keys get it unless their maker leaves it out.")
    give_to_live_keys: bool = Field(
        False,
        description="Give it to the API's keys that exist now too, so their partners keep "
        "working when the API starts checking it.",
    )


class PermissionDefined(PermissionOut):
    keys_not_updated: list[str] = Field(
        description="With give_to_live_keys: the keys Keycloak could not be told about (their "
        "client ids); POST …/permissions/{name}/keys gives it to the keys that still lack it."
    )


class KeysNotUpdated(Schema):
    keys_not_updated: list[str] = Field(
        description="The keys Keycloak could not be told about (their client ids): call again."
    )


class PermissionPatch(Schema):
    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    requires_approval: bool | None = None
    default: bool | None = None


class AdminPermissionRequestOut(PermissionRequestOut):
    key_id: UUID
    client_id: str
    key_name: str
    api: str = Field(description="The key's API's slug.")
    owner_email: str
    team_name: str | None = Field(description="The team that holds the key; null: personal.")
    held: list[str] = Field(description="The permissions the key has now.")
    requested_by: str = Field(description="The email of the person who asked.")
    decided_at: datetime | None
    approved: bool | None = Field(description="null: open, or withdrawn by its requester.")
    reason: str

    @staticmethod
    def resolve_client_id(request: PermissionRequest) -> str:
        return request.key.client_id

    @staticmethod
    def resolve_key_name(request: PermissionRequest) -> str:
        return request.key.name

    @staticmethod
    def resolve_api(request: PermissionRequest) -> str:
        return request.key.api.slug

    @staticmethod
    def resolve_owner_email(request: PermissionRequest) -> str:
        return request.key.owner.email

    @staticmethod
    def resolve_team_name(request: PermissionRequest) -> str | None:
        team = request.key.team
        return team.name if team is not None else None

    @staticmethod
    def resolve_held(request: PermissionRequest) -> list[str]:
        return request.key.permission_names

    @staticmethod
    def resolve_requested_by(request: PermissionRequest) -> str:
        return request.requested_by.email


class AuditOut(Schema):
    """An audit entry, as the reader may see it (apikeys/api/paging.py: audit_out)."""

    at: datetime
    action: str
    action_label: str
    client_id: str
    key_name: str = Field(
        description="The key's name now; to a customer, only while the key is held where "
        "the entry was made (else empty)."
    )
    api: str | None
    actor: str = Field(
        description='Who acted: an email, or to a customer "an administrator", "its holder '
        'then" or "a member of its team then" for someone else; "Keycloak" or "the '
        'portal" for no one.'
    )
    ip_address: str = Field(description="Where from; empty where the reader may not see it.")
    reason: str
    via: str = Field(description="web (the pages) or api (this API and the CLI).")


class Page(Schema):
    count: int
    page: int
    pages: int


class KeyPage(Page):
    items: list[KeyOut]


class AdminKeyPage(Page):
    items: list[AdminKeyOut]


class AuditPage(Page):
    items: list[AuditOut]


class Me(Schema):
    sub: str
    user_id: int = Field(description="Your id in the portal, as a team's member list shows it.")
    email: str
    name: str
    admin: bool
    second_factor: bool | None = Field(
        description="Whether your Keycloak account has a one-time password or a passkey "
        "(asked of Keycloak now, never stored by the portal); null if Keycloak cannot say."
    )

    @staticmethod
    def resolve_user_id(user: User) -> int:
        return user.pk

    @staticmethod
    def resolve_second_factor(user: User) -> bool | None:
        kinds = second_factors_to_show(user)
        return None if kinds is None else bool(kinds)

    @staticmethod
    def resolve_sub(user: User) -> str:
        return user.username

    @staticmethod
    def resolve_name(user: User) -> str:
        return user.display_name

    @staticmethod
    def resolve_admin(user: User) -> bool:
        return user.is_staff


class CliConfig(Schema):
    """What the command-line tool needs to sign in: Keycloak's endpoints and its client."""

    api: str
    issuer: str
    client_id: str
    scope: str
    authorization_endpoint: str
    token_endpoint: str
    device_authorization_endpoint: str
    revocation_endpoint: str
    end_session_endpoint: str


class EndpointOut(Schema):
    id: UUID
    url: str
    team: UUID | None = Field(description="The team whose keys it hears about; null: yours.")
    description: str
    events: list[str]
    active: bool
    disabled_reason: str = Field(description="Why the portal paused it, if it did (410 Gone).")
    previous_secret_until: datetime | None = Field(
        description="Until then the previous signing secret signs each message too."
    )
    created_at: datetime

    @staticmethod
    def resolve_team(endpoint: WebhookEndpoint) -> UUID | None:
        return endpoint.team_id


class EndpointIn(Schema):
    url: str = Field(max_length=500, description="https, reachable from the internet.")
    team: UUID | None = Field(
        None,
        description="The team whose keys it hears about (you a developer or owner there); "
        "left out: your personal keys.",
    )
    description: str = Field("", max_length=200)
    events: list[str] = Field(
        default_factory=lambda: list(EVENT_TYPES), description="Default: every key event."
    )


class EndpointPatch(Schema):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, max_length=500)
    description: str | None = Field(None, max_length=200)
    events: list[str] | None = None
    active: bool | None = Field(None, description="false pauses it; true resumes it.")


class EndpointSecret(Schema):
    """An endpoint with its signing secret: in the response that makes or rotates it only."""

    endpoint: EndpointOut
    signing_secret: str


class SecretRotationIn(Schema):
    overlap_seconds: int = Field(
        0, ge=0, le=7 * 24 * 3600, description="How long the old secret also signs."
    )


class AttemptOut(Schema):
    at: datetime
    status_code: int | None
    latency_ms: int
    response_excerpt: str
    error: str


class MessageOut(Schema):
    id: str = Field(description="Its webhook-id, the same on every attempt.")
    event_type: str
    created_at: datetime
    status: str
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None
    attempts_made: list[AttemptOut]
    data: dict[str, Any]

    @staticmethod
    def resolve_attempts_made(message: WebhookMessage) -> list[WebhookAttempt]:
        return list(message.attempts_made.all())


class MessagePage(Page):
    items: list[MessageOut]


class UsageDay(Schema):
    day: date
    grants: int = Field(description="Tokens issued to the key that day (UTC).")
    wrong_credentials: int = Field(description="Attempts with a wrong secret or signature.")
    outside_networks: int = Field(
        description="Attempts from outside the key's allowed networks, refused by Keycloak."
    )
    refused: int = Field(description="Other failed attempts: the key disabled, deleted, expired.")


class UsageOut(Schema):
    days: list[UsageDay] = Field(description="The last 30 days, oldest first.")
    warning: str | None = Field(
        description="What the failed attempts of today and yesterday suggest, if anything."
    )


# Teams


class TeamIn(Schema):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="1 to 100 printable characters.")


class TeamChangeIn(Schema):
    """What to change of a team; what is left out stays as it is."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="1 to 100 printable characters.")
    requires_second_factor: bool | None = Field(
        None,
        description="true: members without a second factor in Keycloak may read but change "
        "nothing. Turning it on needs one of you; changing it, your second factor used "
        "recently (else 401 with an RFC 9470 challenge).",
    )


class TeamSummary(Schema):
    """A team you are in, with your role there."""

    id: UUID
    name: str
    role: Role = Field(
        description="Yours: a viewer sees; a developer also changes keys and webhooks; an "
        "owner also members, invitations and settings."
    )
    created_at: datetime


class TeamOut(TeamSummary):
    key_quota: int = Field(description="How many live keys the team may hold.")
    live_keys: int = Field(description="How many it holds now.")
    ownerless_since: datetime | None = Field(
        description="Set while the team has no owner: an administrator appoints one."
    )
    requires_second_factor: bool = Field(
        description="Whether members need a second factor in Keycloak to change anything."
    )


class MemberOut(Schema):
    user_id: int = Field(description="The member's id in the portal (for role changes).")
    email: str
    name: str
    role: Role
    joined_at: datetime

    @staticmethod
    def resolve_user_id(member: Membership) -> int:
        return member.user_id

    @staticmethod
    def resolve_email(member: Membership) -> str:
        return member.user.email

    @staticmethod
    def resolve_name(member: Membership) -> str:
        return member.user.display_name


class RoleIn(Schema):
    model_config = ConfigDict(extra="forbid")

    role: Role


class InviteIn(Schema):
    email: str = Field(max_length=254, description="They accept signed in with this address.")
    role: Role = "developer"


class InvitationOut(Schema):
    """An invitation; its link's token is in the mail only, never here."""

    id: UUID
    email: str
    role: Role
    state: Literal["pending", "accepted", "revoked", "expired"]
    invited_by: str = Field(description="The inviting member's email.")
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None
    revoked_at: datetime | None

    @staticmethod
    def resolve_invited_by(invitation: Invitation) -> str:
        return invitation.invited_by.email


class InvitationSent(Schema):
    """A new invitation; its link went by mail, and is not shown here."""

    invitation: InvitationOut
    mailed: bool = Field(description="false: the mail could not be sent; invite them again.")


class AcceptIn(Schema):
    token: str = Field(
        max_length=1000, description="The invitation's link (…/invitations/<token>/) or its token."
    )


class MoveIn(Schema):
    model_config = ConfigDict(extra="forbid")

    team: UUID = Field(description="A team where you are a developer or owner.")


class AdminTeamSummary(Schema):
    id: UUID
    name: str
    created_at: datetime
    member_count: int
    live_keys: int
    key_quota: int
    ownerless: bool = Field(description="No owner: appoint one (POST …/owners).")
    ownerless_since: datetime | None


class AdminTeamOut(AdminTeamSummary):
    members: list[MemberOut]


class AdminTeamPage(Page):
    items: list[AdminTeamSummary]


class AppointIn(Schema):
    email: str = Field(max_length=254, description="A person with a portal account.")
    reason: str = Field(description="Why: recorded in the team's activity.")


class AdminMoveIn(Schema):
    to_email: str | None = Field(
        None,
        description="The person who will hold it (alone: their personal key), or the member "
        "who made it, with to_team.",
    )
    to_team: str | None = Field(
        None,
        description="The team that will hold it, by its id or its name (alone: its maker "
        "stays its maker, who must be a member).",
    )
    reason: str = Field(description="Why: the old and new holders read it.")


# Registration tokens


class RegistrationTokenIn(Schema):
    model_config = ConfigDict(extra="forbid")  # a misspelt limit must not become no limit

    api: str = Field(description="The slug of an open API: the keys it registers are for it.")
    name: str = Field(description="1 to 64 printable characters, to tell your tokens apart.")
    max_registrations: int = Field(description="How many keys it may register: 1 to 1000.")
    expires_in_days: int = Field(
        description="How long it registers keys: 1 to the portal's REGISTRATION_TOKEN_MAX_DAYS "
        "(90 unless its operators chose otherwise)."
    )
    key_lifetime_days: int | None = Field(
        None,
        description="How long each key it registers is valid, from its registration: at most "
        "the API's max_key_lifetime_days; left out: 90, or the API's limit if lower.",
    )
    permissions: list[str] | None = Field(
        None,
        description="The API's permissions its keys get, by name (GET /apis lists them); left "
        "out, null or []: those the API gives new keys by default. Software may ask for fewer "
        "when it registers (scope), never for more.",
    )
    networks: list[str] = Field(
        default_factory=list,
        description="IPv4/IPv6 CIDR ranges (or addresses) software may register from; left "
        "out: anywhere. The keys it registers are not limited by them.",
    )
    team: UUID | None = Field(
        None,
        description="The team whose keys it registers (you a developer or owner there); left "
        "out: your personal keys.",
    )


class RegisteredKeyOut(Schema):
    """A key a registration token registered (GET /keys/{id} has the rest)."""

    id: UUID
    client_id: str
    name: str
    status: str
    created_at: datetime


class RegistrationTokenOut(Schema):
    """A registration token, without the token itself (shown once, when it was made)."""

    id: UUID
    name: str
    api: str = Field(description="The API's slug.")
    api_name: str
    team: UUID | None = Field(description="The team whose keys it registers; null: personal.")
    team_name: str | None
    made_by: str = Field(description="The email of the person who made it.")
    permissions: list[str] = Field(description="What the keys it registers get.")
    max_registrations: int
    registrations: int = Field(description="How many keys it registered so far.")
    uses_left: int
    networks: list[str] = Field(description="Where software may register from; empty: anywhere.")
    key_lifetime_days: int = Field(description="How long each key it registers is valid.")
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    registers: bool = Field(description="Whether it registers keys now.")
    refusal: str | None = Field(
        description="Why it registers nothing now (revoked, expired, used up, its API "
        "retired); null: it registers."
    )

    @staticmethod
    def resolve_api(token: RegistrationToken) -> str:
        return token.api.slug

    @staticmethod
    def resolve_api_name(token: RegistrationToken) -> str:
        return token.api.name

    @staticmethod
    def resolve_team(token: RegistrationToken) -> UUID | None:
        return token.team_id

    @staticmethod
    def resolve_team_name(token: RegistrationToken) -> str | None:
        return token.team.name if token.team is not None else None

    @staticmethod
    def resolve_made_by(token: RegistrationToken) -> str:
        return token.owner.email

    @staticmethod
    def resolve_permissions(token: RegistrationToken) -> list[str]:
        return sorted(p.name for p in token.permissions.all())

    @staticmethod
    def resolve_registers(token: RegistrationToken) -> bool:
        return token.refusal(timezone.now()) is None

    @staticmethod
    def resolve_refusal(token: RegistrationToken) -> str | None:
        return token.refusal(timezone.now())


class RegistrationTokenDetail(RegistrationTokenOut):
    keys: list[RegisteredKeyOut] = Field(
        description="The keys it registered that its space holds, newest first."
    )

    @staticmethod
    def resolve_keys(token: RegistrationToken) -> list[ApiKey]:
        return list(keys_registered_with(token))


class RegistrationTokenSecret(Schema):
    """A new registration token: the one response that holds the token itself."""

    registration_token: RegistrationTokenOut
    token: str = Field(description="The token (kcrt_…): send it as a bearer token to register.")
    registration_endpoint: str = Field(
        description="Where software registers its keys (RFC 7591): POST, with the token."
    )


class RegistrationTokenPage(Page):
    items: list[RegistrationTokenOut]


def with_token_details(tokens: QuerySet[RegistrationToken]) -> QuerySet[RegistrationToken]:
    """Tokens with what RegistrationTokenOut shows of each fetched in a few queries."""
    return tokens.select_related("api", "owner", "team").prefetch_related("permissions")


# Workload issuers


class WorkloadIssuerOut(Schema):
    """An issuer of workload identity tokens the portal trusts: a workload identity key names
    it by its slug."""

    slug: str
    name: str
    issuer: str = Field(description="The `iss` of its tokens, exactly.")
    subject_hint: str = Field(description="What the subjects of its tokens look like.")
    allows_reuse: bool = Field(
        description="Whether one of its tokens may be sent again while young enough; false: "
        "a new one for each token request."
    )
    max_token_age: int = Field(
        description="Keycloak takes its tokens up to this many seconds after they were issued."
    )
    keys_need_approval: bool = Field(
        description="Keys bound to it wait for an administrator's approval."
    )


class AdminWorkloadIssuerOut(WorkloadIssuerOut):
    jwks_url: str = Field(description="Where Keycloak reads its public keys.")
    created_at: datetime
    live_keys: int = Field(description="Live keys bound to it: it is removed only at 0.")


class WorkloadIssuerIn(Schema):
    model_config = ConfigDict(extra="forbid")

    slug: str = Field(
        max_length=40,
        description="Its short name, for keys to name it: lowercase letters, digits and "
        "hyphens (e.g. prod-cluster).",
    )
    name: str = Field(max_length=100, description="A name people will recognise.")
    issuer: str = Field(
        max_length=500,
        description="The `iss` of its tokens, exactly: an https URL (http only on loopback, "
        "in dev and test).",
    )
    jwks_url: str = Field(max_length=500, description="The URL of its public keys (JWKS).")
    allows_reuse: bool = Field(
        False,
        description="Accept one token again while it is young enough (Kubernetes projected "
        "tokens are read from a file for many requests); default: each token once.",
    )
    max_token_age: int = Field(
        300,
        ge=WorkloadIssuer.TOKEN_AGES[0],
        le=WorkloadIssuer.TOKEN_AGES[1],
        description="Keycloak takes a token up to this many seconds after its iat (300; give a "
        "Kubernetes issuer 3600: the kubelet renews a token at 80% of its life).",
    )
    keys_need_approval: bool = Field(
        True,
        description="Keys bound to it wait for an administrator, who checks the subject is "
        "the customer's (anyone may name any subject; each holds one live key).",
    )
    subject_hint: str = Field(
        "",
        max_length=200,
        description="What its subjects look like, shown to customers: "
        "system:serviceaccount:<namespace>:<name>.",
    )


def with_live_keys(issuers: QuerySet[WorkloadIssuer]) -> QuerySet[WorkloadIssuer]:
    """Issuers with their live keys counted (AdminWorkloadIssuerOut.live_keys)."""
    live = Q(keys__status__in=LIVE_STATUSES)
    return issuers.annotate(live_keys=Count("keys", filter=live))
