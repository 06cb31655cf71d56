"""What the portal wants Keycloak to hold: the realm, its clients and scopes, and each key's client.

Pure data, no I/O. The gateway (`apikeys/keycloak/client.py`) says how to talk to Keycloak; the
operations (`bootstrap`, `lifecycle`, `reconcile`, `catalog`) say when and in what order, and
`apikeys/keycloak/convergence.py` turns "what is there" and "what is wanted" into the calls between.
A new kind of key changes this module and adds an operation.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from apikeys.credentials import networks
from apikeys.keycloak.key_clients import (
    API_ATTRIBUTE,
    DPOP_ATTRIBUTE,
    EXPIRES_ATTRIBUTE,
    FEDERATED_AUTHENTICATOR,
    INSTANCE_ATTRIBUTE,
    KEY_ATTRIBUTE,
    MANAGED_ATTRIBUTE,
    OWNER_ATTRIBUTE,
    QUARANTINED_ATTRIBUTE,
    QUARANTINED_ENABLED_ATTRIBUTE,
    REGISTERED_WITH_ATTRIBUTE,
    REGISTRATION_DIGEST_ATTRIBUTE,
    ROTATED_CREATED_ATTRIBUTE,
    ROTATED_EXPIRY_ATTRIBUTE,
    ROTATED_SECRET_ATTRIBUTE,
    SEAL_ATTRIBUTE,
    SECRET_EXPIRY_ATTRIBUTE,
    TEAM_ATTRIBUTE,
    WORKLOAD_ISSUER_ATTRIBUTE,
    WORKLOAD_SUBJECT_ATTRIBUTE,
    Representation,
    seal,
)
from apikeys.models import Api, ApiKey, Permission, WorkloadIssuer

# How long after its `iat` Keycloak takes a private_key_jwt client assertion (its default
# too, made explicit): an assertion is made for one token request, not kept.
ASSERTION_MAX_AGE_SECONDS = 60

# The least realm-management roles the portal's run-time identity needs: create, update and
# delete key clients and client scopes (manage-clients), read CLIENT_LOGIN events (view-events),
# read one account by id (view-users): after a restore, whether the owner a key's client
# names is a real, enabled person (apikeys/operations/recovery.py), and which kinds of
# credential a person has (a second factor or not). No user is ever changed.
SERVICE_ROLES = frozenset({"manage-clients", "view-events", "view-users"})
# With KEYCLOAK_WORKLOAD_ISSUERS, also the identity providers that stand for trusted workload
# issuers, which an administrator adds and removes in the portal.
WORKLOAD_ISSUERS_ROLE = "manage-identity-providers"


def service_roles() -> frozenset[str]:
    """The realm-management roles the portal's run-time identity holds, exactly."""
    extra = {WORKLOAD_ISSUERS_ROLE} if settings.KEYCLOAK_WORKLOAD_ISSUERS else set()
    return SERVICE_ROLES | extra


# The event listener of keycloak-extension/ (its provider id), which pushes events.
EVENT_LISTENER = "apikey-portal"
# Which user events Keycloak stores, and for how long.
STORED_EVENTS = ["CLIENT_LOGIN", "CLIENT_LOGIN_ERROR", "DELETE_ACCOUNT"]
EVENTS_EXPIRATION_SECONDS = 90 * 24 * 3600
PASSWORD_POLICY = " and ".join(  # a policy, not a password
    [
        "length(12)",
        "maxLength(128)",
        "notUsername(undefined)",
        "notEmail(undefined)",
        "passwordHistory(3)",
    ]
)
# Grants that no portal-owned client may use unless it says so.
FLOWS_OFF = {
    "standardFlowEnabled": False,
    "implicitFlowEnabled": False,
    "directAccessGrantsEnabled": False,
    "serviceAccountsEnabled": False,
}
EXTRA_GRANTS_OFF = {
    "oauth2.device.authorization.grant.enabled": "false",
    "oidc.ciba.grant.enabled": "false",
    "standard.token.exchange.enabled": "false",
}
# Every client the portal makes is a confidential OpenID Connect client with a secret.
CONFIDENTIAL = {
    "protocol": "openid-connect",
    "enabled": True,
    "publicClient": False,
    "bearerOnly": False,
    "consentRequired": False,
    "clientAuthenticatorType": "client-secret",
}


VERIFICATION_LINK_SECONDS = 3600


