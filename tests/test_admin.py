"""The admin area against the real Keycloak, PostgreSQL and SMTP (the mail sink)."""

from __future__ import annotations

import csv
import io
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from html import unescape
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import Connection
from apikeys.models import AUDIT_VIA, Api, ApiKey, AuditEntry, ExpiryReminder, User
from apikeys.operations import job_runs, jobs, lifecycle
from tests.accounts import KeycloakUser, force_login_with_second_factor
from tests.browser import answer_second_factor, sign_in
from tests.factories import issue, unique_user
from tests.mail import messages_to, plain_text, wait_for_message
from tests.tokens import request_token

pytestmark = [pytest.mark.embedded, pytest.mark.usefixtures("key_clients", "real_smtp")]


@pytest.fixture
def admin(db: None) -> User:
    return unique_user(staff=True)


@pytest.fixture
def admin_client(client: Client, admin: User) -> Client:
    force_login_with_second_factor(client, admin)
    return client


@pytest.fixture
def guarded(sample: Api) -> Api:
    """An API whose keys need approval; its scope is the Sample API's."""
    sample.requires_approval = True
    sample.save()
    return sample


def request_key(owner: User, api: Api, name: str = "reporting") -> lifecycle.Revealed:
    return issue(
        owner, api, name=name, lifetime_days=30, justification="Monthly reports for finance."
    )


def test_every_admin_url_is_404_for_customers_and_sends_anonymous_visitors_to_sign_in(
    client: Client, customer: User, sample: Api
) -> None:
    key = issue(customer, sample, name="mine", lifetime_days=5).key
    gets = [
        reverse(name)
        for name in (
            "manage_approvals",
            "manage_keys",
            "manage_apis",
            "manage_api_new",
            "manage_audit",
            "manage_issuers",
        )
    ]
    gets += [reverse("manage_key", args=[key.pk]), reverse("manage_api_edit", args=["sample"])]
    posts = [
        reverse(name, args=[key.pk])
        for name in (
            "manage_approve",
            "manage_reject",
            "manage_suspend",
            "manage_reinstate",
            "manage_revoke",
        )
    ] + [
        reverse("manage_api_retire", args=["sample"]),
        reverse("manage_issuer_add"),
        reverse("manage_issuer_remove", args=["any"]),
    ]

    for url in gets + posts:
        response = client.get(url) if url in gets else client.post(url, {"reason": "x"})
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("oidc_authentication_init"))
    client.force_login(customer)
    for url in gets + posts:
        response = client.get(url) if url in gets else client.post(url, {"reason": "x"})
        assert response.status_code == 404, url
    assert ApiKey.objects.get().status == ApiKey.Status.ACTIVE
    assert Api.objects.get().retired_at is None


def test_a_pending_key_gets_no_token_until_approved_and_everyone_is_told(
    admin_client: Client, admin: User, customer: User, guarded: Api
) -> None:
    revealed = request_key(customer, guarded)
    assert revealed.key.status == ApiKey.Status.PENDING
    assert request_token(revealed.key.client_id, revealed.secret).status_code == 401
    request_mail = plain_text(wait_for_message(admin.email))
    assert customer.email in request_mail
    assert "Monthly reports for finance." in request_mail
    assert "/manage/" in request_mail

    queue = admin_client.get(reverse("manage_approvals")).content.decode()
    assert "Monthly reports for finance." in queue
    assert revealed.key.client_id in queue
    admin_client.post(reverse("manage_approve", args=[revealed.key.pk]), {"from": "approvals"})

    assert request_token(revealed.key.client_id, revealed.secret).status_code == 200
    key = ApiKey.objects.get()
    assert key.status == ApiKey.Status.ACTIVE
    assert key.expires_at > revealed.key.expires_at  # the wait does not eat the lifetime
    entry = AuditEntry.objects.get(action="approved")
    assert (entry.actor, entry.key) == (admin, key)
    decision = plain_text(wait_for_message(customer.email))
    assert "was approved" in decision
    assert f"/keys/{key.pk}/" in decision


