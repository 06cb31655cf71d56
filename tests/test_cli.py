"""The command-line tool, run as users run it: a process of its own, with the standard library
only (`python -S`: no site-packages, so no Django), against the live portal and Keycloak."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import Page, expect

from apikeys.credentials.secret_format import is_well_formed
from apikeys.models import ApiKey, KeyUsage
from apikeys.operations import dormancy, lifecycle
from tests.accounts import KeycloakUser
from tests.assertions import KeyPair, gets_token
from tests.oidc import cli_tokens
from tests.tokens import request_token

pytestmark = pytest.mark.usefixtures("key_clients", "sample")
ROOT = Path(__file__).resolve().parent.parent


class Cli:
    """`apikeys ...` with its own config directory, pointed at the live portal."""

    def __init__(self, home: Path, portal: str) -> None:
        self.home = home
        self.started: list[subprocess.Popen[str]] = []
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "DJANGO"))},
            "PYTHONPATH": str(ROOT / "cli" / "src"),
            "XDG_CONFIG_HOME": str(home),
            "APIKEYS_PORTAL": portal,
        }

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-S", "-m", "apikeys_cli"]

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.command, *args],
            env=self.env,
            capture_output=True,
            text=True,
            input=stdin,
            timeout=60,
            check=False,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [*self.command, *args],
            env=self.env,
            stderr=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.started.append(process)
        return process

    def stop(self) -> None:
        """End what a failed test left waiting (a login for a browser that never came)."""
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.communicate()

    @property
    def credentials(self) -> Path:
        return self.home / "apikeys" / "credentials.json"

    def signed_in_as(self, account: KeycloakUser, portal: str, *, step_up: bool = True) -> None:
        """Keep a token set as `apikeys login` would (got through Keycloak's real page;
        `step_up=False`: the level-1 sign-in of someone who has a second factor)."""
        tokens = cli_tokens(account.email, account.password, step_up=step_up)
        oidc = f"{settings.KEYCLOAK_URL}/realms/{settings.KEYCLOAK_REALM}/protocol/openid-connect"
        self.credentials.parent.mkdir(parents=True, exist_ok=True)
        self.credentials.write_text(
            json.dumps(
                {
                    "portal": portal,
                    "client_id": settings.CLI_CLIENT_ID,
                    "token_endpoint": f"{oidc}/token",
                    "revocation_endpoint": f"{oidc}/revoke",
                    "access_token": tokens["access_token"],
                    "refresh_token": tokens["refresh_token"],
                    "expires_at": time.time() + tokens["expires_in"],
                }
            )
        )


@pytest.fixture
def cli(tmp_path: Path, live_server: Any) -> Iterator[Cli]:
    tool = Cli(tmp_path, live_server.url)
    yield tool
    tool.stop()


AUTHORIZE = r"https?://\S+/protocol/openid-connect/auth\?\S+"  # the address to sign in at


def line_with(stream: Any, pattern: str, timeout: float = 30) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        line = stream.readline()
        seen += line
        if match := re.search(pattern, line):
            return match
    raise AssertionError(f"no {pattern!r} in {seen!r}")


def sign_in_at_keycloak(page: Page, url: str, account: KeycloakUser) -> None:
    """Keycloak's page, signed in on, unless this browser's Keycloak session is still on."""
    page.goto(url)
    if page.locator("#username").count():
        page.fill("#username", account.email)
        page.fill("#password", account.password)
        page.click("#kc-login")


def browser_login(cli: Cli, page: Page, account: KeycloakUser) -> int:
    """`apikeys login --no-browser`, completed in Chromium; the callback's port."""
    process = cli.start("login", "--no-browser")
    told = line_with(process.stderr, r"^Open this address in a browser on this machine").string
    assert "`apikeys login --device`" in told
    assert "waits 5 minutes" in told
    url = line_with(process.stderr, AUTHORIZE).group(0)
    redirect = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["redirect_uri"][0]
    sign_in_at_keycloak(page, url, account)
    expect(page.locator("body")).to_contain_text("Signed in. You can close this tab")
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0, out
    assert f"as {account.email}" in out
    return int(urllib.parse.urlsplit(redirect).port or 0)


def test_login_opens_keycloak_and_catches_the_answer_on_a_port_of_the_systems_choice(
    cli: Cli, page: Page, make_keycloak_user: Callable[..., KeycloakUser]
) -> None:
    account = make_keycloak_user()

    first = browser_login(cli, page, account)
    second = browser_login(cli, page, account)

    assert first != second
    assert first > 1024
    assert stat.S_IMODE(cli.credentials.stat().st_mode) == 0o600
    me = json.loads(cli("me", "--json").stdout)
    assert me["email"] == account.email


