"""Teams: keys that belong to a company, not to the member who made them.

On the real Keycloak, in the real browser for the invitation, on both databases: who may
reach a team's keys (one rule, apikeys/access.py), invitations, the last owner, people who
leave while the keys stay, moves, and what Keycloak and a restore keep of a team.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from apikeys.keycloak import client as keycloak
from apikeys.keycloak.client import Connection
from apikeys.keycloak.key_clients import TEAM_ATTRIBUTE
from apikeys.models import (
    Api,
    ApiKey,
    AuditEntry,
    Invitation,
    Membership,
    Team,
    TeamRole,
    User,
    WebhookEndpoint,
)
from apikeys.operations import lifecycle, teams, webhooks
from apikeys.operations.reconcile import reconcile
from tests.accounts import PASSWORD, KeycloakUser, force_login_with_second_factor
from tests.browser import sign_in, sticking_out
from tests.conftest import eventually
from tests.factories import issue, portal_user, record_key, secret_works, unique_user, works
from tests.mail import messages_to, plain_text, wait_for_message
from tests.test_restore import take_backup

pytestmark = [pytest.mark.embedded, pytest.mark.usefixtures("key_clients", "real_smtp")]


def team_of(owner: User, *members: tuple[User, str], name: str = "Acme") -> Team:
    team = teams.create_team(owner, name)
    for person, role in members:
        Membership.objects.create(team=team, user=person, role=role)
    return team


def signed_in(person: User) -> Client:
    client = Client()
    client.force_login(person)
    return client


def signed_in_as_admin(person: User) -> Client:
    """The admin area needs the second factor used in this sign-in (apikeys/assurance.py)."""
    client = Client()
    force_login_with_second_factor(client, person)
    return client


def keycloak_link(email: str) -> str:
    """The action link of Keycloak's verification mail (after the invitation, to one address)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for message in messages_to(email):
            if link := re.search(
                r"https?://\S+/login-actions/action-token\?\S+", plain_text(message)
            ):
                return link.group(0)
        time.sleep(0.25)
    raise AssertionError(f"No verification mail to {email}")


def invitation_link(email: str) -> str:
    text = plain_text(wait_for_message(email))
    link = re.search(r"https?://\S+/invitations/\S+/", text)
    assert link is not None, text
    return link.group(0)


# --- The journey: invite, register, accept, make, rotate, leave -------------------------


@pytest.mark.django_db(transaction=True)  # the live server and Keycloak's pushes see commits
def test_an_invited_colleague_registers_joins_and_the_team_key_outlives_them(
    page: Page,
    pushing: Connection,
    make_keycloak_user: Callable[..., KeycloakUser],
    sample: Api,
) -> None:
    boss_account = make_keycloak_user()
    sign_in(page, boss_account.email)
    page.goto("/teams/")
    page.fill("#id_name", "Acme Payments")
    page.get_by_role("button", name="Make the team").click()
    expect(page.get_by_text("you are its owner")).to_be_visible()
    team = Team.objects.get(name="Acme Payments")
    colleague_email = f"colleague-{uuid.uuid4().hex[:8]}@example.com"
    page.fill("#id_email", colleague_email)
    page.select_option("#id_role", "developer")
    page.get_by_role("button", name="Send the invitation").click()
    expect(page.get_by_text(f"Invited {colleague_email}")).to_be_visible()
    link = invitation_link(colleague_email)
    for width in (600, 375):  # members, invitations and settings fit a phone
        page.set_viewport_size({"width": width, "height": 800})
        assert sticking_out(page) == [], width
    page.get_by_role("button", name="Sign out").click()

    # The colleague has no account: from the link, they register on Keycloak's page first.
    page.goto(link)
    expect(page.get_by_role("heading", name="Join the team Acme Payments")).to_be_visible()
    page.get_by_test_id("register-to-accept").click()
    page.fill("#email", colleague_email)
    page.fill("#firstName", "Col")
    page.fill("#lastName", "League")
    page.locator("[type=submit]").click()
    page.goto(keycloak_link(colleague_email))
    page.fill("#password-new", PASSWORD)
    page.fill("#password-confirm", PASSWORD)
    page.locator("[type=submit]").first.click()
    page.wait_for_url(re.compile(r".*/invitations/.+"))
    page.get_by_role("button", name="Accept and join").click()
    expect(page.get_by_text("Welcome to the team Acme Payments")).to_be_visible()
    colleague = User.objects.get(email=colleague_email)
    assert Membership.objects.get(team=team, user=colleague).role == TeamRole.DEVELOPER

    # The colleague makes a team key on the team's page.
    page.get_by_role("link", name="New key").click()
    page.fill("#id_name", "payments sync")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_test_id("client-secret").inner_text()
    key = ApiKey.objects.get(team=team, name="payments sync")
    assert key.owner == colleague
    assert secret_works(key, secret)

    # The owner rotates it; then the colleague is deleted in Keycloak.
    boss = User.objects.get(email=boss_account.email)
    rotated = lifecycle.rotate_secret(key, actor=boss)
    assert works(rotated)
    pushing.admin.delete_user(colleague.username)
    gone = eventually(lambda: not User.objects.get(pk=colleague.pk).is_active)
    page.goto(f"/teams/{team.pk}/")
    expect(page).not_to_have_url(re.compile(rf".*/teams/{team.pk}/$"))  # signed out
    assert works(rotated)  # the team's key still gets tokens
    assert ApiKey.objects.get(pk=key.pk).status == ApiKey.Status.ACTIVE
    assert not Membership.objects.filter(user=colleague).exists()
    assert AuditEntry.objects.filter(
        team=team, action=AuditEntry.Action.MEMBER_REMOVED, about_user=colleague
    ).exists()
    assert gone < 5.0