def realm() -> Representation:
    return {
        "realm": settings.KEYCLOAK_REALM,
        "displayName": "API key portal",
        "enabled": True,
        "sslRequired": "external",
        "registrationAllowed": True,
        "registrationEmailAsUsername": True,
        "loginWithEmailAllowed": True,
        "duplicateEmailsAllowed": False,
        "verifyEmail": True,
        "resetPasswordAllowed": True,
        "editUsernameAllowed": False,
        "rememberMe": False,
        "passwordPolicy": PASSWORD_POLICY,
        "bruteForceProtected": True,
        "permanentLockout": False,
        "failureFactor": 10,
        "waitIncrementSeconds": 60,
        "maxFailureWaitSeconds": 900,
        "maxDeltaTimeSeconds": 12 * 3600,
        "smtpServer": smtp_server(),
        "eventsEnabled": True,
        "eventsExpiration": EVENTS_EXPIRATION_SECONDS,
        "enabledEventTypes": STORED_EVENTS,
        "adminEventsEnabled": True,
        "adminEventsDetailsEnabled": True,
        # Admin events record each key client made and deleted: kept as long as user events.
        "attributes": {
            "adminEventsExpiration": str(EVENTS_EXPIRATION_SECONDS),
            # The levels a sign-in can reach, named in `acr` (docs/security.md).
            "acr.loa.map": json.dumps(ACR_LEVELS),
            # The link in the verification mail of a new account: Keycloak's five minutes are
            # shorter than the wait for a mail can be. Other links keep Keycloak's.
            "actionTokenGeneratedByUserLifespan.verify-email": str(VERIFICATION_LINK_SECONDS),
        },
    }


# Keycloak's English mails that read wrong with the realm's name in them ("a {2} account":
# "a API key portal account"), worded again; MessageFormat, as its theme's: {0} the link,
# {2} the realm's display name, {3} how long the link lasts, '' a quote.
MESSAGES_EN = {
    "emailVerificationBody": (
        "Someone has created an account on the {2} with this email address. If this was you, "
        "click the link below to verify your email address\n\n{0}\n\nThis link will expire "
        "within {3}.\n\nIf you didn''t create this account, just ignore this message."
    ),
    "emailVerificationBodyHtml": (
        "<p>Someone has created an account on the {2} with this email address. If this was "
        'you, click the link below to verify your email address</p><p><a href="{0}">Link to '
        "e-mail address verification</a></p><p>This link will expire within {3}.</p><p>If you "
        "didn''t create this account, just ignore this message.</p>"
    ),
}


def smtp_server() -> dict[str, str]:
    """The SMTP settings the portal sets in the realm; others an operator set stay."""
    server = {
        "host": settings.KEYCLOAK_SMTP_HOST,
        "port": str(settings.KEYCLOAK_SMTP_PORT),
        "from": settings.KEYCLOAK_SMTP_FROM,
        "fromDisplayName": "API key portal",
    }
    if settings.KEYCLOAK_SMTP_SECURITY:  # starttls or ssl
        server["starttls"] = str(settings.KEYCLOAK_SMTP_SECURITY == "starttls").lower()
        server["ssl"] = str(settings.KEYCLOAK_SMTP_SECURITY == "ssl").lower()
    if settings.KEYCLOAK_SMTP_USER:
        server |= {"auth": "true", "user": settings.KEYCLOAK_SMTP_USER}
        server["password"] = settings.KEYCLOAK_SMTP_PASSWORD
    return server


# Levels of authentication (Keycloak's ACR to LoA mapping): the names go into tokens' `acr`.
PASSWORD_LEVEL = "password"  # noqa: S105 - a level's name
SECOND_FACTOR_LEVEL = "second-factor"
ACR_LEVELS = {PASSWORD_LEVEL: 1, SECOND_FACTOR_LEVEL: 2}
# The kinds of Keycloak credential that count as a second factor.
SECOND_FACTORS = ("otp", "webauthn")
# Required actions that enrol a second factor: registered and enabled in the realm.
ENROLMENT_ACTIONS = ("CONFIGURE_TOTP", "webauthn-register")

# The sign-in flow (apikeys/keycloak/signin_flow.py): a copy of Keycloak's `browser` flow,
# bound as the realm's browser flow, whose forms are rebuilt as levels.
SIGNIN_FLOW = "portal browser"
SIGNIN_FORMS = f"{SIGNIN_FLOW} forms"  # the name Keycloak's copy gives the forms sub-flow
# How long a level lasts in Keycloak's session: the realm's SSO session maximum by default.
LEVEL_MAX_AGE_SECONDS = 36000