def test_login_opens_the_browser_at_the_address_it_prints_and_says_when_none_starts(
    cli: Cli, page: Page, make_keycloak_user: Callable[..., KeycloakUser], tmp_path: Path
) -> None:
    account = make_keycloak_user()
    opened, browser = tmp_path / "opened", tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\nprintf %s "$1" > {opened}\n')  # a browser that only notes
    browser.chmod(0o755)
    for display in ("DISPLAY", "WAYLAND_DISPLAY"):  # no other browser to fall back on
        cli.env.pop(display, None)
    cli.env["BROWSER"] = str(browser)  # Python's webbrowser runs $BROWSER first

    process = cli.start("login")
    url = line_with(process.stderr, AUTHORIZE).group(0)
    line_with(process.stderr, r"^Your browser is open at it\.$")
    assert opened.read_text() == url
    sign_in_at_keycloak(page, url, account)
    out, _ = process.communicate(timeout=30)
    assert f"as {account.email}" in out

    cli.env["BROWSER"] = "false"  # a browser that fails to start
    process = cli.start("login")
    line_with(process.stderr, AUTHORIZE)
    told = line_with(process.stderr, r"^No browser could be started here").string
    assert "`apikeys login --device`" in told


def test_login_with_a_code_on_another_device(
    cli: Cli, page: Page, make_keycloak_user: Callable[..., KeycloakUser]
) -> None:
    account = make_keycloak_user()
    process = cli.start("login", "--device")
    where = line_with(process.stderr, r"open (\S+)").group(1)
    code = line_with(process.stderr, r"enter the code (\S+)").group(1)

    sign_in_at_keycloak(page, where, account)
    page.get_by_role("button", name="Yes").click()  # Keycloak asks to grant the device access

    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert f"as {account.email}" in out
    assert code


def test_a_key_made_rotated_and_revoked_from_the_terminal(
    cli: Cli, live_server: Any, make_keycloak_user: Callable[..., KeycloakUser]
) -> None:
    cli.signed_in_as(make_keycloak_user(), live_server.url)

    made = cli("keys", "create", "from ci", "--api", "sample", "--json")
    assert made.returncode == 0, made.stderr
    credentials = json.loads(made.stdout)
    client_id, secret = credentials["client_id"], credentials["client_secret"]
    assert is_well_formed(secret)
    assert request_token(client_id, secret).status_code == 200
    assert client_id in cli("keys", "list").stdout

    rotated = cli("keys", "rotate", client_id, "--output", "env")
    env = dict(line.split("=", 1) for line in rotated.stdout.splitlines())
    assert env["CLIENT_ID"] == client_id
    assert request_token(client_id, secret).status_code == 401
    assert request_token(client_id, env["CLIENT_SECRET"]).status_code == 200
    renamed = cli("keys", "rename", client_id, "--name", "nightly build", "--json")
    assert json.loads(renamed.stdout)["name"] == "nightly build"

    unconfirmed = cli("keys", "revoke", client_id)
    assert unconfirmed.returncode == 2
    assert "--yes" in unconfirmed.stderr
    assert cli("keys", "revoke", client_id, "--yes").returncode == 0
    assert request_token(client_id, env["CLIENT_SECRET"]).status_code == 401
    assert ApiKey.objects.get().status == ApiKey.Status.REVOKED
    activity = cli("activity").stdout.splitlines()
    assert activity[0].split()[:4] == ["AT", "ACTION", "KEY_NAME", "CLIENT_ID"]
    assert all("nightly build" in line for line in activity[1:])  # named as it is now


def test_a_key_limited_to_networks_from_the_terminal(
    cli: Cli, live_server: Any, make_keycloak_user: Callable[..., KeycloakUser]
) -> None:
    cli.signed_in_as(make_keycloak_user(), live_server.url)

    made = cli("keys", "create", "office", "--api", "sample", "--allow-from", "127.0.0.1", "--json")
    assert made.returncode == 0, made.stderr
    credentials = json.loads(made.stdout)
    client_id, secret = credentials["client_id"], credentials["client_secret"]
    assert credentials["key"]["networks"] == ["127.0.0.1/32"]
    assert request_token(client_id, secret).status_code == 200

    moved = cli("keys", "networks", client_id, "--allow-from", "10.0.0.0/8")
    assert moved.returncode == 0, moved.stderr
    assert "tokens from 10.0.0.0/8" in moved.stdout
    assert request_token(client_id, secret).json()["error"] == "unauthorized_client"
    bad = cli("keys", "networks", client_id, "--allow-from", "0.0.0.0/0")
    assert bad.returncode == 5  # refused
    assert "Nothing was changed" in bad.stderr
    assert cli("keys", "networks", client_id, "--anywhere").returncode == 0
    assert request_token(client_id, secret).status_code == 200


