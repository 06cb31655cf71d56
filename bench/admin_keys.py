"""The admin key list with 1,000 and with 100,000 keys, and a team's page: server time and
SQL queries.

The same filters are requested at both sizes, through Django's full request cycle (test
client, signed in as an admin), against PostgreSQL. Keys are bulk-inserted rows without
Keycloak clients: the list reads only the database. One owner has 5 keys at both sizes
(the filter's cost as the table grows, for the same rows shown); another 1 key at the small
size and 50 at the large one (that ratio includes drawing 49 more rows). A third of the
keys are team keys, spread over TEAMS teams; one team gets every hundredth key (10 keys at
the small size, 1,000 at the large one: its ratios include drawing more rows), a quiet team
has 5 keys at both sizes (the same rows shown), and both teams' pages are requested by a
member at both sizes. The rows are deleted at the end.
"""

from __future__ import annotations

import os
import random
import uuid
from datetime import timedelta

from bench.common import page_time, setup_django, sign_in_as_admin

setup_django()

from django.db import connection
from django.test import Client
from django.utils import timezone

from apikeys.models import Api, ApiKey, Membership, Team, TeamRole, User

SIZES = (1_000, 100_000)
REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))
OWNERS = 2_000
QUIET_KEYS = 5
TEAMS = 300
STATUSES = ["active"] * 14 + ["revoked", "revoked", "expired", "expired", "pending", "suspended"]
FILTERS = {
    "no filter, page 1": {},
    "status + API, page 2": {"status": "active", "api": "sample", "page": "2"},
    "owner email prefix (1 key, then 50)": {"q": "bench-owner-0001"},
    "owner email prefix (5 keys at both)": {"q": "quiet-"},
    "key name contains": {"q": "nightly"},
    "unused 30 days, least used first": {"unused_days": "30", "sort": "last_used_at"},
    "expires before, oldest first": {"expires_before": "2027-01-31", "sort": "created_at"},
}


def team_of(n: int, teams: list[Team]) -> Team | None:
    """Every hundredth key is the big team's (teams[0]), the QUIET_KEYS after the quiet
    owner's are the quiet team's (teams[1]); a third of the rest are other teams'."""
    if n % 100 == 0:
        return teams[0]
    if QUIET_KEYS <= n < 2 * QUIET_KEYS:
        return teams[1]
    return teams[2 + n % (len(teams) - 2)] if n % 3 == 0 else None


def make_keys(
    start: int, count: int, owners: list[User], teams: list[Team], api: Api, rng: random.Random
) -> None:
    """Keys start..start+count; the first QUIET_KEYS are the last owner's (the quiet one)."""
    now = timezone.now()
    words = ["billing", "nightly", "export", "sync", "reporting", "mobile", "partner", "etl"]
    batch = []
    for n in range(start, start + count):
        pk = uuid.uuid4()
        created = now - timedelta(days=rng.uniform(0, 700))
        used = created + timedelta(days=rng.uniform(0, 60)) if rng.random() < 0.7 else None
        batch.append(
            ApiKey(
                id=pk,
                client_id=f"{ApiKey.CLIENT_ID_PREFIX}{pk.hex}",
                owner=owners[-1] if n < QUIET_KEYS else owners[(n - QUIET_KEYS) % OWNERS],
                team=team_of(n, teams),
                api=api,
                name=f"{rng.choice(words)} {rng.choice(words)} {n}",
                status=rng.choice(STATUSES),
                created_at=created,
                expires_at=created + timedelta(days=rng.choice([30, 90, 180, 365])),
                last_used_at=used,
            )
        )
        if len(batch) == 5_000:
            ApiKey.objects.bulk_create(batch)
            batch = []
    ApiKey.objects.bulk_create(batch)
    # The steady state of a table that autovacuum keeps: statistics current, the trigram
    # index's pending entries merged (until then each name search reads them all), and no
    # autovacuum of the new rows running beside the timed requests.
    with connection.cursor() as cursor:
        for table in ("apikeys_apikey", "apikeys_user", "apikeys_team"):
            cursor.execute(f"VACUUM ANALYZE {table}")


def measure(client: Client, filters: dict[str, dict[str, str]]) -> dict[str, tuple[float, int]]:
    return {
        label: page_time(client, "/manage/keys/", query, REPEATS)
        for label, query in filters.items()
    }


def main() -> None:
    rng = random.Random(7)
    run = uuid.uuid4().hex[:6]
    api = Api.objects.get(slug="sample")
    admin = User.objects.create(
        username=f"bench-admin-{run}", email=f"admin-{run}@example.com", is_staff=True
    )
    owners = User.objects.bulk_create(
        User(username=f"bench-owner-{run}-{n}", email=f"bench-owner-{n:04d}-{run}@example.com")
        for n in range(OWNERS)
    )
    owners.append(User.objects.create(username=f"bench-quiet-{run}", email=f"quiet-{run}@x.org"))
    teams = Team.objects.bulk_create(Team(name=f"bench team {run} {n}") for n in range(TEAMS))
    for team in teams[:2]:
        Membership.objects.create(team=team, user=admin, role=TeamRole.OWNER)
    filters = FILTERS | {
        "one team's keys (10, then 1,000)": {"team": str(teams[0].pk)},
        "a quiet team's keys (5 at both)": {"team": str(teams[1].pk)},
    }
    client = Client(HTTP_HOST="127.0.0.1")
    sign_in_as_admin(client, admin)
    results = {}
    try:
        made = 0
        for size in SIZES:
            make_keys(made, size - made, owners, teams, api, rng)
            made = size
            client.get("/manage/keys/")  # warm up
            results[size] = measure(client, filters)
            results[size]["the team's page (10, then 1,000)"] = page_time(
                client, f"/teams/{teams[0].pk}/", None, REPEATS
            )
            results[size]["the quiet team's page (5 at both)"] = page_time(
                client, f"/teams/{teams[1].pk}/", None, REPEATS
            )
    finally:
        ApiKey.objects.filter(owner__in=owners).delete()
        Team.objects.filter(pk__in=[t.pk for t in teams]).delete()
        User.objects.filter(pk__in=[o.pk for o in owners] + [admin.pk]).delete()

    small, large = SIZES
    print(f"median of {REPEATS} requests each; PostgreSQL; {OWNERS} owners, {TEAMS} teams")
    print(f"{'filter':38} {small:>8,} keys    {large:>8,} keys    ratio")
    for label in results[small]:
        (t1, q1), (t2, q2) = results[small][label], results[large][label]
        print(f"{label:38} {t1:7.1f} ms ({q1}q) {t2:7.1f} ms ({q2}q)  {t2 / t1:5.2f}")


if __name__ == "__main__":
    main()
