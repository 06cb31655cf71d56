"""The JSON API and the CLI: a key made through the API end to end, and the CLI's start-up.

1. gunicorn serves the portal (2 sync workers). A key is made by `POST /api/v1/keys` with a
   real access token of the CLI's client, over HTTP, and, as the baseline, by one raw
   `POST /clients` with the same representation straight to Keycloak. Median of
   BENCH_ROUNDS (20) each; the ratio is what the portal adds (token check, validation, the
   record, the quota's lock, the audit entry, the answer).
2. The CLI's start-up: wall clock of `apikeys --help` and of `apikeys keys list` with a
   valid token (against the same gunicorn), beside `python -c pass`, median of 20 runs each.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import median_ms, setup_django, timed

setup_django()

import requests
from django.conf import settings
from django.utils import timezone

from apikeys.credentials.secret_format import new_secret
from apikeys.keycloak import client as keycloak
from apikeys.keycloak import desired
from apikeys.models import Api, ApiKey, User
from devstack.process import http_ok, wait_until
from tests.oidc import cli_tokens

ROOT = Path(__file__).resolve().parent.parent
ADDRESS = "127.0.0.1:8767"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "20"))
PASSWORD = "correct horse battery staple"  # noqa: S105 - a bench user's, on the bench realm


def bench_account(admin: keycloak.Connection) -> tuple[str, str]:
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    admin.admin.create_user(
        {
            "username": email,
            "email": email,
            "emailVerified": True,
            "enabled": True,
            "firstName": "Bench",
            "lastName": "User",
            "credentials": [{"type": "password", "value": PASSWORD, "temporary": False}],
        }
    )
    return email, PASSWORD


def gunicorn() -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "RATE_LIMIT_KEYS_PER_USER": "100000/m",
        "RATE_LIMIT_KEYS_PER_ADDRESS": "100000/m",
        "MAX_KEYS_MADE_PER_DAY": "100000",
        "MAX_LIVE_KEYS_PER_USER": "100000",
    }
    command = [sys.executable, "-m", "gunicorn", "portal.wsgi", "-b", ADDRESS, "-w", "2"]
    command += ["--access-logfile", "/dev/null", "--error-logfile", "-", "--log-level", "warning"]
    return subprocess.Popen(command, env=env)


def cli_runs(args: list[str], env: dict[str, str], runs: int = 20) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(args, env=env, capture_output=True, check=False)
        samples.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"{args} failed: {done.stderr.decode()}")
    return statistics.median(samples) * 1000


def main() -> None:
    admin = keycloak.connect(
        realm=settings.KEYCLOAK_REALM,
        username=os.environ["KEYCLOAK_BOOTSTRAP_ADMIN_USERNAME"],
        password=os.environ["KEYCLOAK_BOOTSTRAP_ADMIN_PASSWORD"],
        user_realm="master",
    )
    api = Api.objects.get(slug="sample")
    email, password = bench_account(admin)
    tokens = cli_tokens(email, password)
    server = gunicorn()
    base = f"http://{ADDRESS}"
    made: list[str] = []
    try:
        wait_until(
            lambda: http_ok(f"{base}/health/"), timeout=180, what="gunicorn", log_file=Path("-")
        )
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {tokens['access_token']}"
        through_api, raw = [], []
        for n in range(ROUNDS):

            def create(n: int = n) -> None:
                response = session.post(
                    f"{base}/api/v1/keys", json={"name": f"bench {n}", "api": api.slug}, timeout=30
                )
                if response.status_code != 201:
                    raise SystemExit(f"the API answered {response.status_code}: {response.text}")

            through_api.append(timed(create))
            owner = User.objects.get(email=email)
            key = ApiKey(owner=owner, api=api, name="raw", expires_at=timezone.now())
            key.client_id = f"{ApiKey.CLIENT_ID_PREFIX}{key.pk.hex}"
            rep = desired.key_client(key, now=timezone.now(), secret=new_secret())

            def create_raw(rep: dict[str, object] = rep) -> None:
                made.append(keycloak.create_client(admin, rep))

            raw.append(timed(create_raw))

        cli_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
            "PYTHONPATH": str(ROOT / "cli" / "src"),
        }
        with tempfile.TemporaryDirectory() as home:
            cli_env["XDG_CONFIG_HOME"] = home
            credentials = Path(home) / "apikeys" / "credentials.json"
            credentials.parent.mkdir(parents=True)
            oidc = (
                f"{settings.KEYCLOAK_URL}/realms/{settings.KEYCLOAK_REALM}/protocol/openid-connect"
            )
            credentials.write_text(
                json.dumps(
                    {
                        "portal": base,
                        "client_id": settings.CLI_CLIENT_ID,
                        "token_endpoint": f"{oidc}/token",
                        "revocation_endpoint": f"{oidc}/revoke",
                        "access_token": tokens["access_token"],
                        "refresh_token": tokens["refresh_token"],
                        "expires_at": time.time() + tokens["expires_in"],
                    }
                )
            )
            cli = [sys.executable, "-m", "apikeys_cli"]
            floor = cli_runs([sys.executable, "-c", "pass"], cli_env)
            help_ms = cli_runs([*cli, "--help"], cli_env)
            list_ms = cli_runs([*cli, "keys", "list"], cli_env)
    finally:
        server.terminate()
        for client_uuid in made:
            keycloak.delete_client(admin, client_uuid)
        for key in ApiKey.objects.filter(owner__email=email):
            keycloak.delete_client(admin, key.keycloak_id)
        ApiKey.objects.filter(owner__email=email).update(status=ApiKey.Status.REVOKED)

    api_ms, raw_ms = median_ms(through_api), median_ms(raw)
    print(f"make a key, median of {ROUNDS}:")
    print(f"  through the API, HTTP to gunicorn  {api_ms:7.1f} ms")
    print(f"  one raw POST /clients to Keycloak  {raw_ms:7.1f} ms")
    print(f"  ratio API / raw                    {api_ms / raw_ms:7.2f}")
    print("CLI start-up, wall clock, median of 20 runs:")
    print(f"  python -c pass                     {floor:7.1f} ms")
    print(f"  apikeys --help                     {help_ms:7.1f} ms  (+{help_ms - floor:.1f})")
    print(f"  apikeys keys list (valid token)    {list_ms:7.1f} ms  (+{list_ms - floor:.1f})")


if __name__ == "__main__":
    main()