def test_a_rejected_key_has_no_client_and_the_requester_reads_the_reason(
    admin_client: Client, customer: User, guarded: Api, key_clients: Connection
) -> None:
    key = request_key(customer, guarded).key

    refused = admin_client.post(reverse("manage_reject", args=[key.pk]), {"reason": ""})
    assert ApiKey.objects.get().status == ApiKey.Status.PENDING
    assert refused.status_code == 302
    admin_client.post(
        reverse("manage_reject", args=[key.pk]), {"reason": "Use the reporting export instead."}
    )

    key.refresh_from_db()
    assert key.status == ApiKey.Status.REJECTED
    assert key.status_reason == "Use the reporting export instead."
    assert keycloak.find_client(key_clients, key.client_id) is None
    mail = plain_text(wait_for_message(customer.email))
    assert "was rejected" in mail
    assert "Use the reporting export instead." in mail
    assert AuditEntry.objects.get(action="rejected").reason == "Use the reporting export instead."


def test_suspending_and_reinstating_change_what_keycloak_allows_next(
    admin_client: Client, customer: User, sample: Api
) -> None:
    revealed = issue(customer, sample, name="batch", lifetime_days=30)
    key = revealed.key

    admin_client.post(reverse("manage_suspend", args=[key.pk]), {"reason": "Abuse report #42"})
    assert request_token(key.client_id, revealed.secret).status_code == 401
    assert ApiKey.objects.get().status == ApiKey.Status.SUSPENDED
    suspended = plain_text(wait_for_message(customer.email))
    assert "was suspended" in suspended
    assert "Abuse report #42" in suspended

    admin_client.post(reverse("manage_reinstate", args=[key.pk]), {"reason": "Resolved"})
    assert request_token(key.client_id, revealed.secret).status_code == 200
    assert ApiKey.objects.get().status == ApiKey.Status.ACTIVE
    assert [e.action for e in AuditEntry.objects.order_by("at", "id")] == [
        "created",
        "suspended",
        "reinstated",
    ]
    time.sleep(0.5)
    assert any("was reinstated" in plain_text(m) for m in messages_to(customer.email))


def test_an_admin_revokes_any_key_with_a_reason_and_never_sees_its_secret(
    admin_client: Client, customer: User, sample: Api
) -> None:
    revealed = issue(customer, sample, name="leaked", lifetime_days=30)

    page = admin_client.get(reverse("manage_key", args=[revealed.key.pk])).content.decode()
    admin_client.post(
        reverse("manage_revoke", args=[revealed.key.pk]), {"reason": "Secret found on GitHub"}
    )

    assert revealed.secret not in page
    assert request_token(revealed.key.client_id, revealed.secret).status_code == 401
    assert "Secret found on GitHub" in plain_text(wait_for_message(customer.email))
    assert AuditEntry.objects.get(action="revoked").reason == "Secret found on GitHub"


def test_the_admin_key_list_searches_and_filters(
    admin_client: Client, customer: User, sample: Api
) -> None:
    other = unique_user()
    mine = issue(customer, sample, name="alpha billing", lifetime_days=30).key
    theirs = issue(other, sample, name="beta export", lifetime_days=30).key
    lifecycle.revoke_key(theirs, actor=other)

    def listed(**query: str) -> str:
        return admin_client.get(reverse("manage_keys"), query).content.decode()

    by_owner = listed(q=customer.email[:6])
    assert mine.client_id in by_owner
    assert theirs.client_id not in by_owner
    assert theirs.client_id in listed(q="beta")
    assert mine.client_id not in listed(q="beta")
    assert listed(q=mine.client_id[:20]).count("data-client-id=") == 1
    assert theirs.client_id in listed(status="revoked")
    assert mine.client_id not in listed(status="revoked")
    assert mine.client_id not in listed(unused_days="1")  # made today: not unused yet
    ApiKey.objects.filter(pk=mine.pk).update(created_at=timezone.now() - timedelta(days=3))
    assert mine.client_id in listed(unused_days="2")


