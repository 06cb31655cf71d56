"""Settings for the API key portal: one module, driven by environment variables.

`PORTAL_PROFILE` picks the profile: `production` (the default, failing closed: every secret
must be given), `dev` (what `bin/run` uses: loopback defaults, no configuration) or `test`
(dev defaults, used by the test suite). Every setting `NAME` may instead be read from the
file named by `NAME_FILE`, for mounted secrets. See `.env.example` for the full list.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from pythonjsonlogger.core import RESERVED_ATTRS

from portal.loopback import is_loopback
from portal.secret_policy import DEV_EVENTS_SECRET, HOW, events_secret_problem, weakness

BASE_DIR = Path(__file__).resolve().parent.parent

PROFILE = os.environ.get("PORTAL_PROFILE", "production")
if PROFILE not in {"production", "dev", "test"}:
    raise ImproperlyConfigured(f"PORTAL_PROFILE must be production, dev or test, not {PROFILE!r}")
LOCAL = PROFILE != "production"


def env(name: str, default: str | None = None, *, local: str | None = None) -> str:
    """`name` from the environment or `name_FILE`; else `local` (dev/test only), else `default`."""
    if os.environ.get(name):  # set but empty counts as unset, as in .env.example
        return os.environ[name]
    if os.environ.get(f"{name}_FILE"):
        return Path(os.environ[f"{name}_FILE"]).read_text().strip()
    if LOCAL and local is not None:
        return local
    if default is not None:
        return default
    raise ImproperlyConfigured(f"Set {name} (or {name}_FILE); it has no default in production.")


def env_list(name: str, default: str | None = None, *, local: str | None = None) -> list[str]:
    return [item.strip() for item in env(name, default, local=local).split(",") if item.strip()]


def secret(name: str, *, local: str, min_length: int = 32) -> str:
    """A secret setting; production refuses placeholders and short values, naming `name`."""
    value = env(name, local=local)
    if not LOCAL and (problem := weakness(name, value, min_length=min_length)):
        raise ImproperlyConfigured(f"{problem} {HOW}")
    return value


DEBUG = PROFILE == "dev" and env("DJANGO_DEBUG", "true") == "true"
SECRET_KEY = secret(
    "DJANGO_SECRET_KEY", local="dev-only-insecure-secret-key-not-for-production", min_length=50
)

# The portal's public address: exact redirect URIs registered in Keycloak derive from it.
PORTAL_URL = env("PORTAL_URL", local="http://127.0.0.1:8000").rstrip("/")
ALLOWED_HOSTS = env_list(
    "DJANGO_ALLOWED_HOSTS", urlsplit(PORTAL_URL).hostname, local="127.0.0.1,localhost"
)
CSRF_TRUSTED_ORIGINS = [PORTAL_URL]
if LOCAL and not (
    is_loopback(urlsplit(PORTAL_URL).hostname) and all(map(is_loopback, ALLOWED_HOSTS))
):
    # Their secrets are published defaults: the dev and test profiles serve loopback only.
    raise ImproperlyConfigured(
        f"The {PROFILE} profile serves loopback only; PORTAL_URL and DJANGO_ALLOWED_HOSTS must "
        "name 127.0.0.1, ::1 or localhost. Use PORTAL_PROFILE=production anywhere else."
    )

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "mozilla_django_oidc",
    "django_htmx",
    "template_partials",
    "django_ratelimit",
    "ninja",  # its Swagger UI assets, served by the portal (no CDN)
    "django_prometheus",
    "apikeys",
]

MIDDLEWARE = [
    "portal.request_ids.RequestIdMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    *(["portal.loopback.LoopbackOnlyMiddleware"] if LOCAL else []),
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "apikeys.views.signin.KeycloakSessionMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "apikeys.api.middleware.ApiRequestMiddleware",
    "apikeys.views.signin.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "apikeys.views.outcomes.RefusalMiddleware",
    "apikeys.views.step_up.StepUpMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            "builtins": ["apikeys.templatetags.dates"],  # `when`, `dates_whole`
        },
    },
]

# SQLite is the embedded default of the run command; DATABASE_URL selects PostgreSQL.
_database_password = None if LOCAL else urlsplit(env("DATABASE_URL")).password
if _database_password and (
    problem := weakness("The password in DATABASE_URL", _database_password, min_length=16)
):
    raise ImproperlyConfigured(f"{problem} {HOW}")
DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", local=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"), conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several users at once on the embedded default: a write transaction takes SQLite's one
    # write lock when it begins (IMMEDIATE), so two never deadlock upgrading a read lock
    # ("database is locked" at once); a writer waits for the lock up to SQLITE_BUSY_TIMEOUT,
    # well above KEYCLOAK_TIMEOUT, since a key's lock is held across one Keycloak call; and
    # WAL lets pages read while a key is being written.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": int(env("SQLITE_BUSY_TIMEOUT", str(6 * int(env("KEYCLOAK_TIMEOUT", "5"))))),
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
    }
    # Tests use a file too (not Django's in-memory default), so they meet the same locking.
    DATABASES["default"]["TEST"] = {"NAME": f"{DATABASES['default']['NAME']}.test"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "apikeys.User"

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
# Locally whitenoise serves straight from the source folders, with no collectstatic step.
WHITENOISE_USE_FINDERS = LOCAL
WHITENOISE_AUTOREFRESH = LOCAL
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if LOCAL
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Keycloak. KEYCLOAK_URL is how the portal reaches Keycloak; KEYCLOAK_PUBLIC_URL is how
# browsers do (they differ behind Docker's network).
KEYCLOAK_URL = env("KEYCLOAK_URL", local="http://127.0.0.1:8080").rstrip("/")
KEYCLOAK_PUBLIC_URL = env("KEYCLOAK_PUBLIC_URL", KEYCLOAK_URL).rstrip("/")
KEYCLOAK_REALM = env("KEYCLOAK_REALM", "portal")
KEYCLOAK_TIMEOUT = int(env("KEYCLOAK_TIMEOUT", "5"))
# bootstrap_keycloak's calls, which include one-time heavy ones (creating the realm takes
# Keycloak 10-60 s on a busy small machine): seconds each may take, and how long in all it
# waits for a realm Keycloak is still creating.
KEYCLOAK_BOOTSTRAP_TIMEOUT = int(env("KEYCLOAK_BOOTSTRAP_TIMEOUT", "180"))
# This deployment's name, stamped on every key client it makes: reconcile and the jobs act
# only on clients stamped with it, so two portals (staging and production, an old and a new
# deployment) can share a realm. Required in production; never change it once keys exist.
PORTAL_INSTANCE_ID = env("PORTAL_INSTANCE_ID", local=PROFILE)
if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", PORTAL_INSTANCE_ID):
    raise ImproperlyConfigured(
        "PORTAL_INSTANCE_ID must be 1-40 characters: lower-case letters, digits and dashes."
    )
# A marked client of this portal with no record whose owner or API cannot be found is
# disabled (quarantined), and deleted after this many days.
QUARANTINE_DAYS = int(env("QUARANTINE_DAYS", "30"))
if QUARANTINE_DAYS < 1:
    raise ImproperlyConfigured("QUARANTINE_DAYS must be at least 1.")
# The portal's own run-time identity: a service account with least privilege.
KEYCLOAK_SERVICE_CLIENT_ID = env("KEYCLOAK_SERVICE_CLIENT_ID", "portal-service")
KEYCLOAK_SERVICE_CLIENT_SECRET = secret(
    "KEYCLOAK_SERVICE_CLIENT_SECRET", local="dev-only-portal-service-secret"
)

_realm_public = f"{KEYCLOAK_PUBLIC_URL}/realms/{KEYCLOAK_REALM}/protocol/openid-connect"
_realm_back = f"{KEYCLOAK_URL}/realms/{KEYCLOAK_REALM}/protocol/openid-connect"
# Where partner applications exchange a key's client id and secret for an access token.
TOKEN_ENDPOINT = f"{_realm_public}/token"

# Access tokens that APIs accept (apikeys/credentials/bearer.py): tokens are issued on the public
# URL, so that is their `iss`; the keys to check them come from the back-channel JWKS.
TOKEN_ISSUER = env("TOKEN_ISSUER", f"{KEYCLOAK_PUBLIC_URL}/realms/{KEYCLOAK_REALM}")
TOKEN_LEEWAY_SECONDS = int(env("TOKEN_LEEWAY_SECONDS", "10"))
JWKS_REFETCH_SECONDS = int(env("JWKS_REFETCH_SECONDS", "10"))
# The realm's keys are fetched again this often, and keys it no longer publishes dropped.
JWKS_MAX_AGE_SECONDS = int(env("JWKS_MAX_AGE_SECONDS", "300"))
# The portal's own JSON API (/api/v1/): tokens of the command-line client, for this audience.
PORTAL_API_AUDIENCE = env("PORTAL_API_AUDIENCE", "portal-api")
CLI_CLIENT_ID = env("CLI_CLIENT_ID", "portal-cli")
# The audience of the sample API the portal serves itself (GET /api/v1/whoami/).
WHOAMI_AUDIENCE = env("WHOAMI_AUDIENCE", "sample-api")
# Revocation feeds (apikeys/credentials/revocations.py): a resource server in strict mode keeps the
# set of its API's keys no longer in good standing, read again from the portal this often
# (seconds); once its copy is older than REVOCATION_FEED_MAX_AGE, it refuses every token
# (503) rather than trust keys it can no longer check. A resource server of another process
# names its feed and the feed's token (made by `manage.py revocation_feed_token <api>`).
REVOCATION_FEED_REFRESH_SECONDS = float(env("REVOCATION_FEED_REFRESH_SECONDS", "2"))
REVOCATION_FEED_MAX_AGE = float(env("REVOCATION_FEED_MAX_AGE", "30"))
REVOCATION_FEED_URL = env("REVOCATION_FEED_URL", "")
REVOCATION_FEED_TOKEN = env("REVOCATION_FEED_TOKEN", "")
# DPoP proofs (apikeys/credentials/dpop.py): how old a proof may be (its `iat`; a client makes
# one per request, just before it), and how far ahead of the API's clock (a client's clock
# running fast). Used proofs are remembered that long, so that none is accepted twice: in a
# cache every process shares (a CACHES alias: in production the Redis of "ratelimit"), or in
# each process's memory ("", the dev and test profiles: a proof replayed to another process of
# the API within the window is then accepted there).
DPOP_PROOF_MAX_AGE_SECONDS = int(env("DPOP_PROOF_MAX_AGE_SECONDS", "60"))
DPOP_PROOF_CLOCK_SKEW_SECONDS = int(env("DPOP_PROOF_CLOCK_SKEW_SECONDS", "5"))
DPOP_REPLAY_CACHE = env("DPOP_REPLAY_CACHE", "ratelimit", local="")

# Keycloak's event listener (keycloak-extension/) pushes account changes and client logins
# to /keycloak/events, signed as Standard Webhooks with this shared secret (whsec_ + base64,
# the listener's `secret` option). Empty: no push; the polling jobs alone follow Keycloak.
# KEYCLOAK_PUSH_EVENTS: whether bootstrap turns the realm's listener on (the tests turn it
# on only where they test it).
KEYCLOAK_EVENTS_SECRET = env("KEYCLOAK_EVENTS_SECRET", "", local=DEV_EVENTS_SECRET)
_events_problem = KEYCLOAK_EVENTS_SECRET and events_secret_problem(
    KEYCLOAK_EVENTS_SECRET, production=not LOCAL
)
if _events_problem:
    raise ImproperlyConfigured(f"KEYCLOAK_EVENTS_SECRET: {_events_problem}")
_push = env(
    "KEYCLOAK_PUSH_EVENTS", "true" if KEYCLOAK_EVENTS_SECRET and PROFILE != "test" else "false"
)
if _push not in ("true", "false") or (_push == "true" and not KEYCLOAK_EVENTS_SECRET):
    raise ImproperlyConfigured(
        "KEYCLOAK_PUSH_EVENTS must be true or false, and true needs KEYCLOAK_EVENTS_SECRET."
    )
KEYCLOAK_PUSH_EVENTS = _push == "true"
# Event ids are remembered this long to apply each once (longer than the listener retries).
KEYCLOAK_EVENT_IDS_KEPT_HOURS = int(env("KEYCLOAK_EVENT_IDS_KEPT_HOURS", "24"))

# API keys.
MAX_LIVE_KEYS_PER_USER = int(env("MAX_LIVE_KEYS_PER_USER", "10"))
# Keys one customer may make in 24 hours, revoked ones included (create-revoke loops).
MAX_KEYS_MADE_PER_DAY = int(env("MAX_KEYS_MADE_PER_DAY", "50"))
# Whether Keycloak enforces keys' network ranges: its client profile uses the executor of the
# portal's extension (keycloak-extension/, in Keycloak's providers/). Off: no key can be given
# ranges (bootstrap_keycloak refuses to go on if it is on and the extension is missing).
KEYCLOAK_NETWORK_RANGES = env("KEYCLOAK_NETWORK_RANGES", "true") == "true"
# Whether administrators may trust workload issuers (workload identity keys). On, the portal's
# Keycloak identity holds manage-identity-providers, which reaches every identity provider of
# the realm, their mappers included: an operator opts in (docs/security.md says what it costs).
KEYCLOAK_WORKLOAD_ISSUERS = env("KEYCLOAK_WORKLOAD_ISSUERS", "false", local="true") == "true"
# Teams: live keys per team (a team's own setting overrides it), and the days an invitation
# to join one stays valid.
MAX_LIVE_KEYS_PER_TEAM = int(env("MAX_LIVE_KEYS_PER_TEAM", "100"))
MAX_TEAMS_PER_USER = int(env("MAX_TEAMS_PER_USER", "10"))  # teams one person may own
TEAM_INVITATION_DAYS = int(env("TEAM_INVITATION_DAYS", "7"))
# Registration tokens (software registering keys, RFC 7591): the longest a token may live.
REGISTRATION_TOKEN_MAX_DAYS = int(env("REGISTRATION_TOKEN_MAX_DAYS", "90"))
# Requests per user and per client address on the key actions (apikeys/limits.py), and on
# the registration page (per address), as django-ratelimit rates: count/period.
RATE_LIMITS = {
    "keys": {
        "user": env("RATE_LIMIT_KEYS_PER_USER", "30/m"),
        "address": env("RATE_LIMIT_KEYS_PER_ADDRESS", "60/m"),
    },
    "register": {"address": env("RATE_LIMIT_REGISTER_PER_ADDRESS", "10/h")},
    # Software registering keys at /register (RFC 7591), per address.
    "registration": {"address": env("RATE_LIMIT_REGISTRATIONS_PER_ADDRESS", "60/m")},
    # Reports of found secrets (the secret-scanning endpoint), per reporting address.
    "leaks": {"address": env("RATE_LIMIT_LEAK_REPORTS_PER_ADDRESS", "120/m")},
    # Webhook endpoint changes and test events, per user.
    "webhooks": {
        "user": env("RATE_LIMIT_WEBHOOKS_PER_USER", "30/m"),
        "address": env("RATE_LIMIT_WEBHOOKS_PER_ADDRESS", "60/m"),
    },
    # "Check a secret": each try is one guess, so fewer.
    "check": {
        "user": env("RATE_LIMIT_CHECKS_PER_USER", "10/m"),
        "address": env("RATE_LIMIT_CHECKS_PER_ADDRESS", "30/m"),
    },
}
# The counters live in a cache shared by every process: Redis in production. The dev and test
# profiles serve from one process, so its memory will do there.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "ratelimit": (
        {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "ratelimit"}
        if LOCAL and not os.environ.get("RATELIMIT_CACHE_URL")
        else {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": env("RATELIMIT_CACHE_URL"),
        }
    ),
}
RATELIMIT_USE_CACHE = "ratelimit"
if not 0 < DPOP_PROOF_MAX_AGE_SECONDS <= 600 or not 0 <= DPOP_PROOF_CLOCK_SKEW_SECONDS <= 60:
    raise ImproperlyConfigured(
        "DPOP_PROOF_MAX_AGE_SECONDS must be 1 to 600, DPOP_PROOF_CLOCK_SKEW_SECONDS 0 to 60."
    )
if DPOP_REPLAY_CACHE and DPOP_REPLAY_CACHE not in CACHES:
    raise ImproperlyConfigured(
        f"DPOP_REPLAY_CACHE names no cache of CACHES ({', '.join(CACHES)}); empty: each "
        "process's memory."
    )
RATELIMIT_IP_META_KEY = "REMOTE_ADDR"  # unused: the portal's own keys read TRUSTED_PROXIES
SILENCED_SYSTEM_CHECKS = [
    # django-ratelimit lists only django-redis; Django's own RedisCache increments
    # atomically too (INCRBY). Memory is refused as unshared: it is, but the dev and test
    # profiles serve from one process, and production may not use it.
    "django_ratelimit.W001",
    *(["django_ratelimit.E003"] if LOCAL else []),
]
# Public keys one private_key_jwt key may hold at once (two cover a rotation).
MAX_PUBLIC_KEYS_PER_KEY = int(env("MAX_PUBLIC_KEYS_PER_KEY", "5"))
# Addresses the portal itself fetches (a partner's JWKS URL, to check it) must be public and
# https. The dev and test profiles also allow http and private or loopback addresses.
OUTBOUND_ALLOW_PRIVATE = env("OUTBOUND_ALLOW_PRIVATE", "true" if LOCAL else "false") == "true"
OUTBOUND_TIMEOUT = int(env("OUTBOUND_TIMEOUT", "5"))
# The ports such addresses may name, in production.
OUTBOUND_PORTS = [int(port) for port in env_list("OUTBOUND_PORTS", "443")]
# Whether private_key_jwt keys may name a JWKS URL. Keycloak then fetches that URL itself,
# from inside your network, whenever it likes, to wherever the name points then (the portal's
# own check of it cannot stop a DNS answer that changes later): off in production unless
# Keycloak's outbound traffic is restricted (an egress proxy or firewall) and you turn it on.
JWKS_URLS_ALLOWED = env("JWKS_URLS_ALLOWED", "true" if LOCAL else "false") == "true"

# Leaked secrets (apikeys/operations/leaks.py). The key of the keyed fingerprint kept of every
# secret the portal issues: a found secret is recognised by it, never recovered from it. Changing it
# makes every fingerprint kept so far unrecognisable. It also seals each key client's marks
# (apikeys/keycloak/key_clients.py: `seal`), which only the portal can, so a restore rebuilds
# records only from clients it made; reconcile seals them again after a change.
SECRET_FINGERPRINT_KEY = secret(
    "SECRET_FINGERPRINT_KEY", local="dev-only-fingerprint-key-not-for-production"
)
# Whose signed reports of found secrets are trusted: a list in the format GitHub publishes
# ({"public_keys": [{"key_identifier": ..., "key": PEM}]}), from an https URL or a file.
SECRET_SCANNING_KEYS = env(
    "SECRET_SCANNING_KEYS", "https://api.github.com/meta/public_keys/secret_scanning"
)

# Webhooks (apikeys/operations/webhooks.py). Endpoint signing secrets are kept encrypted under a key
# derived from this one; changing it makes every endpoint's secret unreadable (rotate them).
WEBHOOK_ENCRYPTION_KEY = secret(
    "WEBHOOK_ENCRYPTION_KEY", local="dev-only-webhook-encryption-key-not-for-production"
)
MAX_WEBHOOK_ENDPOINTS_PER_USER = int(env("MAX_WEBHOOK_ENDPOINTS_PER_USER", "5"))
# Seconds a delivery may take; at least how long failed deliveries are retried (hours); the
# first retry's delay (seconds, doubling each time, with jitter, up to an hour); how long a
# worker holds a message it delivers (seconds: if it dies, another takes it after that); how
# often an idle worker looks for messages (seconds).
WEBHOOK_TIMEOUT = float(env("WEBHOOK_TIMEOUT", "5"))
WEBHOOK_RETRY_HOURS = float(env("WEBHOOK_RETRY_HOURS", "24"))
WEBHOOK_BACKOFF_SECONDS = float(env("WEBHOOK_BACKOFF_SECONDS", "10"))
WEBHOOK_LEASE_SECONDS = float(env("WEBHOOK_LEASE_SECONDS", "60"))
WEBHOOK_POLL_SECONDS = float(env("WEBHOOK_POLL_SECONDS", "0.5"))

DEFAULT_KEY_LIFETIME_DAYS = int(env("DEFAULT_KEY_LIFETIME_DAYS", "90"))
# The dormant-key policy (apikeys/operations/dormancy.py): an active key unused (no token requested)
# for DORMANT_KEY_DAYS is announced to its owner (mail, key.unused webhook); after
# DORMANT_SUSPEND_DAYS it is suspended, and its owner can reinstate it in one click. 0 turns
# the suspension off. Each API may override both (its admin page).
DORMANT_KEY_DAYS = int(env("DORMANT_KEY_DAYS", "30"))
DORMANT_SUSPEND_DAYS = int(env("DORMANT_SUSPEND_DAYS", "90"))
if DORMANT_KEY_DAYS < 1 or (DORMANT_SUSPEND_DAYS and DORMANT_SUSPEND_DAYS <= DORMANT_KEY_DAYS):
    raise ImproperlyConfigured(
        "DORMANT_KEY_DAYS must be at least 1, and DORMANT_SUSPEND_DAYS 0 (never) or more "
        "than DORMANT_KEY_DAYS, so that owners are warned before a suspension."
    )
# Owners are emailed when a key has this many days (or fewer) left, once per threshold.
EXPIRY_REMINDER_DAYS = sorted(
    (int(d) for d in env_list("EXPIRY_REMINDER_DAYS", "30,7,1")), reverse=True
)
# Who hears of new approval requests and gets the daily digest, besides portal admins.
APPROVAL_NOTIFY_EMAILS = env_list("APPROVAL_NOTIFY_EMAILS", "")

# Sign-in with mozilla-django-oidc: authorization code + PKCE (S256), users matched on `sub`.
AUTHENTICATION_BACKENDS = ["apikeys.views.signin.KeycloakBackend"]
OIDC_RP_CLIENT_ID = env("OIDC_CLIENT_ID", "portal")
OIDC_RP_CLIENT_SECRET = secret("OIDC_CLIENT_SECRET", local="dev-only-portal-login-secret")
OIDC_RP_SIGN_ALGO = "RS256"
OIDC_RP_SCOPES = "openid email profile"
OIDC_USE_PKCE = True
OIDC_PKCE_CODE_CHALLENGE_METHOD = "S256"
OIDC_STORE_ID_TOKEN = True  # the id_token_hint for Keycloak's logout
OIDC_OP_AUTHORIZATION_ENDPOINT = f"{_realm_public}/auth"
OIDC_OP_REGISTRATION_ENDPOINT = f"{_realm_public}/registrations"
OIDC_OP_LOGOUT_ENDPOINT = f"{_realm_public}/logout"
OIDC_OP_TOKEN_ENDPOINT = f"{_realm_back}/token"
OIDC_OP_USER_ENDPOINT = f"{_realm_back}/userinfo"
OIDC_OP_JWKS_ENDPOINT = f"{_realm_back}/certs"
OIDC_OP_LOGOUT_URL_METHOD = "apikeys.views.signin.keycloak_logout_url"
OIDC_TIMEOUT = KEYCLOAK_TIMEOUT
OIDC_ADMIN_ROLE = "portal-admin"
# Keycloak's account console, where people add a one-time password or a passkey.
KEYCLOAK_ACCOUNT_URL = f"{KEYCLOAK_PUBLIC_URL}/realms/{KEYCLOAK_REALM}/account/"
# How often a signed-in session is confirmed with Keycloak (apikeys/views/signin.py).
KEYCLOAK_SESSION_CHECK_SECONDS = int(env("KEYCLOAK_SESSION_CHECK_SECONDS", "60"))
# How recent a second factor a sensitive act needs, of people who have one (apikeys/assurance.py).
STEP_UP_WINDOW_SECONDS = int(env("STEP_UP_WINDOW_SECONDS", "600"))
if not 60 <= STEP_UP_WINDOW_SECONDS <= 86400:
    raise ImproperlyConfigured("STEP_UP_WINDOW_SECONDS must be between 60 and 86400 seconds.")
OIDC_ROLES_CLAIM = "portal_roles"
LOGIN_URL = "oidc_authentication_init"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "landing"

# Email: the portal's own mail, and the SMTP server Keycloak is configured with.
EMAIL_HOST = env("EMAIL_HOST", local="127.0.0.1")
EMAIL_PORT = int(env("EMAIL_PORT", local="1025"))
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env("EMAIL_USE_TLS", "false" if LOCAL else "true") == "true"
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", local="API key portal <portal@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
KEYCLOAK_SMTP_HOST = env("KEYCLOAK_SMTP_HOST", EMAIL_HOST)
KEYCLOAK_SMTP_PORT = int(env("KEYCLOAK_SMTP_PORT", str(EMAIL_PORT)))
KEYCLOAK_SMTP_FROM = env("KEYCLOAK_SMTP_FROM", local="portal@localhost")
# "starttls", "ssl" or "none"; a login if the server wants one (bootstrap sets them in the
# realm; settings an operator made in Keycloak and these do not name stay as they are).
KEYCLOAK_SMTP_SECURITY = env("KEYCLOAK_SMTP_SECURITY", "starttls" if EMAIL_USE_TLS else "none")
if KEYCLOAK_SMTP_SECURITY not in {"starttls", "ssl", "none"}:
    raise ImproperlyConfigured("KEYCLOAK_SMTP_SECURITY must be starttls, ssl or none.")
KEYCLOAK_SMTP_SECURITY = "" if KEYCLOAK_SMTP_SECURITY == "none" else KEYCLOAK_SMTP_SECURITY
KEYCLOAK_SMTP_USER = env("KEYCLOAK_SMTP_USER", EMAIL_HOST_USER)
KEYCLOAK_SMTP_PASSWORD = env("KEYCLOAK_SMTP_PASSWORD", EMAIL_HOST_PASSWORD)

# Security: secure by default, relaxed only for the plain-HTTP loopback profiles.
SESSION_COOKIE_SECURE = not LOCAL
CSRF_COOKIE_SECURE = not LOCAL
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = 8 * 3600
SECURE_SSL_REDIRECT = not LOCAL and env("SECURE_SSL_REDIRECT", "true") == "true"
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# How many reverse proxies in front of the portal append to X-Forwarded-For (0: none; the
# audit trail then records the connecting address).
TRUSTED_PROXIES = int(env("TRUSTED_PROXIES", "0"))
SECURE_HSTS_SECONDS = 0 if LOCAL else int(env("SECURE_HSTS_SECONDS", "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = not LOCAL
SECURE_HSTS_PRELOAD = not LOCAL
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
        "form-action": [SELF, KEYCLOAK_PUBLIC_URL],
    }
}

# Variables and POST fields marked sensitive (new secrets) are starred in every error page and
# report, the dev profile's debug page included.
DEFAULT_EXCEPTION_REPORTER_FILTER = "portal.error_reports.AlwaysSafeExceptionReporterFilter"

# Every line carries the request id (or the job run's): one per line of text, or JSON
# (python-json-logger) for a log collector.
LOG_FORMAT = env("LOG_FORMAT", "plain", local="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured("LOG_FORMAT must be plain or json.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "portal.request_ids.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            # Django's log records carry the request (its query string may hold an OIDC
            # code): the plain format never printed it, neither does this one.
            "reserved_attrs": [*RESERVED_ATTRS, "request", "server_time"],
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
}
# Prometheus' scrape of /metrics sends this as a bearer token. Unset: /metrics is not
# served in production (in dev and test it is open).
METRICS_TOKEN = env("METRICS_TOKEN", "", local="")
if (
    METRICS_TOKEN
    and not LOCAL
    and (problem := weakness("METRICS_TOKEN", METRICS_TOKEN, min_length=32))
):
    raise ImproperlyConfigured(f"{problem} {HOW}")