def signin_flow() -> list[Representation]:
    """The sub-flows of the sign-in flow's forms, in order, each with its executions.

    Level 1 is the password. Level 2 is a one-time password or a passkey, asked only of
    people who have one (others asked for level 2 stay at level 1, "level 2 not available").
    Administrators (the portal-admin role) use a second factor at every sign-in, whatever
    level was asked for, and enrol TOTP at sign-in if they have none.
    """
    return [
        _flow(
            LEVEL_1,
            "Level 1: username and password",
            [
                _level_condition(1),
                _step("auth-username-password-form"),
            ],
        ),
        _flow(
            LEVEL_2,
            "Level 2: a second factor, for people who have one",
            [
                _level_condition(2),
                _step("conditional-user-configured"),
                *_factor(),
            ],
        ),
        _administrators_flow(),
        # Level 2 asked of someone without a second factor on an existing session: both
        # levels skipped would fail the sign-in ("Invalid username or password").
        _flow(
            "portal level 2 not available",
            "No second factor to step up with: level 1",
            [
                _not_run(LEVEL_1, "portal level 1 not run"),
                _not_run(LEVEL_2, "portal level 2 not run"),
                _step("allow-access-authenticator"),
            ],
        ),
    ]


LEVEL_1, LEVEL_2 = "portal password (level 1)", "portal second factor (level 2)"
ADMIN_USES = "portal administrator uses a second factor"


def _administrators_flow() -> Representation:
    """A second factor at every sign-in of a portal-admin, unless level 2 used one already
    (one code, never two); TOTP enrolment there and then for one who has none."""
    role = {"condUserRole": settings.OIDC_ADMIN_ROLE, "negate": "false"}
    unused = {"credentials": "##".join(SECOND_FACTORS), "included": "false"}
    return _flow(
        "portal administrators' second factor",
        "portal-admin must use a second factor",
        [
            _step("conditional-user-role", config=("portal administrators", role)),
            _step("conditional-credential", config=("no second factor used yet", unused)),
            _flow(
                ADMIN_USES,
                "An administrator's one-time password or passkey",
                [
                    _step("conditional-user-configured"),
                    *_factor(),
                ],
            ),
            _flow(
                "portal administrator enrols a second factor",
                "One without: TOTP now",
                [
                    _not_run(ADMIN_USES, "administrator has no second factor"),
                    _step("auth-otp-form"),  # unconfigured and required: CONFIGURE_TOTP
                ],
            ),
        ],
    )


def _factor() -> list[Representation]:
    return [_step("auth-otp-form", "ALTERNATIVE"), _step("webauthn-authenticator", "ALTERNATIVE")]


def _flow(alias: str, description: str, steps: list[Representation]) -> Representation:
    return {"flow": alias, "description": description, "requirement": "CONDITIONAL", "steps": steps}


def _step(
    provider: str, requirement: str = "REQUIRED", config: tuple[str, dict[str, str]] | None = None
) -> Representation:
    return {"provider": provider, "requirement": requirement, "config": config}


def _level_condition(level: int) -> Representation:
    wanted = {"loa-condition-level": str(level), "loa-max-age": str(LEVEL_MAX_AGE_SECONDS)}
    return _step("conditional-level-of-authentication", config=(f"portal level {level}", wanted))


def _not_run(flow: str, alias: str) -> Representation:
    wanted = {"flow_to_check": flow, "check_result": "not-executed"}
    return _step("conditional-sub-flow-executed", config=(alias, wanted))


def admin_role() -> Representation:
    return {"name": settings.OIDC_ADMIN_ROLE, "description": "Administrators of the API key portal"}