# --- One access rule ---------------------------------------------------------------------


def team_urls(team: Team, key: ApiKey) -> list[tuple[str, str]]:
    return [
        ("get", reverse("team", args=[team.pk])),
        ("get", reverse("team_activity", args=[team.pk])),
        ("get", reverse("key_detail", args=[key.pk])),
        ("get", reverse("rotate_key", args=[key.pk])),
        ("post", reverse("revoke_key", args=[key.pk])),
        ("post", reverse("team_invite", args=[team.pk])),
        ("get", f"{reverse('new_key')}?team={team.pk}"),
    ]


@pytest.mark.django_db(transaction=True)
def test_outsiders_and_ex_members_get_404_viewers_see_but_are_refused_changes(
    sample: Api,
) -> None:
    boss, viewer, outsider, leaver = (unique_user() for _ in range(4))
    team = team_of(boss, (viewer, TeamRole.VIEWER), (leaver, TeamRole.DEVELOPER))
    made = issue(boss, sample, "shared", team=team)
    key = made.key

    for method, url in team_urls(team, key):
        assert getattr(signed_in(outsider), method)(url).status_code == 404, url

    as_viewer = signed_in(viewer)
    assert as_viewer.get(reverse("team", args=[team.pk])).status_code == 200
    assert as_viewer.get(reverse("key_detail", args=[key.pk])).status_code == 200
    refused = as_viewer.post(
        reverse("revoke_key", args=[key.pk]),
        HTTP_REFERER=f"http://testserver{reverse('key_detail', args=[key.pk])}",
        follow=True,
    )
    assert "you may not change its keys" in refused.content.decode()
    assert ApiKey.objects.get(pk=key.pk).status == ApiKey.Status.ACTIVE
    assert as_viewer.get(reverse("rotate_key", args=[key.pk])).status_code == 302
    assert works(made)

    as_leaver = signed_in(leaver)
    assert as_leaver.get(reverse("key_detail", args=[key.pk])).status_code == 200
    teams.remove_member(team, leaver, actor=boss)
    for method, url in team_urls(team, key):
        assert getattr(as_leaver, method)(url).status_code == 404, url
    assert works(made)

    # A team key is not its maker's personal key: their own list does not show it.
    assert "shared" not in signed_in(boss).get(reverse("home")).content.decode()
    assert "shared" in signed_in(boss).get(reverse("team", args=[team.pk])).content.decode()


