"""Software registering a key (RFC 7591) end to end, against one raw POST of the same client.

gunicorn serves the portal (2 sync workers). A key is registered by `POST /register` with a
registration token, over HTTP, as software would: the token checked and counted under its
lock, the metadata checked, the record, the quota's lock, one POST of the whole client, the
key marked live, two audit entries, the registration access token, the answer. The baseline
is one raw admin `POST /clients` of the same client representation straight to Keycloak.
The two alternate, round by round, in the same run; median of BENCH_ROUNDS (20) each, and
the ratio, which is what the portal adds to Keycloak's own work.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.common import bench_owner, median_ms, setup_django, timed

setup_django()

import requests
from django.conf import settings
from django.utils import timezone

from apikeys.credentials.secret_format import new_secret
from apikeys.keycloak import client as keycloak
from apikeys.keycloak import desired
from apikeys.models import Api, ApiKey
from apikeys.operations import registration
from devstack.process import http_ok, wait_until

ADDRESS = "127.0.0.1:8768"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "20"))


def gunicorn() -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "RATE_LIMIT_REGISTRATIONS_PER_ADDRESS": "100000/m",
        "MAX_KEYS_MADE_PER_DAY": "100000",
        "MAX_LIVE_KEYS_PER_USER": "100000",
    }
    command = [sys.executable, "-m", "gunicorn", "portal.wsgi", "-b", ADDRESS, "-w", "2"]
    command += ["--access-logfile", "/dev/null", "--error-logfile", "-", "--log-level", "warning"]
    return subprocess.Popen(command, env=env)


def main() -> None:
    api = Api.objects.get(slug="sample")
    owner = bench_owner()
    token = registration.create_token(
        owner,
        api=api,
        name="bench",
        max_registrations=ROUNDS,
        expires_in_days=1,
        key_lifetime_days=min(30, api.max_key_lifetime_days),
    )
    conn = keycloak.portal_connection()
    server = gunicorn()
    base = f"http://{ADDRESS}"
    made: list[str] = []
    registered, raw = [], []
    try:
        wait_until(
            lambda: http_ok(f"{base}/health/"), timeout=180, what="gunicorn", log_file=Path("-")
        )
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token.secret}"
        for n in range(ROUNDS):

            def register(n: int = n) -> None:
                answer = session.post(
                    f"{base}/register",
                    json={"client_name": f"bench {n}", "grant_types": ["client_credentials"]},
                    timeout=30,
                )
                if answer.status_code != 201:
                    raise SystemExit(f"/register answered {answer.status_code}: {answer.text}")

            key = ApiKey(owner=owner, api=api, name="raw", expires_at=timezone.now())
            key.client_id = f"{ApiKey.CLIENT_ID_PREFIX}{key.pk.hex}"
            rep = desired.key_client(key, now=timezone.now(), secret=new_secret())

            def create_raw(rep: dict[str, object] = rep) -> None:
                made.append(keycloak.create_client(conn, rep))

            if n % 2:  # alternate which goes first, against drift
                raw.append(timed(create_raw))
                registered.append(timed(register))
            else:
                registered.append(timed(register))
                raw.append(timed(create_raw))
    finally:
        server.terminate()
        server.wait(timeout=30)
        for client_uuid in made:
            keycloak.delete_client(conn, client_uuid)
        for key in owner.api_keys.exclude(keycloak_id=""):
            keycloak.delete_client(conn, key.keycloak_id)
        owner.api_keys.update(status=ApiKey.Status.REVOKED)  # audit entries are append-only

    registered_ms, raw_ms = median_ms(registered), median_ms(raw)
    print(f"register a key, median of {ROUNDS}; Keycloak {settings.KEYCLOAK_URL}:")
    print(f"  POST /register, HTTP to gunicorn    {registered_ms:7.1f} ms")
    print(f"  one raw POST /clients to Keycloak   {raw_ms:7.1f} ms")
    print(f"  ratio register / raw                {registered_ms / raw_ms:7.2f}")


if __name__ == "__main__":
    main()