def login_client() -> Representation:
    """The portal's sign-in client: confidential, code + PKCE S256, exact URIs, nothing else."""
    portal = settings.PORTAL_URL
    return {
        "clientId": settings.OIDC_RP_CLIENT_ID,
        "name": "API key portal",
        **CONFIDENTIAL,
        "secret": settings.OIDC_RP_CLIENT_SECRET,
        **FLOWS_OFF,
        "standardFlowEnabled": True,
        "fullScopeAllowed": False,
        "baseUrl": f"{portal}/",
        "redirectUris": [f"{portal}/oidc/callback/"],
        "webOrigins": [],
        "attributes": {
            **EXTRA_GRANTS_OFF,
            "pkce.code.challenge.method": "S256",
            "post.logout.redirect.uris": f"{portal}/",
            # Every sign-in asks for the second factor of people who have one, and a request
            # asking for less (acr_values=password) is raised to it.
            "default.acr.values": SECOND_FACTOR_LEVEL,
            "minimum.acr.value": SECOND_FACTOR_LEVEL,
        },
        "defaultClientScopes": ["basic", "profile", "email", "acr"],
        "optionalClientScopes": [],
        # With fullScopeAllowed off, only roles in the client's scope (portal-admin) reach
        # this claim, whatever other roles the user holds.
        "protocolMappers": [portal_roles_mapper(access_token=False)],
    }


def portal_roles_mapper(*, access_token: bool) -> Representation:
    """The `portal-admin` role (the only role in the client's scope) as a claim."""
    return {
        "name": "portal roles",
        "protocol": "openid-connect",
        "protocolMapper": "oidc-usermodel-realm-role-mapper",
        "consentRequired": False,
        "config": {
            "multivalued": "true",
            "claim.name": settings.OIDC_ROLES_CLAIM,
            "jsonType.label": "String",
            "id.token.claim": "true",
            "userinfo.token.claim": "true",
            "access.token.claim": str(access_token).lower(),
            "introspection.token.claim": str(access_token).lower(),
        },
    }


def cli_client() -> Representation:
    """The command-line tool's client: public, code + PKCE S256 on a loopback redirect (any
    port: Keycloak ignores the port of http://127.0.0.1, RFC 8252), and the device grant."""
    return {
        "clientId": settings.CLI_CLIENT_ID,
        "name": "API key portal command-line tool",
        "protocol": "openid-connect",
        "enabled": True,
        "publicClient": True,
        "bearerOnly": False,
        "consentRequired": False,
        **FLOWS_OFF,
        "standardFlowEnabled": True,
        "fullScopeAllowed": False,
        "redirectUris": ["http://127.0.0.1/callback"],
        "webOrigins": [],
        "attributes": {
            **EXTRA_GRANTS_OFF,
            "oauth2.device.authorization.grant.enabled": "true",
            "pkce.code.challenge.method": "S256",
            "post.logout.redirect.uris": "-",
            # (The device grant ignores both: the API refuses its writes, apikeys/api/auth.py.)
            "default.acr.values": SECOND_FACTOR_LEVEL,
            "minimum.acr.value": SECOND_FACTOR_LEVEL,
        },
        "defaultClientScopes": ["basic", "profile", "email", "acr", PORTAL_API_SCOPE],
        "optionalClientScopes": [],
        "protocolMappers": [portal_roles_mapper(access_token=True)],
    }


# The client scope that puts the portal API's audience into the CLI's access tokens.
PORTAL_API_SCOPE = "portal-api"


def portal_api_scope() -> Representation:
    return {
        "name": PORTAL_API_SCOPE,
        "description": "Audience of the API key portal's own JSON API",
        "protocol": "openid-connect",
        "attributes": {
            "include.in.token.scope": "false",
            "display.on.consent.screen": "false",
            MANAGED_ATTRIBUTE: "true",
        },
        "protocolMappers": [
            {
                "name": "audience",
                "protocol": "openid-connect",
                "protocolMapper": "oidc-audience-mapper",
                "consentRequired": False,
                "config": {
                    "included.custom.audience": settings.PORTAL_API_AUDIENCE,
                    "access.token.claim": "true",
                    "id.token.claim": "false",
                    "introspection.token.claim": "true",
                },
            }
        ],
    }


def service_client() -> Representation:
    """The portal's own admin identity: a service account and nothing else."""
    return {
        "clientId": settings.KEYCLOAK_SERVICE_CLIENT_ID,
        "name": "API key portal (admin API identity)",
        **CONFIDENTIAL,
        "secret": settings.KEYCLOAK_SERVICE_CLIENT_SECRET,
        **FLOWS_OFF,
        "serviceAccountsEnabled": True,
        "fullScopeAllowed": False,
        "redirectUris": [],
        "webOrigins": [],
        "attributes": {**EXTRA_GRANTS_OFF, "access.token.lifespan": "300"},
        # Keycloak attaches `service_account` to every service-account client on creation.
        "defaultClientScopes": ["basic", "service_account"],
        "optionalClientScopes": [],
        "protocolMappers": [],
    }