def test_a_filter_the_admin_lists_cannot_read_lists_nothing_and_says_which(
    admin_client: Client, customer: User, sample: Api
) -> None:
    key = ApiKey(owner=customer, api=sample, name="kept", expires_at=timezone.now())
    key.client_id = f"{ApiKey.CLIENT_ID_PREFIX}{key.pk.hex}"
    key.save()  # a record only: the lists read the database
    AuditEntry.record(key, AuditEntry.Action.CREATED, actor=customer)

    wrong_date = admin_client.get(
        reverse("manage_keys"), {"status": "unfinished", "expires_before": "next tuesday"}
    )
    gone_team = admin_client.get(reverse("manage_keys"), {"team": str(uuid.uuid4())})
    audit = admin_client.get(reverse("manage_audit"), {"action": "created", "since": "soon"})
    export = admin_client.get(reverse("manage_audit"), {"since": "soon", "format": "csv"})

    for response, error in (
        (wrong_date, "Enter a valid date."),
        (gone_team, "Team filter: No team has this id. Filtering again lists every key."),
        (audit, "Enter a valid date."),
    ):
        page = unescape(response.content.decode())
        assert response.status_code == 400
        assert error in page
        assert 'data-testid="filters-refused"' in page
        assert key.client_id not in page  # not the list without the filter
    assert 'value="next tuesday"' in wrong_date.content.decode()  # the input comes back
    assert 'name="team"' not in gone_team.content.decode()  # Filter again: every key
    for far in (
        {"expires_before": "9999-12-31"},
        {"created_before": "9999-12-31"},
        {"unused_days": "3000000"},
        {"unused_days": "99999999999999999999"},
    ):  # refused with a message, not a 500 from a date past what Python holds
        assert admin_client.get(reverse("manage_keys"), far).status_code == 400, far
    far_audit = admin_client.get(reverse("manage_audit"), {"until": "9999-12-31"})
    assert "Choose a day before the year 9999." in far_audit.content.decode()
    far_export = admin_client.get(reverse("manage_audit"), {"until": "9999-12-31", "format": "csv"})
    assert far_export.status_code == 400
    long_name = admin_client.get(reverse("manage_teams"), {"q": "x" * 101})
    assert long_name.status_code == 400
    assert "at most 100 characters" in unescape(long_name.content.decode())
    assert 'data-testid="admin-teams"' not in long_name.content.decode()
    assert export.status_code == 400
    assert export["Content-Type"].startswith("text/plain")
    assert "No export: the filters are not valid (since: Enter a valid date.)" in (
        export.content.decode()
    )
    unfiltered = admin_client.get(reverse("manage_audit"), {"since": ""})
    assert key.client_id in unfiltered.content.decode()


