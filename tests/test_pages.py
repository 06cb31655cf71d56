"""Public and private pages: deny by default, a few public views."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from django.template import Context, Template
from django.test import Client
from django.urls import reverse

from apikeys.models import User
from apikeys.operations import teams
from tests.accounts import force_login_with_second_factor

pytestmark = [pytest.mark.embedded, pytest.mark.django_db]


def test_the_landing_page_is_public_and_offers_sign_in_and_registration(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert reverse("oidc_authentication_init").encode() in response.content
    assert reverse("register").encode() in response.content


def test_it_sends_anonymous_visitors_of_private_pages_to_sign_in(client: Client) -> None:
    response = client.get("/keys/")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("oidc_authentication_init"))
    assert "next=/keys/" in response["Location"]


def test_it_sends_signed_in_visitors_of_the_landing_page_home(client: Client, owner: User) -> None:
    client.force_login(owner)
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == reverse("home")


def test_the_home_page_greets_the_signed_in_user(client: Client, owner: User) -> None:
    client.force_login(owner)
    response = client.get("/keys/")
    assert response.status_code == 200
    assert owner.email.encode() in response.content


def test_health_is_public_and_checks_the_database(client: Client) -> None:
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_sign_in_starts_code_flow_with_pkce(client: Client) -> None:
    response = client.get(reverse("oidc_authentication_init"))
    assert response.status_code == 302
    location = response["Location"]
    assert "/protocol/openid-connect/auth?" in location
    assert "response_type=code" in location
    assert "code_challenge_method=S256" in location


def test_create_account_goes_to_keycloak_registration(client: Client) -> None:
    response = client.get(reverse("register"))
    assert response.status_code == 302
    assert "/protocol/openid-connect/registrations?" in response["Location"]


def test_sign_out_refuses_get(client: Client, owner: User) -> None:
    client.force_login(owner)
    assert client.get(reverse("oidc_logout")).status_code == 405


def test_pages_carry_a_content_security_policy(client: Client) -> None:
    response = client.get("/")
    assert "default-src 'self'" in response["Content-Security-Policy"]


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "203.0.113.9", "127.0.0.1"),  # no proxy trusted: the header is the client's word
        (1, "198.51.100.1, 203.0.113.9", "203.0.113.9"),  # the one our proxy added
        (2, "198.51.100.1, 203.0.113.9", "198.51.100.1"),
        (2, "203.0.113.9", "127.0.0.1"),  # fewer entries than proxies: not trusted
    ],
)
def test_the_audit_address_trusts_only_the_configured_proxies(
    rf: Any, settings: Any, proxies: int, forwarded: str, expected: str
) -> None:
    from apikeys.client_address import client_ip

    settings.TRUSTED_PROXIES = proxies
    request = rf.get("/", HTTP_X_FORWARDED_FOR=forwarded, REMOTE_ADDR="127.0.0.1")
    assert client_ip(request) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/docs/",
        "/keys/",
        "/keys/new/",
        "/keys/check/",
        "/webhooks/",
        "/webhooks/new/",
        "/manage/",
        "/manage/leaks/",
        "/manage/apis/",
        "/manage/issuers/",
        "/manage/team/",
        "/teams/",
        "/registration-tokens/",
    ],
)
def test_no_template_syntax_shows_on_a_page(client: Client, admin_user: User, path: str) -> None:
    """A `{# #}` comment spans one line only: one that spans two prints on the page. And a
    field's help that screen readers are told of (`aria-describedby`) is on the page."""
    if path != "/":
        force_login_with_second_factor(client, admin_user)
    if path == "/manage/team/":  # a team's admin page, with its appoint-an-owner form
        path = f"/manage/teams/{teams.create_team(admin_user, 'Acme').pk}/"

    response = client.get(path)

    assert response.status_code == 200
    page = response.content.decode()
    for syntax in ("{#", "#}", "{%", "%}", "{{"):  # "}}" may close JSON in an example
        assert syntax not in page, f"{syntax} on {path}"
    for described in re.findall(r'aria-describedby="([^"]+)"', page):
        for target in described.split():
            assert f'id="{target}"' in page, f"{target} on {path}"


def test_dates_on_pages_are_kept_whole_and_text_around_them_escaped() -> None:
    page = Template(
        '{{ at|when }} · {{ at|when:"Y-m-d" }} · {{ none|when }} · {{ why|dates_whole }}'
    )
    at = datetime(2026, 12, 8, 19, 43, 53, 123456, tzinfo=timezone(timedelta(hours=2)))
    mail = Template("{% autoescape off %}{{ at|when }} {{ why|dates_whole }}{% endautoescape %}")
    why = "Until 2026-12-08 17:43:53 <b>"

    shown = page.render(Context({"at": at, "none": None, "why": why}))

    assert shown == (  # shown in the portal's time zone (UTC), as the `date` filter does
        '<time datetime="2026-12-08T17:43:53+00:00">2026-12-08 17:43</time> · '
        '<time datetime="2026-12-08T17:43:53+00:00">2026-12-08</time> ·  · '
        'Until <span class="date">2026-12-08 17:43:53</span> &lt;b&gt;'
    )
    assert mail.render(Context({"at": at, "why": why})) == f"2026-12-08 17:43 {why}"