def api_scope(api: Api) -> Representation:
    """The client scope of one catalog API: it puts the API's audience into `aud`."""
    return {
        "name": api.scope_name,
        "description": f"Audience of {api.name}",
        "protocol": "openid-connect",
        "attributes": {
            "include.in.token.scope": "true",
            "display.on.consent.screen": "false",
            MANAGED_ATTRIBUTE: "true",
        },
        "protocolMappers": [
            {
                "name": "audience",
                "protocol": "openid-connect",
                "protocolMapper": "oidc-audience-mapper",
                "consentRequired": False,
                "config": {
                    "included.custom.audience": api.audience,
                    "access.token.claim": "true",
                    "id.token.claim": "false",
                    "introspection.token.claim": "true",
                },
            }
        ],
    }


# Marks a client scope as one of the catalog's permissions: the extension's executor narrows
# a token's permissions to those its request's `scope` names (keycloak-extension/).
PERMISSION_ATTRIBUTE = "portal.permission"


def permission_scope(permission: Permission) -> Representation:
    """The client scope of one permission: its name in the `scope` claim, nothing else (no
    mapper; the description for people stays in the portal)."""
    return {
        "name": permission.name,
        "description": f"Permission of {permission.api.name}",
        "protocol": "openid-connect",
        "attributes": {
            "include.in.token.scope": "true",
            "display.on.consent.screen": "false",
            MANAGED_ATTRIBUTE: "true",
            PERMISSION_ATTRIBUTE: "true",
        },
        "protocolMappers": [],
    }


def key_scopes(key: ApiKey) -> list[str]:
    """A key client's default client scopes: its API's audience, `basic` (for `sub`),
    `service_account` (Keycloak attaches it anyway) and the key's permissions."""
    return [key.api.scope_name, "basic", "service_account", *key.permission_names]


# Keycloak's own client registration (its `clients-registrations` endpoints) is closed to
# everyone: software registers keys at the portal's endpoint, by the portal's rules
# (apikeys/operations/registration.py). A "max clients" policy of 0 refuses every
# registration, anonymous or with one of Keycloak's initial access tokens.
REGISTRATION_POLICY_TYPE = (
    "org.keycloak.services.clientregistration.policy.ClientRegistrationPolicy"
)


def registration_closed() -> list[Representation]:
    return [
        {
            "name": f"API key portal: register at the portal ({kind})",
            "providerId": "max-clients",
            "providerType": REGISTRATION_POLICY_TYPE,
            "subType": kind,
            "config": {"max-clients": ["0"]},
        }
        for kind in ("anonymous", "authenticated")
    ]


def key_client_enabled(key: ApiKey, now: datetime, *, status: str | None = None) -> bool:
    """Whether a key's client may give tokens: the one place this is decided.

    Only an active key, before its expiry, of a holder still there: a team, or an owner who
    is active in Keycloak (a team key outlives the member who made it). `status`
    is the key's status once the operation asking has recorded it (approve asks about
    "active" before the record says so). An unfinished key's client is made as the key will
    be: disabled while it waits for approval.
    """
    status = status or key.status
    if status == ApiKey.Status.UNFINISHED:
        status = ApiKey.Status.PENDING if key.needs_approval else ApiKey.Status.ACTIVE
    return status == ApiKey.Status.ACTIVE and key.expires_at > now and key.holder_active


def expiry_attributes(key: ApiKey) -> dict[str, str]:
    """Keycloak itself refuses the key's secret from its expiry on (checked on 26.7.3),
    whether or not the expiry job has run yet."""
    return {SECRET_EXPIRY_ATTRIBUTE: str(int(key.expires_at.timestamp()))}


def standing(key: ApiKey, *, now: datetime, status: str) -> Representation:
    """The part of a key's client that says whether, and until when, it may get tokens
    (approving and reinstating send it)."""
    attributes = expires_attribute(key)
    if key.uses_secret:
        attributes |= expiry_attributes(key)
    return {"enabled": key_client_enabled(key, now, status=status), "attributes": attributes}


@sensitive_variables()  # the secrets
def new_secret(
    key: ApiKey, secret: str, *, now: datetime, previous: str | None, until: datetime | None
) -> Representation:
    """A rotation in one PUT: the new `secret`, and the `previous` one kept in Keycloak's
    rotated slot until `until`, or (None) the slot emptied so that no older secret works."""
    change: Representation = {"secret": secret}
    if previous is not None and until is not None:
        change["attributes"] = grace_attributes(previous, now=now, until=until)
    else:
        change["attributes"] = dict.fromkeys(grace_attributes("", now=now, until=now), "")
    return change


