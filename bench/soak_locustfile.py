"""The soak's traffic (locust): customers, partners and admins on the portal and Keycloak.

Run by bench/soak.py, which makes the accounts and passes their token sets in SOAK_ACCOUNTS
(a JSON file). Customers create, rotate and revoke keys through the JSON API; partners get
tokens for those keys from the Keycloak cluster's balancer and call the sample API; admins
search every key. Request names are the actions, so locust reports p50/p99 per action.
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

from locust import HttpUser, between, task

ACCOUNTS: dict[str, Any] = json.loads(open(os.environ["SOAK_ACCOUNTS"]).read())  # noqa: SIM115
TOKEN_URL = ACCOUNTS["token_url"]
KEYS: list[tuple[str, str]] = []  # (client id, secret) of live keys, for partners


class _Signed(HttpUser):
    abstract = True
    role = "customers"

    def on_start(self) -> None:
        self.account = ACCOUNTS[self.role].pop()
        self.refreshed = time.monotonic()

    def headers(self) -> dict[str, str]:
        if time.monotonic() - self.refreshed > 200:  # access tokens live 300 s
            answer = self.client.post(
                TOKEN_URL,
                data={
                    "grant_type": "refresh_token",
                    "client_id": ACCOUNTS["cli_client_id"],
                    "refresh_token": self.account["refresh_token"],
                },
                name="refresh CLI token (Keycloak)",
            )
            if answer.status_code == 200:
                self.account |= answer.json()
                self.refreshed = time.monotonic()
        return {"Authorization": f"Bearer {self.account['access_token']}"}


class Customer(_Signed):
    fixed_count = len(ACCOUNTS["customers"])  # one account each; partners are the rest
    wait_time = between(1, 3)

    def on_start(self) -> None:
        super().on_start()
        self.mine: list[dict[str, Any]] = []

    @task(3)
    def create(self) -> None:
        if len(self.mine) >= 8:
            self.revoke()
            return
        name = f"soak {random.getrandbits(48):x}"
        answer = self.client.post(
            "/api/v1/keys",
            json={"name": name, "api": "sample"},
            headers=self.headers(),
            name="create key",
        )
        if answer.status_code == 201:
            made = answer.json()
            self.mine.append(made)
            KEYS.append((made["client_id"], made["client_secret"]))

    @task(2)
    def rotate(self) -> None:
        if not self.mine:
            return
        key = random.choice(self.mine)
        answer = self.client.post(
            f"/api/v1/keys/{key['key']['id']}/rotate", headers=self.headers(), name="rotate key"
        )
        if answer.status_code == 200:
            old = (key["client_id"], key["client_secret"])
            key["client_secret"] = answer.json()["client_secret"]
            if old in KEYS:
                KEYS.remove(old)
            KEYS.append((key["client_id"], key["client_secret"]))

    @task(1)
    def revoke(self) -> None:
        if not self.mine:
            return
        key = self.mine.pop(0)
        if (key["client_id"], key["client_secret"]) in KEYS:
            KEYS.remove((key["client_id"], key["client_secret"]))
        self.client.post(
            f"/api/v1/keys/{key['key']['id']}/revoke", headers=self.headers(), name="revoke key"
        )

    @task(2)
    def list_keys(self) -> None:
        self.client.get("/api/v1/keys", headers=self.headers(), name="list keys")


class Partner(HttpUser):
    wait_time = between(0.2, 1)

    @task
    def token_and_call(self) -> None:
        if not KEYS:
            return
        client_id, secret = random.choice(KEYS)
        with self.client.post(
            TOKEN_URL,
            data={"grant_type": "client_credentials"},
            auth=(client_id, secret),
            name="partner token (Keycloak)",
            catch_response=True,
        ) as answer:
            if answer.status_code == 401 and (client_id, secret) not in KEYS:
                answer.success()  # rotated or revoked meanwhile: refused, as it should be
                return
        if answer.status_code != 200:
            return
        token = answer.json()["access_token"]
        self.client.get(
            "/api/v1/whoami/", headers={"Authorization": f"Bearer {token}"}, name="whoami"
        )


class Admin(_Signed):
    fixed_count = len(ACCOUNTS["admins"])
    wait_time = between(1, 3)
    role = "admins"

    @task
    def search(self) -> None:
        query = random.choice(["soak", "apikey-", "sample", ""])
        self.client.get(
            "/api/v1/admin/keys", params={"q": query}, headers=self.headers(), name="admin search"
        )