def test_a_long_admin_list_counts_ten_pages_ahead_and_says_more_beyond(
    admin_client: Client, customer: User, sample: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("apikeys.views.manage.PAGE_SIZE", 2)  # 30 keys: 15 pages
    made = timezone.now()
    rows = [
        ApiKey(owner=customer, api=sample, name=f"row {n}", status="active", expires_at=made)
        for n in range(30)
    ]
    for row in rows:  # records only: the list reads the database, not Keycloak
        row.client_id = f"{ApiKey.CLIENT_ID_PREFIX}{row.pk.hex}"
    ApiKey.objects.bulk_create(rows)

    def page(number: int) -> str:
        return unescape(admin_client.get(reverse("manage_keys"), {"page": number}).content.decode())

    first, near_the_end = page(1), page(14)

    assert "More than 22 keys" in first  # counted to page 1 + 10, and one more row
    assert "Page 1 of more than 11" in first
    assert first.count("data-client-id=") == 2
    assert "30 keys" in near_the_end  # from page 14, the count reaches the end: exact
    assert "Page 14 of 15" in near_the_end


def test_each_action_is_audited_and_customers_see_only_their_own_entries(
    admin_client: Client, client: Client, customer: User, sample: Api
) -> None:
    other = unique_user()
    mine = issue(customer, sample, name="mine", lifetime_days=30).key
    theirs = issue(other, sample, name="theirs", lifetime_days=30).key
    lifecycle.rotate_secret(mine, actor=customer)
    through_the_api = AUDIT_VIA.set("api")  # as the JSON API's middleware sets it
    try:
        lifecycle.revoke_key(theirs, actor=other)
    finally:
        AUDIT_VIA.reset(through_the_api)

    audit = admin_client.get(reverse("manage_audit")).content.decode()
    assert mine.client_id in audit
    assert theirs.client_id in audit
    assert f'<a href="{reverse("manage_key", args=[mine.pk])}">mine</a>' in audit
    assert audit.count('data-testid="via-api"') == 1  # the revocation only
    exported = admin_client.get(reverse("manage_audit"), {"format": "csv"})
    table = list(csv.reader(io.StringIO(exported.getvalue().decode())))
    assert table[0][-2:] == ["key name now", "via"]
    assert ["theirs", "api"] in [row[-2:] for row in table[1:] if row[2] == "revoked"]
    only_rotations = admin_client.get(reverse("manage_audit"), {"action": "rotated"})
    assert theirs.client_id not in only_rotations.content.decode()

    customer_client = Client()
    customer_client.force_login(customer)
    activity = customer_client.get(reverse("activity")).content.decode()
    assert mine.client_id in activity
    assert theirs.client_id not in activity
    assert "mine<br>" in activity  # named, without the admin's link
    assert reverse("manage_key", args=[mine.pk]) not in activity
    exported = customer_client.get(reverse("activity"), {"format": "csv"})
    rows = list(csv.reader(io.StringIO(exported.getvalue().decode())))
    assert rows[0][:3] == ["time (UTC)", "actor", "action"]
    assert {row[2] for row in rows[1:]} == {"created", "rotated"}


def test_the_csv_export_defuses_spreadsheet_formulas(
    admin_client: Client, customer: User, sample: Api
) -> None:
    key = issue(customer, sample, name="x", lifetime_days=30).key
    lifecycle.revoke_key(key, actor=customer, reason='=HYPERLINK("http://evil")')

    exported = admin_client.get(reverse("manage_audit"), {"format": "csv", "action": "revoked"})

    text = exported.getvalue().decode()
    assert "'=HYPERLINK" in text
    assert exported["Content-Disposition"] == 'attachment; filename="audit.csv"'


@pytest.mark.postgresql_only  # the database's own refusal is a PostgreSQL trigger
def test_audit_entries_cannot_be_changed_or_deleted(customer: User, sample: Api) -> None:
    from django.db import DatabaseError, transaction

    issue(customer, sample, name="x", lifetime_days=30)
    entry = AuditEntry.objects.get()

    with pytest.raises(ValueError, match="append-only"):
        entry.save()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(reason="rewritten")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).delete()


def test_the_last_used_command_reads_real_client_logins(customer: User, sample: Api) -> None:
    revealed = issue(customer, sample, name="busy", lifetime_days=30)
    unused = issue(customer, sample, name="idle", lifetime_days=30).key
    before = timezone.now() - timedelta(seconds=5)
    assert request_token(revealed.key.client_id, revealed.secret).status_code == 200

    call_command("sync_last_used")

    used = ApiKey.objects.get(pk=revealed.key.pk).last_used_at
    assert used is not None
    assert before < used <= timezone.now()
    assert ApiKey.objects.get(pk=unused.pk).last_used_at is None
    call_command("sync_last_used")  # again: the watermark holds, nothing moves back
    assert ApiKey.objects.get(pk=revealed.key.pk).last_used_at == used