# --- Invitations -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_invitations_are_single_use_for_the_invited_address_until_they_expire_or_are_revoked() -> (
    None
):
    boss, invited, stranger = unique_user(), unique_user(), unique_user()
    team = team_of(boss)

    other = teams.invite(team, invited.email, TeamRole.VIEWER, actor=boss)
    with pytest.raises(teams.TeamRefused, match=f"This invitation is for {invited.email}"):
        teams.accept(other.token, stranger)
    page = signed_in(stranger).get(reverse("invitation", args=[other.token]))
    assert "Sign out and sign in" in page.content.decode()
    assert "Accept and join" not in page.content.decode()  # it could only be refused

    teams.accept(other.token, invited)
    with pytest.raises(teams.TeamRefused, match="used already"):
        teams.accept(other.token, invited)

    late = teams.invite(team, stranger.email, TeamRole.VIEWER, actor=boss)
    Invitation.objects.filter(pk=late.invitation.pk).update(expires_at=timezone.now())
    with pytest.raises(teams.TeamRefused, match="expired"):
        teams.accept(late.token, stranger)

    revoked = teams.invite(team, stranger.email, TeamRole.VIEWER, actor=boss)
    teams.revoke_invitation(revoked.invitation, actor=boss)
    answer = signed_in(stranger).post(
        reverse("invitation", args=[revoked.token]),
        HTTP_REFERER=f"http://testserver{reverse('invitation', args=[revoked.token])}",
        follow=True,
    )
    assert "revoked by an owner" in answer.content.decode()
    with pytest.raises(teams.TeamRefused, match="not valid"):
        teams.accept("made-up", stranger)
    assert not Membership.objects.filter(team=team, user=stranger).exists()
    assert "Acme" in str(wait_for_message(invited.email)["Subject"])


# --- The last owner ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_owners_demoting_each_other_at_once_never_leave_the_team_ownerless() -> None:
    for _ in range(3):
        first, second = unique_user(), unique_user()
        team = team_of(first, (second, TeamRole.OWNER))
        barrier = threading.Barrier(2)

        def demote(
            actor: User, target: User, team: Team = team, barrier: threading.Barrier = barrier
        ) -> str:
            barrier.wait()
            try:
                teams.change_role(team, target, TeamRole.DEVELOPER, actor=actor)
            except teams.TeamRefused as refused:
                return str(refused)
            finally:
                connections.close_all()
            return "done"

        with ThreadPoolExecutor(max_workers=2) as pool:
            outcomes = list(pool.map(demote, (first, second), (second, first)))

        assert sorted(o == "done" for o in outcomes) == [False, True], outcomes
        assert team.memberships.filter(role=TeamRole.OWNER).count() == 1
    with pytest.raises(teams.TeamRefused, match="last owner"):
        teams.remove_member(team, team.owners().get(), actor=team.owners().get())


@pytest.mark.django_db(transaction=True)
def test_a_team_whose_last_owner_is_deleted_is_flagged_and_an_admin_appoints_one(
    pushing: Connection,
    make_keycloak_user: Callable[..., KeycloakUser],
    sample: Api,
    admin_user: User,
) -> None:
    boss = portal_user(make_keycloak_user())
    dev = unique_user()
    team = team_of(boss, (dev, TeamRole.DEVELOPER))
    made = issue(boss, sample, "boss's", team=team)

    pushing.admin.delete_user(boss.username)

    eventually(lambda: Team.objects.get(pk=team.pk).ownerless_since is not None)
    eventually(lambda: bool(messages_to(admin_user.email)))  # the administrators are asked
    assert works(made)
    as_admin = signed_in_as_admin(admin_user)
    listed = as_admin.get(reverse("manage_teams")).content.decode()
    assert 'data-testid="ownerless"' in listed
    keys = as_admin.get(reverse("manage_keys"), {"team": str(team.pk)}).content.decode()
    assert made.key.client_id in keys
    team_page = reverse("manage_team", args=[team.pk])
    assert f'Only the keys of the team <a href="{team_page}">' in keys
    assert ">Team</label>" not in keys  # the filter is said in words, not as an empty field
    teams.appoint_owner(team, dev, actor=admin_user, reason="Asked by the CTO.")
    assert Team.objects.get(pk=team.pk).ownerless_since is None
    assert Membership.objects.get(team=team, user=dev).role == TeamRole.OWNER
    entry = AuditEntry.objects.get(team=team, action=AuditEntry.Action.OWNER_APPOINTED)
    assert entry.actor == admin_user
    assert "CTO" in entry.reason


