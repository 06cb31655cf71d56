"""The sample API over HTTP with wrk: requests per second and p99, beside a trivial view.

gunicorn serves the portal (2 sync workers, the machine's cores) with one extra URL, a
trivial view, as the baseline. wrk runs against each in turn, twice, with a valid token
for whoami. whoami checks the token (remembered after the first request in each worker),
checks its key against the API's revocation list (strict mode: in memory, read again every
2 s), and answers JSON with the key's name (remembered a minute per key).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import bench_owner, setup_django

setup_django()

import requests
from django.conf import settings

from apikeys.keycloak import client as keycloak
from apikeys.models import Api, ApiKey
from apikeys.operations import lifecycle
from apikeys.operations.lifecycle import KeyOrder
from devstack.process import http_ok, wait_until

ADDRESS = "127.0.0.1:8766"
DURATION = os.environ.get("BENCH_DURATION", "10s")
CONNECTIONS = os.environ.get("BENCH_CONNECTIONS", "16")


def wrk(url: str, token: str | None = None) -> tuple[float, str]:
    command = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{DURATION}", "--latency", url]
    if token:
        command[1:1] = ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if re.search(r"Non-2xx or 3xx responses", out):
        raise SystemExit(f"wrk saw errors from {url}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    return rps, p99


def main() -> None:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: bin/bench installs it (apt-get install wrk).")
    api = Api.objects.get(audience=settings.WHOAMI_AUDIENCE)
    owner = bench_owner()
    revealed = lifecycle.issue_key(
        owner, KeyOrder(api=api, name=f"wrk {time.time()}", lifetime_days=1)
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "portal.wsgi",
            "-b",
            ADDRESS,
            "-w",
            "2",
            "--access-logfile",
            "/dev/null",
            "--error-logfile",
            "-",
            "--log-level",
            "warning",
        ],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings"},
    )
    try:
        base = f"http://{ADDRESS}"
        wait_until(
            lambda: http_ok(f"{base}/health/"), timeout=180, what="gunicorn", log_file=Path("-")
        )
        token = requests.post(
            settings.TOKEN_ENDPOINT,
            data={"grant_type": "client_credentials"},
            auth=(revealed.key.client_id, revealed.secret),
            timeout=10,
        ).json()["access_token"]
        whoami = f"{base}/api/v1/whoami/"
        check = requests.get(whoami, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        if check.status_code != 200:
            raise SystemExit(f"whoami answered {check.status_code}: {check.text}")
        results: dict[str, list[tuple[float, str]]] = {"trivial": [], "whoami": []}
        for _ in range(2):
            results["trivial"].append(wrk(f"{base}/bench/trivial/"))
            results["whoami"].append(wrk(whoami, token))
    finally:
        server.terminate()
        server.wait(timeout=30)
        keycloak.delete_client(keycloak.portal_connection(), revealed.key.keycloak_id)
        owner.api_keys.update(status=ApiKey.Status.REVOKED)  # audit entries are append-only

    print(f"gunicorn 2 sync workers; wrk -t2 -c{CONNECTIONS} -d{DURATION}, two runs each")
    for name, runs in results.items():
        shown = ", ".join(f"{rps:.0f} req/s (p99 {p99})" for rps, p99 in runs)
        print(f"{name:8} {shown}")
    best = {name: max(rps for rps, _ in runs) for name, runs in results.items()}
    print(f"ratio whoami / trivial requests per second: {best['whoami'] / best['trivial']:.2f}")


if __name__ == "__main__":
    main()