@pytest.mark.django_db(transaction=True)
def test_a_second_copy_of_a_job_does_nothing_while_the_first_runs() -> None:
    held, release = threading.Event(), threading.Event()

    def first_run() -> None:
        with job_runs.job_lock("last_used") as state:
            assert state is not None
            held.set()
            release.wait(10)
        connections.close_all()

    thread = threading.Thread(target=first_run)
    thread.start()
    held.wait(10)
    try:
        assert jobs.sync_last_used().skipped
    finally:
        release.set()
        thread.join()
    assert not jobs.sync_last_used().skipped


def test_owners_are_reminded_once_per_threshold_with_a_link(
    customer: User, sample: Api, settings: Any
) -> None:
    settings.EXPIRY_REMINDER_DAYS = [30, 7, 1]
    key = issue(customer, sample, name="ending", lifetime_days=5).key

    call_command("send_expiry_reminders")
    call_command("send_expiry_reminders")

    mails = messages_to(customer.email)
    assert len(mails) == 1
    assert "expires in 7 days" in str(mails[0]["Subject"])
    assert "“ending”" in plain_text(mails[0])
    assert f"/keys/{key.pk}/" in plain_text(mails[0])
    assert set(ExpiryReminder.objects.values_list("days", flat=True)) == {30, 7}

    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() + timedelta(hours=12))
    call_command("send_expiry_reminders")
    wait_for_message(customer.email)
    time.sleep(0.5)
    assert len(messages_to(customer.email)) == 2


def test_the_daily_digest_lists_what_waits_once_a_day(
    admin: User, customer: User, guarded: Api
) -> None:
    request_key(customer, guarded, "first")
    request_key(customer, guarded, "second")
    wait_for_message(admin.email)  # the two request mails

    call_command("send_approval_digest")
    call_command("send_approval_digest")

    time.sleep(0.5)
    digests = [m for m in messages_to(admin.email) if "waiting for approval" in str(m["Subject"])]
    assert len(digests) == 1
    assert "“first”" in plain_text(digests[0])
    assert "“second”" in plain_text(digests[0])


def test_the_form_asks_why_for_apis_that_need_approval(
    client: Client, customer: User, guarded: Api
) -> None:
    client.force_login(customer)
    response = client.post(
        reverse("new_key"), {"name": "x", "api": "sample", "lifetime_days": "10"}
    )
    assert "needs an administrator's approval" in unescape(response.content.decode())
    assert not ApiKey.objects.exists()


def test_a_new_api_gets_its_scope_in_keycloak_and_lifespan_changes_reach_live_keys(
    admin_client: Client,
    customer: User,
    sample: Api,
    key_clients: Connection,
    request: pytest.FixtureRequest,
) -> None:
    slug = f"orders{uuid.uuid4().hex[:6]}"
    form = {
        "name": f"Orders {slug}",
        "slug": slug,
        "audience": f"https://api.example.com/{slug}",
        "description": "Orders",
        "max_key_lifetime_days": "180",
        "access_token_lifespan": "300",
    }
    admin_client.post(reverse("manage_api_new"), form)
    api = Api.objects.get(slug=slug)
    scope = keycloak.find_client_scope(key_clients, f"api-{slug}")
    assert scope is not None
    request.addfinalizer(lambda: keycloak.delete_client_scope(key_clients, scope["id"]))
    mapper = scope["protocolMappers"][0]["config"]
    assert mapper["included.custom.audience"] == f"https://api.example.com/{slug}"
    revealed = issue(customer, api, name="orders", lifetime_days=30)

    admin_client.post(
        reverse("manage_api_edit", args=[slug]), form | {"access_token_lifespan": "120"}
    )

    client = keycloak.get_client(key_clients, revealed.key.keycloak_id)
    assert client["attributes"]["access.token.lifespan"] == "120"
    assert client["attributes"]["portal.key"] == str(revealed.key.pk)
    token = request_token(revealed.key.client_id, revealed.secret).json()
    assert token["expires_in"] == 120
    assert AuditEntry.objects.filter(api=api, action="api_changed").exists()