def test_a_keys_usage_and_reinstating_a_dormant_key_from_the_terminal(
    cli: Cli, live_server: Any, make_keycloak_user: Callable[..., KeycloakUser]
) -> None:
    cli.signed_in_as(make_keycloak_user(), live_server.url)
    made = json.loads(cli("keys", "create", "quiet", "--api", "sample", "--json").stdout)
    client_id, secret = made["client_id"], made["client_secret"]
    key = ApiKey.objects.get(client_id=client_id)
    KeyUsage.objects.create(key=key, day=timezone.now().date(), grants=4, wrong_credentials=3)

    usage = cli("keys", "usage", client_id)

    assert usage.returncode == 0, usage.stderr
    assert re.search(r"\s4\s+3\s+0", usage.stdout)
    assert "3 failed attempts with a wrong secret" in usage.stderr
    refused = cli("keys", "reinstate", client_id)  # an active key: nothing to reinstate
    assert refused.returncode != 0
    assert "ask an administrator" in refused.stderr
    lifecycle.suspend_key(key, actor=None, reason=dormancy.SUSPENDED_REASON.format(days=91))
    assert request_token(client_id, secret).status_code == 401

    reinstated = cli("keys", "reinstate", client_id)

    assert reinstated.returncode == 0, reinstated.stderr
    assert "works again" in reinstated.stdout
    assert request_token(client_id, secret).status_code == 200


def test_signed_keys_grace_rotation_and_secret_checks_from_the_terminal(
    cli: Cli, live_server: Any, make_keycloak_user: Callable[..., KeycloakUser], tmp_path: Path
) -> None:
    cli.signed_in_as(make_keycloak_user(), live_server.url)
    pair = KeyPair.ec()
    public = tmp_path / "partner.pub.pem"
    public.write_text(pair.public_pem())

    made = cli("keys", "create", "signed", "--api", "sample", "--public-key", str(public))
    assert made.returncode == 0, made.stderr
    assert "assertion_audience" in made.stdout
    assert "client_secret" not in made.stdout
    signed = ApiKey.objects.get(name="signed")
    pair.kid = signed.public_keys.get().kid
    assert gets_token(pair, signed.client_id)
    listed = cli("public-keys", "list", signed.client_id)
    assert pair.kid in listed.stdout

    plain = json.loads(cli("keys", "create", "plain", "--api", "sample", "--json").stdout)
    rotated = cli("keys", "rotate", plain["client_id"], "--grace", "2h", "--json")
    assert rotated.returncode == 0, rotated.stderr
    second = json.loads(rotated.stdout)
    assert second["key"]["previous_secret_until"]
    assert request_token(plain["client_id"], plain["client_secret"]).status_code == 200
    checked = cli("secrets", "check", stdin=plain["client_secret"] + "\n")
    assert "previous secret" in checked.stdout
    assert "can get tokens" in checked.stdout
    assert cli("keys", "end-grace", plain["client_id"]).returncode == 0
    assert request_token(plain["client_id"], plain["client_secret"]).status_code == 401
    assert "no longer works" in cli("secrets", "check", stdin=plain["client_secret"]).stdout
    assert cli("keys", "rotate", plain["client_id"], "--grace", "soon").returncode == 2