def enabling(key: ApiKey, now: datetime) -> Representation:
    """Enable a key's client again as an active key (a rotation lifting its suspension)."""
    return {"enabled": key_client_enabled(key, now, status=ApiKey.Status.ACTIVE)}


def grace_end(until: datetime) -> Representation:
    """Cut the previous secret's grace back to `until`."""
    return {"attributes": {ROTATED_EXPIRY_ATTRIBUTE: str(int(until.timestamp()))}}


def public_keys_of(key: ApiKey) -> Representation:
    """A private_key_jwt key's public keys (or JWKS URL), as its client holds them; a
    workload identity key's issuer and subject."""
    if key.uses_workload:
        return {"attributes": workload_attributes(key)}
    return {"attributes": jwt_attributes(key)}


def token_lifespan(api: Api) -> Representation:
    """The lifespan of the access tokens of an API's keys' clients."""
    return {"attributes": {"access.token.lifespan": str(api.access_token_lifespan)}}


def quarantined(*, enabled: bool, now: datetime) -> Representation:
    """Disable a client nobody here owns, claimed as this deployment's, noting when and
    whether it was enabled (to enable it again if it is recovered)."""
    return {
        "enabled": False,
        "attributes": {
            INSTANCE_ATTRIBUTE: settings.PORTAL_INSTANCE_ID,  # claimed: ours now
            QUARANTINED_ATTRIBUTE: str(int(now.timestamp())),
            QUARANTINED_ENABLED_ATTRIBUTE: str(enabled).lower(),
        },
    }


def out_of_quarantine(key: ApiKey, now: datetime) -> Representation:
    """A recovered client leaves quarantine: its notes go, it works as its key says."""
    return {
        "enabled": key_client_enabled(key, now),
        # An empty value removes the attribute.
        "attributes": {QUARANTINED_ATTRIBUTE: "", QUARANTINED_ENABLED_ATTRIBUTE: ""},
    }


def expires_attribute(key: ApiKey) -> dict[str, str]:
    """The expiry the portal keeps on every key's client, for rebuilding a lost record."""
    return {EXPIRES_ATTRIBUTE: str(int(key.expires_at.timestamp()))}


@sensitive_variables()  # the new secret
def key_client(key: ApiKey, *, now: datetime, secret: str | None = None) -> Representation:
    """The whole Keycloak client of a key: sent in one POST (with the new `secret`, if any).

    Without a secret it is what reconcile compares a client with. Only client-credentials is
    on. `fullScopeAllowed` is off and no role is in scope, so tokens carry no roles. Its
    default scopes are `key_scopes`. No customer input goes in:
    names and descriptions stay in the portal; a private_key_jwt key's public keys are the
    JWKS the portal rebuilt from the keys it checked (`apikeys/credentials/public_keys.py`).
    """
    api = key.api
    # Keycloak's id of the client is the portal's to choose when it makes it: the key's own
    # (a client made before that keeps its id). The seal covers it.
    client_uuid = key.keycloak_id or str(key.pk)
    client: Representation = {
        "id": client_uuid,
        "clientId": key.client_id,
        "name": f"API key for {api.name}",
        "description": "Managed by the API key portal; change it there, not here.",
        **CONFIDENTIAL,
        "enabled": key_client_enabled(key, now),
        **FLOWS_OFF,
        "serviceAccountsEnabled": True,
        "fullScopeAllowed": False,
        "frontchannelLogout": False,
        "redirectUris": [],
        "webOrigins": [],
        "attributes": {
            **EXTRA_GRANTS_OFF,
            "access.token.lifespan": str(api.access_token_lifespan),
            "use.refresh.tokens": "false",
            "client_credentials.use_refresh_token": "false",
            **marks(key, client_uuid),
            **expires_attribute(key),
            **networks_attribute(key),
            **dpop_attribute(key),
        },
        "defaultClientScopes": key_scopes(key),
        "optionalClientScopes": [],
        "protocolMappers": [],
    }
    if key.uses_secret:
        # Until the expiry Keycloak refuses the secret by itself; after it, the client
        # is disabled, and Keycloak's secret-rotation executor owns the attribute.
        client["attributes"] |= expiry_attributes(key) if key.expires_at > now else {}
        if secret is not None:
            client["secret"] = secret
    elif key.uses_workload:
        client["clientAuthenticatorType"] = FEDERATED_AUTHENTICATOR
        client["attributes"] |= workload_attributes(key)
    else:
        client["clientAuthenticatorType"] = "client-jwt"
        client["attributes"] |= jwt_attributes(key)
    return client