# --- Quota -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_twenty_creates_at_once_by_a_team_make_exactly_its_quota(sample: Api) -> None:
    members = [unique_user() for _ in range(4)]
    team = team_of(members[0], *((m, TeamRole.DEVELOPER) for m in members[1:]))
    team.max_live_keys = 5
    team.save()

    def create(n: int) -> str:
        try:
            issue(members[n % 4], sample, f"key {n}", team=team)
        except lifecycle.QuotaExceeded:
            return "quota"
        finally:
            connections.close_all()
        return "made"

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(create, range(20)))

    assert sorted(outcomes) == ["made"] * 5 + ["quota"] * 15, outcomes
    assert team.keys.live().count() == 5


# --- Moves, Keycloak's marks, reconcile and restores -------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_personal_key_moved_into_a_team_keeps_its_secret_and_its_client_says_so(
    sample: Api, key_clients: Connection
) -> None:
    boss = unique_user()
    team = team_of(boss)
    made = issue(boss, sample, "mine")

    answer = signed_in(boss).post(reverse("move_key", args=[made.key.pk]), {"team": team.pk})

    assert answer.status_code == 302
    key = ApiKey.objects.get(pk=made.key.pk)
    assert key.team == team
    assert works(made)
    client = keycloak.get_key_client(key_clients, key.keycloak_id)
    assert client.team == str(team.pk)
    assert client.sealed
    entry = AuditEntry.objects.get(key=key, action=AuditEntry.Action.TRANSFERRED)
    assert "to the team Acme" in entry.reason


@pytest.mark.django_db(transaction=True)
def test_reconcile_puts_back_a_team_mark_changed_by_hand(
    sample: Api, key_clients: Connection
) -> None:
    boss = unique_user()
    team = team_of(boss)
    made = issue(boss, sample, "shared", team=team)
    personal = issue(boss, sample, "mine")
    tampered = str(uuid.uuid4())
    for key in (made.key, personal.key):
        keycloak.update_client(
            key_clients, key.keycloak_id, {"attributes": {TEAM_ATTRIBUTE: tampered}}
        )

    reconcile()

    assert keycloak.get_key_client(key_clients, made.key.keycloak_id).team == str(team.pk)
    assert keycloak.get_key_client(key_clients, personal.key.keycloak_id).team == ""
    assert works(made)
    assert works(personal)
    assert AuditEntry.objects.filter(
        key=made.key, action=AuditEntry.Action.REPAIRED, reason__contains="team"
    ).exists()


@pytest.mark.django_db(transaction=True)
def test_a_restore_keeps_team_keys_in_their_team_even_one_made_after_the_backup(
    sample: Api, key_clients: Connection, tmp_path: Path
) -> None:
    boss, dev = unique_user(), unique_user()
    old_team = team_of(boss, (dev, TeamRole.DEVELOPER), name="Old")
    put_back = take_backup(tmp_path / "backup")
    in_old = issue(dev, sample, "after, in the old team", team=old_team)
    new_team = team_of(boss, name="New")
    in_new = issue(boss, sample, "after, in a new team", team=new_team)
    put_back()

    reconcile()

    rebuilt = ApiKey.objects.get(pk=in_old.key.pk)
    assert rebuilt.team_id == old_team.pk
    assert rebuilt.owner.pk == dev.pk
    again = ApiKey.objects.get(pk=in_new.key.pk)
    assert again.team_id == new_team.pk
    assert Team.objects.get(pk=new_team.pk).ownerless_since is not None  # awaits an owner
    assert works(in_old)
    assert works(in_new)
    assert rebuilt.status == again.status == ApiKey.Status.ACTIVE