def test_webhooks_from_the_terminal(
    cli: Cli, live_server: Any, make_keycloak_user: Callable[..., KeycloakUser]
) -> None:
    from apikeys.operations import webhooks
    from tests.receivers import receiver

    cli.signed_in_as(make_keycloak_user(), live_server.url)
    with receiver() as inbox:
        made = cli("webhooks", "create", inbox.url, "--event", "key.created", "--json")
        assert made.returncode == 0, made.stderr
        endpoint = json.loads(made.stdout)["endpoint"]["id"]
        assert inbox.url in cli("webhooks", "list").stdout
        assert cli("webhooks", "test", endpoint).returncode == 0
        webhooks.deliver_due()
        log = cli("webhooks", "log", endpoint)
        assert "webhook.test" in log.stdout
        assert "200 in" in log.stdout
        rotated = cli("webhooks", "rotate-secret", endpoint, "--overlap", "1h")
        assert "whsec_" in rotated.stdout
        assert cli("webhooks", "update", endpoint, "--pause").returncode == 0
        assert cli("webhooks", "delete", endpoint).returncode == 2  # asks first
        assert cli("webhooks", "delete", endpoint, "--yes").returncode == 0
        assert cli("webhooks", "show", "nope").returncode == 2

    assert len(inbox.received) == 1


def test_another_users_key_and_bad_input_get_clear_exit_codes(
    cli: Cli, live_server: Any, make_keycloak_user: Callable[..., KeycloakUser], tmp_path: Path
) -> None:
    owner = Cli(tmp_path / "owner", live_server.url)
    owner.signed_in_as(make_keycloak_user(), live_server.url)
    client_id = json.loads(owner("keys", "create", "mine", "--api", "sample", "--json").stdout)[
        "client_id"
    ]
    cli.signed_in_as(make_keycloak_user(), live_server.url)

    stranger = cli("keys", "rotate", client_id)
    assert stranger.returncode == 4
    assert "no key with this id" in stranger.stderr
    refused = cli("keys", "create", "x" * 65, "--api", "sample")
    assert refused.returncode == 5
    assert cli("keys", "show", "not-a-key").returncode != 0
    assert cli("admin", "keys").returncode == 5  # a customer: 403
    assert Cli(tmp_path / "nobody", live_server.url)("keys", "list").returncode == 3


def test_an_expired_access_token_is_refreshed_and_logout_revokes_at_keycloak(
    cli: Cli, live_server: Any, make_keycloak_user: Callable[..., KeycloakUser]
) -> None:
    cli.signed_in_as(make_keycloak_user(), live_server.url)
    saved = json.loads(cli.credentials.read_text())
    cli.credentials.write_text(json.dumps(saved | {"expires_at": 0}))

    assert cli("keys", "list").returncode == 0

    refreshed = json.loads(cli.credentials.read_text())
    assert refreshed["access_token"] != saved["access_token"]
    assert cli("logout").stdout.strip() == "Signed out."
    assert not cli.credentials.exists()
    again = requests.post(
        refreshed["token_endpoint"],
        data={
            "grant_type": "refresh_token",
            "refresh_token": refreshed["refresh_token"],
            "client_id": settings.CLI_CLIENT_ID,
        },
        timeout=10,
    )
    assert again.status_code == 400  # Keycloak refuses it now
    assert cli("me").returncode == 3


@pytest.fixture
def cli_venv(tmp_path: Path) -> Path:
    venv = tmp_path / "venv"
    subprocess.run(["uv", "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    return venv


def test_the_cli_installs_on_its_own_without_django(cli_venv: Path) -> None:
    subprocess.run(
        [
            "uv",
            "pip",
            "install",
            "-q",
            "--python",
            str(cli_venv / "bin" / "python"),
            str(ROOT / "cli"),
        ],
        check=True,
        timeout=300,
    )

    helped = subprocess.run(
        [str(cli_venv / "bin" / "apikeys"), "--help"], capture_output=True, text=True, check=False
    )

    assert helped.returncode == 0
    assert "apikeys login" in helped.stdout
    django = subprocess.run(
        [str(cli_venv / "bin" / "python"), "-c", "import django"], capture_output=True, check=False
    )
    assert django.returncode != 0


def test_a_portal_not_on_https_nor_on_this_machine_is_refused_before_anything_is_sent(
    cli: Cli,
) -> None:
    done = cli("--portal", "http://portal.example.com", "login", "--no-browser")

    assert done.returncode == 2
    assert "not https" in done.stderr


def test_output_its_reader_stops_reading_ends_in_a_line_not_a_traceback(tmp_path: Path) -> None:
    tool = Cli(tmp_path, "http://127.0.0.1:9")
    with subprocess.Popen(
        [*tool.command, "logout"],
        env=tool.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as running:
        assert running.stdout is not None
        assert running.stderr is not None
        running.stdout.close()  # like `| head -1` done before it wrote: nobody reads

        said = running.stderr.read()

        assert running.wait(timeout=60) == 1
    assert said == "apikeys: the output was cut short: what read it stopped early.\n"