def dpop_attribute(key: ApiKey) -> dict[str, str]:
    """Keycloak binds the key's tokens to a DPoP proof's key (RFC 9449), if it requires DPoP.
    Never "false" here: reconcile keeps DPoP that an operator turned on (restrictive wins)."""
    return {DPOP_ATTRIBUTE: "true"} if key.requires_dpop else {}


def dpop_change(key: ApiKey) -> Representation:
    """The change that gives a key's client its record's DPoP requirement, on or off."""
    return {"attributes": {DPOP_ATTRIBUTE: str(key.requires_dpop).lower()}}


def workload_attributes(key: ApiKey) -> dict[str, str]:
    """Whose tokens authenticate a workload identity key: its issuer's, for its subject. An
    ended key whose issuer was removed since has none: its client gives no token anyway."""
    if key.workload_issuer is None:
        return {}
    return {
        WORKLOAD_ISSUER_ATTRIBUTE: key.workload_issuer.alias,
        WORKLOAD_SUBJECT_ATTRIBUTE: key.workload_subject,
    }


def workload_provider(issuer: WorkloadIssuer) -> Representation:
    """A trusted workload issuer as Keycloak holds it: an OpenID Connect identity provider that
    only checks client assertions. Nobody signs in through it: it is hidden, link-only, and
    has no authorization endpoint to send a browser to."""
    return {
        "alias": issuer.alias,
        "displayName": f"Workload issuer: {issuer.name}",
        "providerId": "oidc",
        "enabled": True,
        "hideOnLogin": True,
        "linkOnly": True,
        "trustEmail": False,
        "storeToken": False,
        "addReadTokenRoleOnCreate": False,
        "config": {
            "issuer": issuer.issuer,
            "jwksUrl": issuer.jwks_url,
            "useJwksUrl": "true",
            "validateSignature": "true",
            "supportsClientAssertions": "true",
            "supportsClientAssertionReuse": str(issuer.allows_reuse).lower(),
            "fedClientAssertionMaxExp": str(issuer.max_token_age),
            MANAGED_ATTRIBUTE: "true",
            INSTANCE_ATTRIBUTE: settings.PORTAL_INSTANCE_ID,
        },
    }


def marks(key: ApiKey, client_uuid: str) -> dict[str, str]:
    """What ties a key's client to its record, sealed (apikeys/keycloak/key_clients.py): its
    maker, and the team that holds it (empty for a personal key)."""
    owner, api, instance = key.owner.username, key.api.slug, settings.PORTAL_INSTANCE_ID
    team = str(key.team_id or "")
    return (
        {
            MANAGED_ATTRIBUTE: "true",
            KEY_ATTRIBUTE: str(key.pk),
            OWNER_ATTRIBUTE: owner,
            API_ATTRIBUTE: api,
            INSTANCE_ATTRIBUTE: instance,
            SEAL_ATTRIBUTE: seal(
                client_uuid, key.client_id, str(key.pk), owner, api, instance, team
            ),
        }
        | ({TEAM_ATTRIBUTE: team} if team else {})
        | registration_marks(key)
    )


def registration_marks(key: ApiKey) -> dict[str, str]:
    """A registered key's registration token and registration access token (its SHA-256)."""
    if key.registered_with_id is None:
        return {}
    return {
        REGISTERED_WITH_ATTRIBUTE: str(key.registered_with_id),
        REGISTRATION_DIGEST_ATTRIBUTE: key.registration_access_digest,
    }


def holder_marks(key: ApiKey) -> Representation:
    """The change that gives a key's client its record's maker and team (after a transfer, or
    a team mark changed by hand): a personal key's team mark is emptied."""
    return {"attributes": {TEAM_ATTRIBUTE: ""} | marks(key, key.keycloak_id or str(key.pk))}


def networks_attribute(key: ApiKey) -> dict[str, str]:
    """The key's network ranges, for the extension's executor; none: no limit."""
    return {networks.ATTRIBUTE: networks.attribute(key.networks)} if key.networks else {}