@pytest.mark.django_db(transaction=True)
def test_an_admin_moves_a_key_to_another_person_with_a_reason(
    sample: Api, admin_user: User
) -> None:
    leaver, successor = unique_user(), unique_user()
    made = issue(leaver, sample, "handover")

    signed_in_as_admin(admin_user).post(
        reverse("manage_move", args=[made.key.pk]),
        {"to_email": successor.email, "reason": "Handover before leaving."},
    )

    key = ApiKey.objects.get(pk=made.key.pk)
    assert key.owner == successor
    assert key.team is None
    assert works(made)
    assert "handover" in signed_in(successor).get(reverse("home")).content.decode()
    assert signed_in(leaver).get(reverse("key_detail", args=[key.pk])).status_code == 404
    entry = AuditEntry.objects.get(key=key, action=AuditEntry.Action.TRANSFERRED)
    assert entry.actor == admin_user
    moved_to = f"Moved from personal keys to the personal keys of {successor.email}."
    assert entry.reason == f"{moved_to} Handover before leaving."
    created = AuditEntry.objects.get(key=key, action=AuditEntry.Action.CREATED)
    assert created.actor_as_seen_by(successor) == "its holder then"  # not an administrator
    assert created.actor_as_seen_by(leaver) == leaver.email
    assert entry.actor_as_seen_by(successor) == "an administrator"
    activity = signed_in(successor).get(reverse("activity")).content.decode()
    assert "its holder then" in activity
    assert leaver.email not in activity
    left = signed_in(leaver).get(reverse("activity")).content.decode()  # a trace of it stays
    assert f"Moved out of the personal keys of {leaver.email}. Handover before leaving." in left
    assert key.client_id in left
    assert successor.email not in left


@pytest.mark.django_db(transaction=True)
def test_an_admin_names_the_team_and_a_refused_move_keeps_what_was_typed(
    sample: Api, admin_user: User
) -> None:
    maker, heir, gone = unique_user(), unique_user(), unique_user(is_active=False)
    full = team_of(maker, (heir, TeamRole.DEVELOPER), name="Full")
    Team.objects.filter(pk=full.pk).update(max_live_keys=1)
    held = issue(maker, sample, "the one it may hold", team=full)
    acme = team_of(maker)
    for _ in range(2):
        team_of(maker, name="Twin")
    made = issue(maker, sample, "handover")
    ended = issue(maker, sample, "ended")
    lifecycle.revoke_key(ended.key, actor=maker)
    admin = signed_in_as_admin(admin_user)
    move = reverse("manage_move", args=[made.key.pk])
    why = "Ticket 42: the reports team took it over."

    unknown = admin.post(move, {"to_email": gone.email, "to_team": "Acme", "reason": why})
    nowhere = admin.post(move, {"reason": why})
    twins = admin.post(move, {"to_team": "twin", "reason": why})
    missing = admin.post(move, {"to_team": "Nope", "reason": why})
    stranger = admin.post(move, {"to_email": heir.email, "to_team": "Acme", "reason": why})
    at_quota = admin.post(move, {"to_team": str(full.pk), "reason": why})
    too_late = admin.post(reverse("manage_move", args=[ended.key.pk]), {"to_team": "Acme"})
    within = admin.post(
        reverse("manage_move", args=[held.key.pk]),
        {"to_email": heir.email, "to_team": "Full", "reason": "Its maker left."},
    )  # a team's key stays the team's whoever made it: nothing to move
    moved = admin.post(move, {"to_team": "acme", "reason": why})
    opened_again = admin.get(move)  # the address a refused move left in the address bar

    assert unknown.status_code == 400
    shown = unknown.content.decode()
    assert f"No active portal account has the email {gone.email}." in shown
    assert f'value="{gone.email}"' in shown
    assert 'value="Acme"' in shown
    assert why in shown
    assert '<details class="card" open>' in shown
    assert nowhere.status_code == 400
    assert "Say where to: a person&#x27;s email, a team, or both." in nowhere.content.decode()
    assert "Several teams are called twin: give its id." in twins.content.decode()
    assert "No team is called Nope or has this id." in missing.content.decode()
    assert stranger.status_code == 400
    assert f"{heir.email} is not a member of the team Acme" in stranger.content.decode()
    assert at_quota.status_code == 409
    assert "The team Full is at its quota of 1 live key." in at_quota.content.decode()
    assert 'role="alert"><p>The team Full' in at_quota.content.decode()  # by the form
    assert why in at_quota.content.decode()
    assert too_late.status_code == 409
    assert f"{ended.key.client_id} has ended: there is nothing to move." in unescape(
        too_late.content.decode()
    )
    assert within.status_code == 409
    assert f"{held.key.client_id} is already the team Full&#x27;s." in within.content.decode()
    assert moved.status_code == 302
    assert opened_again["Location"] == reverse("manage_key", args=[made.key.pk])
    key = ApiKey.objects.get(pk=made.key.pk)
    assert (key.team, key.owner) == (acme, maker)
    entry = AuditEntry.objects.get(key=key, action=AuditEntry.Action.TRANSFERRED)
    assert entry.reason == f"Moved from personal keys to the team Acme. {why}"
    assert works(made)