def test_bad_catalog_input_is_refused_and_keycloak_down_changes_nothing(
    admin_client: Client, sample: Api, settings: Any
) -> None:
    bad = admin_client.post(
        reverse("manage_api_new"),
        {
            "name": "Evil",
            "slug": "evil",
            "audience": 'x"}, {"evil',
            "max_key_lifetime_days": "9",
            "access_token_lifespan": "300",
        },
    )
    assert "Use letters, digits" in bad.content.decode()
    settings.KEYCLOAK_URL = "http://127.0.0.1:9"
    down = admin_client.post(
        reverse("manage_api_new"),
        {
            "name": "Later",
            "slug": "later",
            "audience": "later-api",
            "max_key_lifetime_days": "9",
            "access_token_lifespan": "300",
        },
    )
    assert "Nothing was changed." in down.content.decode()
    assert not Api.objects.filter(slug__in=["evil", "later"]).exists()


def test_a_retired_api_takes_no_new_keys_and_its_live_keys_keep_working(
    admin_client: Client, client: Client, customer: User, sample: Api
) -> None:
    revealed = issue(customer, sample, name="before", lifetime_days=30)

    admin_client.post(reverse("manage_api_retire", args=["sample"]))

    assert request_token(revealed.key.client_id, revealed.secret).status_code == 200
    with pytest.raises(lifecycle.KeyNotIssued, match="retired"):
        issue(customer, sample, name="after", lifetime_days=30)
    customer_client = Client()
    customer_client.force_login(customer)
    form = customer_client.get(reverse("new_key")).content.decode()
    assert 'value="sample"' not in form
    assert AuditEntry.objects.filter(action="api_retired").count() == 1


def test_every_admin_button_works_in_the_browser(
    page: Page, make_keycloak_user: Callable[..., KeycloakUser], customer: User, guarded: Api
) -> None:
    revealed = request_key(customer, guarded, "clicked through")
    key = revealed.key
    admin = make_keycloak_user(roles=("portal-admin",))
    sign_in(page, admin.email)  # Keycloak makes them set up an authenticator app

    page.get_by_role("link", name="Admin").click()
    answer_second_factor(page, admin.email)  # and the admin area, use it
    page.locator(f"[data-client-id='{key.client_id}']").get_by_role(
        "button", name="Approve"
    ).click()
    expect(page.locator(".messages")).to_contain_text("is approved")
    assert request_token(key.client_id, revealed.secret).status_code == 200

    page.goto(reverse("manage_key", args=[key.pk]))
    page.get_by_label("Reason for suspending").fill("Unusual traffic.")
    page.get_by_role("button", name="Suspend").click()
    expect(page.locator(".messages")).to_contain_text("is suspended")
    assert request_token(key.client_id, revealed.secret).status_code == 401
    page.get_by_role("button", name="Reinstate").click()
    expect(page.locator(".messages")).to_contain_text("is reinstated")
    assert request_token(key.client_id, revealed.secret).status_code == 200
    page.get_by_label("Reason for revoking (cannot be undone)").fill("Contract ended.")
    page.get_by_role("button", name="Revoke").click()
    expect(page.locator(".messages")).to_contain_text("is revoked")
    assert request_token(key.client_id, revealed.secret).status_code == 401

    page.get_by_role("link", name="API catalog").click()
    page.get_by_role("link", name="Add an API").click()
    page.get_by_label("Name").fill("Orders")
    page.get_by_label("Slug").fill("orders")
    page.get_by_label("Audience").fill("orders-api")
    page.get_by_label("Longest key lifetime (days)").fill("0")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".field-error")).to_contain_text("greater than or equal to 1")
    assert not Api.objects.filter(slug="orders").exists()