def networks_change(key: ApiKey) -> Representation:
    """The change that gives a key's client its record's ranges ("" removes the limit)."""
    return {"attributes": {networks.ATTRIBUTE: networks.attribute(key.networks)}}


def jwt_attributes(key: ApiKey) -> dict[str, str]:
    """Where Keycloak finds a private_key_jwt key's public keys: inline, or the partner's URL."""
    limits = {"token.endpoint.auth.signing.max.exp": str(ASSERTION_MAX_AGE_SECONDS)}
    if key.jwks_url:
        return limits | {
            "use.jwks.url": "true",
            "jwks.url": key.jwks_url,
            "use.jwks.string": "false",
        }
    keys = [public_key.jwk for public_key in key.public_keys.all()]
    return limits | {"use.jwks.string": "true", "jwks.string": jwks(keys), "use.jwks.url": "false"}


def jwks(keys: list[dict[str, Any]]) -> str:
    """A JWKS document in a stable form, so reconcile compares it as a string."""
    return json.dumps({"keys": keys}, sort_keys=True, separators=(",", ":"))


def grace_attributes(previous: str, *, now: datetime, until: datetime) -> dict[str, str]:
    """Keycloak's rotated-secret slot: `previous` gets tokens until `until` (checked on 26.7.3)."""
    return {
        ROTATED_SECRET_ATTRIBUTE: previous,
        ROTATED_CREATED_ATTRIBUTE: str(int(now.timestamp())),
        ROTATED_EXPIRY_ATTRIBUTE: str(int(until.timestamp())),
    }


# Keycloak drops a client's secret expiry on any admin update, unless a client policy with
# the secret-rotation executor applies to the client (preview feature client-secret-rotation
# in 26.7): this one applies to every client carrying the portal's marker. Its expiration
# period only matters for a client without an expiry of its own (it sets one that far
# ahead); reconcile then gives it the key's.
KEY_SECRETS_POLICY = "portal-key-secrets"


# The portal extension's executor that refuses a key's token request from outside its
# network ranges (apikeys/credentials/networks.py).
NETWORKS_EXECUTOR = "apikey-portal-networks"
# Its executor that narrows a token's permissions to those its request's `scope` names.
PERMISSIONS_EXECUTOR = "apikey-portal-permissions"


def key_secrets_profile() -> Representation:
    """The client profile of every key's client: the secret's expiry kept, and (when
    KEYCLOAK_NETWORK_RANGES: the portal's extension is there) token requests refused from
    outside the key's ranges, and tokens narrowed to the permissions their request asks for."""
    executors: list[Representation] = [
        {
            "executor": "secret-rotation",
            "configuration": {
                "expiration-period": str(10 * 365 * 24 * 3600),
                "rotated-expiration-period": "0",
                "remaining-rotation-period": "0",
            },
        }
    ]
    if settings.KEYCLOAK_NETWORK_RANGES:  # the portal's extension is in Keycloak
        executors.append({"executor": NETWORKS_EXECUTOR, "configuration": {}})
        executors.append({"executor": PERMISSIONS_EXECUTOR, "configuration": {}})
    return {
        "name": KEY_SECRETS_POLICY,
        "description": "API key portal: keep each key's secret expiry across admin updates, "
        "and its network ranges",
        "executors": executors,
    }


def key_secrets_policy() -> Representation:
    return {
        "name": KEY_SECRETS_POLICY,
        "description": "API key portal: the clients of API keys",
        "enabled": True,
        "conditions": [
            {
                "condition": "client-attributes",
                "configuration": {
                    "attributes": json.dumps([{"key": MANAGED_ATTRIBUTE, "value": "true"}])
                },
            }
        ],
        "profiles": [KEY_SECRETS_POLICY],
    }


def is_managed(client: Representation) -> bool:
    """True if the client carries the portal's marker (made by the portal for a key)."""
    return (client.get("attributes") or {}).get(MANAGED_ATTRIBUTE) == "true"


def is_managed_provider(provider: Representation) -> bool:
    """True if the identity provider carries the portal's marker (a trusted workload issuer)."""
    return (provider.get("config") or {}).get(MANAGED_ATTRIBUTE) == "true"


def is_own_provider(provider: Representation) -> bool:
    """A trusted workload issuer's provider made by this portal deployment."""
    config = provider.get("config") or {}
    return is_managed_provider(provider) and config.get(INSTANCE_ATTRIBUTE) in (
        None,
        settings.PORTAL_INSTANCE_ID,
    )