@pytest.mark.django_db(transaction=True)
def test_a_key_moved_out_of_a_team_is_named_to_the_team_by_its_client_id_only(
    sample: Api, admin_user: User
) -> None:
    boss, contractor = unique_user(), unique_user()
    team = team_of(boss)
    made = issue(boss, sample, "team build", team=team)
    activity = reverse("team_activity", args=[team.pk])
    assert "team build" in signed_in(boss).get(activity).content.decode()

    signed_in_as_admin(admin_user).post(
        reverse("manage_move", args=[made.key.pk]),
        {"to_email": contractor.email, "reason": "Handover."},
    )
    moved = ApiKey.objects.get(pk=made.key.pk)
    lifecycle.rename_key(moved, name="secret project", description="", actor=contractor)

    page = signed_in(boss).get(activity).content.decode()
    exported = signed_in(boss).get(activity, {"format": "csv"}).getvalue().decode()
    mine = signed_in(contractor).get(reverse("activity")).content.decode()
    assert made.key.client_id in page  # the team's entries of it stay the team's to read
    left = AuditEntry.objects.get(team=team, key=None, action=AuditEntry.Action.TRANSFERRED)
    assert left.client_id == made.key.client_id
    assert left.reason == "Moved out of the team Acme. Handover."  # not who holds it now
    assert left.ip_address  # the admin's address, kept (and not shown to the team)
    assert 'data-action="transferred"' in page
    for read_by_the_old_team in (page, exported):
        assert "secret project" not in unescape(read_by_the_old_team)
    assert "secret project" in mine  # its holder reads it by its name
    created = AuditEntry.objects.get(key=moved, action=AuditEntry.Action.CREATED)
    assert created.actor_as_seen_by(contractor) == "a member of its team then"
    assert boss.email not in mine


def test_the_admin_team_list_counts_each_live_key_once_whatever_the_members(
    sample: Api, admin_user: User
) -> None:
    boss, dev, viewer = unique_user(), unique_user(), unique_user()
    team = team_of(boss, (dev, TeamRole.DEVELOPER), (viewer, TeamRole.VIEWER))
    for status in ("active", "active", "revoked"):
        record_key(boss, sample, status, team=team)

    listed = signed_in_as_admin(admin_user).get(reverse("manage_teams")).content.decode()

    row = re.search(rf'<tr data-team="{team.pk}">.*?</tr>', listed, re.S)
    assert row is not None
    assert "<td>3</td><td>2</td>" in row.group(0)  # 3 members, 2 live keys (not 3 x 2)


def test_the_admin_team_list_counts_the_teams_and_pages_through_them(
    admin_user: User, db: None
) -> None:
    Team.objects.bulk_create([Team(name=f"Paged {n:02}") for n in range(51)])
    admin = signed_in_as_admin(admin_user)

    first = admin.get(reverse("manage_teams"), {"q": "Paged"}).content.decode()
    second = admin.get(reverse("manage_teams"), {"q": "Paged", "page": "2"}).content.decode()

    assert "51 teams named like “Paged”" in first
    assert first.count("<tr data-team=") == 50
    assert 'href="?q=Paged&amp;page=2" rel="next"' in first
    assert second.count("<tr data-team=") == 1
    assert "Paged 50" in second


def test_invitations_expire_after_the_configured_days(settings: Any, db: None) -> None:
    settings.TEAM_INVITATION_DAYS = 3
    boss = unique_user()
    invited = teams.invite(team_of(boss), "x@example.com", TeamRole.VIEWER, actor=boss)
    left = invited.invitation.expires_at - timezone.now()
    assert timedelta(days=2, hours=23) < left <= timedelta(days=3)


