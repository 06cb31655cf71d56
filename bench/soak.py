"""Load and soak: the portal under gunicorn on the production-mode Keycloak cluster, for
SOAK_SECONDS (600), with one Keycloak node killed and restarted in the middle.

locust (bench/soak_locustfile.py) runs customers creating, rotating and revoking keys through
the JSON API, partners getting tokens from the cluster's balancer and calling the sample API,
and admins searching every key. Afterwards: p50/p99 per action, every 5xx counted (a 503
during the failover is allowed, a 500 never), and reconcile's dry run must find every key's
record and client in agreement.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from devstack import keycloak_cluster

os.environ["KEYCLOAK_URL"] = keycloak_cluster.url()  # before Django reads its settings
os.environ.setdefault("PORTAL_INSTANCE_ID", "soak")

from bench.common import setup_django

setup_django()

from django.conf import settings

from apikeys.keycloak import bootstrap
from apikeys.keycloak import client as keycloak
from apikeys.models import Api
from apikeys.operations.reconcile import describe, reconcile

SECONDS = int(os.environ.get("SOAK_SECONDS", "600"))
CUSTOMERS, PARTNERS_PER_CUSTOMER, ADMINS = 12, 2, 2
PORT = 8765
PASSWORD = "soak-" + uuid.uuid4().hex
ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    print(f"starting the Keycloak cluster ({keycloak_cluster.url()}) ...", flush=True)
    keycloak_cluster.start()
    admin = keycloak.connect(
        realm=settings.KEYCLOAK_REALM,
        username=os.environ["KEYCLOAK_BOOTSTRAP_ADMIN_USERNAME"],
        password=os.environ["KEYCLOAK_BOOTSTRAP_ADMIN_PASSWORD"],
        user_realm="master",
        timeout=60,
    )
    bootstrap.run(admin, Api.objects.all())
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    portal = _start_portal(work)
    try:
        accounts = _accounts(admin)
        (work / "accounts.json").write_text(json.dumps(accounts))
        restart = threading.Timer(SECONDS / 2, _restart_a_node)
        restart.start()
        _run_locust(work)
        restart.join()
        _report(work)
        report = reconcile(dry_run=True)
        print("reconcile after the soak (dry run):")
        for line in describe(report):
            print("  " + line)
    finally:
        portal.terminate()
        portal.wait(timeout=30)
        keycloak_cluster.stop_all()


def _start_portal(work: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "RATE_LIMIT_KEYS_PER_USER": "10000/m",
        "RATE_LIMIT_KEYS_PER_ADDRESS": "100000/m",
        "MAX_KEYS_MADE_PER_DAY": "100000",
    }
    portal = subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "gunicorn"),
            "portal.wsgi",
            "--bind",
            f"127.0.0.1:{PORT}",
            "--workers",
            "3",
            "--threads",
            "4",
            "--error-logfile",
            str(work / "gunicorn.log"),
        ],
        cwd=ROOT,
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        probe = subprocess.run(
            ["curl", "-sf", f"http://127.0.0.1:{PORT}/health/live"], capture_output=True
        )
        if probe.returncode == 0:
            return portal
        time.sleep(0.5)
    raise RuntimeError("gunicorn did not answer")


def _accounts(admin: keycloak.Connection) -> dict[str, object]:
    sys.path.insert(0, str(ROOT))
    from tests.oidc import cli_tokens

    made: dict[str, object] = {
        "token_url": settings.TOKEN_ENDPOINT,
        "cli_client_id": settings.CLI_CLIENT_ID,
    }
    for role, count in (("customers", CUSTOMERS), ("admins", ADMINS)):
        sets = []
        for _ in range(count):
            email = f"soak-{uuid.uuid4().hex[:10]}@example.com"
            user_id = admin.admin.create_user(
                {
                    "username": email,
                    "email": email,
                    "emailVerified": True,
                    "enabled": True,
                    "firstName": "Soak",
                    "lastName": role,
                    "credentials": [{"type": "password", "value": PASSWORD, "temporary": False}],
                }
            )
            if role == "admins":
                role_rep = admin.admin.get_realm_role(settings.OIDC_ADMIN_ROLE)
                admin.admin.assign_realm_roles(user_id, [role_rep])
            sets.append(cli_tokens(email, PASSWORD))
        made[role] = sets
    return made


def _restart_a_node() -> None:
    began = time.monotonic()
    print(f"[{SECONDS // 2} s] killing Keycloak node 1 ...", flush=True)
    keycloak_cluster.kill(1)
    keycloak_cluster.start_node(keycloak_cluster.NODES[0])
    print(f"node 1 back after {time.monotonic() - began:.0f} s", flush=True)


def _run_locust(work: Path) -> None:
    users = CUSTOMERS * (1 + PARTNERS_PER_CUSTOMER) + ADMINS
    subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "locust"),
            "-f",
            str(ROOT / "bench" / "soak_locustfile.py"),
            "--headless",
            "--users",
            str(users),
            "--spawn-rate",
            "5",
            "--run-time",
            f"{SECONDS}s",
            "--host",
            f"http://127.0.0.1:{PORT}",
            "--csv",
            str(work / "soak"),
            "--only-summary",
            "--loglevel",
            "WARNING",
        ],
        env=os.environ | {"SOAK_ACCOUNTS": str(work / "accounts.json")},
        check=False,  # locust exits 1 when any request failed; the report says which
    )


def _report(work: Path) -> None:
    print(f"soak: {SECONDS} s, Keycloak node 1 killed and restarted at {SECONDS // 2} s")
    print(f"{'action':>30} {'requests':>9} {'failed':>7} {'p50 ms':>7} {'p99 ms':>7}")
    with (work / "soak_stats.csv").open() as stats:
        for row in csv.DictReader(stats):
            print(
                f"{row['Name']:>30} {row['Request Count']:>9} {row['Failure Count']:>7} "
                f"{row['50%']:>7} {row['99%']:>7}"
            )
    server_errors: dict[str, int] = {}
    with (work / "soak_failures.csv").open() as failures:
        for row in csv.DictReader(failures):
            for code in ("500", "502", "503", "504"):
                if f"{code} Server Error" in row["Error"] or f"{code}," in row["Error"]:
                    key = f"{code} {row['Name']}"
                    server_errors[key] = server_errors.get(key, 0) + int(row["Occurrences"])
            print(f"  failure: {row['Name']}: {row['Error'][:120]} x{row['Occurrences']}")
    print(f"5xx by action: {server_errors or 'none'}")
    if any(key.startswith("500") for key in server_errors):
        raise SystemExit("A request got a 500.")


if __name__ == "__main__":
    main()