@pytest.mark.django_db(transaction=True)
def test_a_teams_webhooks_hear_its_keys_and_its_viewers_cannot_add_one(sample: Api) -> None:
    dev, viewer = unique_user(), unique_user()
    team = team_of(dev, (viewer, TeamRole.VIEWER))
    personal = webhooks.create_endpoint(dev, url="http://127.0.0.1:9/mine", events=[])
    added = signed_in(dev).post(
        f"{reverse('webhook_new')}?team={team.pk}",
        {"url": "http://127.0.0.1:9/team", "events": ["key.created"]},
    )
    assert added.status_code == 200
    endpoint = WebhookEndpoint.objects.get(url="http://127.0.0.1:9/team")
    assert endpoint.team == team

    issue(dev, sample, "shared", team=team)

    assert endpoint.messages.filter(event_type="key.created").count() == 1
    assert not personal.endpoint.messages.exists()
    as_viewer = signed_in(viewer)
    listed = as_viewer.get(f"{reverse('webhook_list')}?team={team.pk}").content.decode()
    assert "http://127.0.0.1:9/team" in listed
    assert "Add an endpoint" not in listed
    refused = as_viewer.post(
        f"{reverse('webhook_new')}?team={team.pk}",
        {"url": "http://127.0.0.1:9/viewer", "events": ["key.created"]},
        follow=True,
    )
    assert "you may not change its keys and webhooks" in refused.content.decode()
    assert not WebhookEndpoint.objects.filter(url="http://127.0.0.1:9/viewer").exists()
    history = AuditEntry.objects.of_team(team).filter(action=AuditEntry.Action.WEBHOOK_ADDED)
    assert history.count() == 1


def test_a_big_teams_page_lists_its_keys_a_hundred_at_a_time(sample: Api, db: None) -> None:
    boss = unique_user()
    team = team_of(boss)
    team.max_live_keys = 500
    team.save()
    for n in range(101):
        record_key(boss, sample, team=team, name=f"key {n:03d}")

    first = signed_in(boss).get(reverse("team", args=[team.pk])).content.decode()
    second = signed_in(boss).get(reverse("team", args=[team.pk]), {"page": 2}).content.decode()

    assert first.count('data-client-id="') == 100
    assert second.count('data-client-id="') == 1
    assert "101 of 500 live keys" in first
    assert "Page 1 of 2" in first


@pytest.mark.django_db(transaction=True)
def test_invitations_sent_by_someone_who_is_no_longer_an_owner_stop_working() -> None:
    boss, other_owner = unique_user(), unique_user()
    alias = unique_user()
    team = team_of(boss, (other_owner, TeamRole.OWNER))
    sent = teams.invite(team, alias.email, TeamRole.OWNER, actor=boss)

    teams.remove_member(team, boss, actor=other_owner)

    with pytest.raises(teams.TeamRefused, match="revoked"):
        teams.accept(sent.token, alias)


@pytest.mark.django_db(transaction=True)
def test_a_disabled_co_owner_does_not_count_as_the_owner_left() -> None:
    boss, disabled = unique_user(), unique_user(is_active=False)
    team = team_of(boss, (disabled, TeamRole.OWNER))

    with pytest.raises(teams.TeamRefused, match="last owner"):
        teams.remove_member(team, boss, actor=boss)


@pytest.mark.django_db(transaction=True)
def test_an_administrator_in_a_team_acts_from_the_admin_area_as_an_administrator(
    sample: Api,
) -> None:
    boss = unique_user()
    admin = unique_user(staff=True)
    team = team_of(boss, (admin, TeamRole.DEVELOPER))
    made = issue(boss, sample, "shared", team=team)

    signed_in_as_admin(admin).post(
        reverse("manage_suspend", args=[made.key.pk]), {"reason": "checking a report"}
    )

    entry = AuditEntry.objects.get(key=made.key, action=AuditEntry.Action.SUSPENDED)
    assert entry.actor_role == ""
    assert entry.actor_as_seen_by(boss) == "an administrator"
    assert entry.address_as_seen_by(boss) == ""
    teams.rename_team(team, "Acme 2", actor=admin)  # as a member, on the team's page
    renamed = AuditEntry.objects.get(team=team, action=AuditEntry.Action.TEAM_CHANGED)
    assert renamed.actor_role == TeamRole.DEVELOPER
