"""apikeys: the API key portal from a terminal (`apikeys --help`).

Exit codes: 0 done; 2 usage; 3 not signed in; 4 not found; 5 refused (quota, state, limits,
rights); 6 the portal or Keycloak cannot be reached or failed; 1 anything else (also an output
cut short: what read it stopped early, as `| head` does).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from apikeys_cli import signin
from apikeys_cli.errors import Failure, NotFound, NotSignedIn, StepUpNeeded, Usage
from apikeys_cli.http import request, require_safe_url

DEFAULT_PORTAL = "http://127.0.0.1:8000"
KEY_COLUMNS = (
    "name",
    "team",
    "api",
    "client_id",
    "status",
    "permissions",
    "dpop",
    "workload",
    "expires_at",
    "last_used_at",
)
ROLES = ("owner", "developer", "viewer")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        code = _run(args)
        sys.stdout.flush()  # a reader gone shows here, not in a traceback at exit
        return code
    except BrokenPipeError:
        # What read the output stopped early (`| head -1`). Python would complain again when
        # it flushes at exit: the rest goes nowhere; so does this line if stderr went too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        try:
            print("apikeys: the output was cut short: what read it stopped early.", file=sys.stderr)
        except OSError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())
        return 1


def _run(args: argparse.Namespace) -> int:
    """The command; a failure said on stderr, as its exit code."""
    try:
        return int(args.run(args) or 0)
    except Failure as failure:
        print(f"apikeys: {failure}", file=sys.stderr)
        for field, messages in _field_errors(failure).items():
            print(f"  {field}: {' '.join(messages)}", file=sys.stderr)
        return failure.exit_code
    except KeyboardInterrupt:
        return 130


# Commands


def login(args: argparse.Namespace) -> int:
    portal = _portal(args)
    if args.device:
        signin.login_device(portal)
    else:
        signin.login(portal, open_browser=not args.no_browser)
    me = _call("GET", "/me")
    print(f"Signed in to {portal} as {me['email']}{' (admin)' if me['admin'] else ''}.")
    return 0


def logout(args: argparse.Namespace) -> int:
    print("Signed out." if signin.logout() else "Not signed in.")
    return 0


def token(args: argparse.Namespace) -> int:
    """A current access token, for curl and other tools: PORTAL_TOKEN=$(apikeys token)."""
    print(signin.access_token(signin.load()))
    return 0


def me(args: argparse.Namespace) -> int:
    return _show(args, _call("GET", "/me"), ("email", "name", "admin", "second_factor", "sub"))


def apis(args: argparse.Namespace) -> int:
    found = _call("GET", "/admin/apis" if getattr(args, "all", False) else "/apis")
    columns = ("slug", "name", "requires_approval", "max_key_lifetime_days", "retired")
    if args.json:
        return _table(args, found, columns)
    rows = [api | {"permissions": [p["name"] for p in api["permissions"]]} for api in found]
    return _table(args, rows, (*columns, "permissions"))


def keys_list(args: argparse.Namespace) -> int:
    query: dict[str, Any] = {"live": "false" if args.all else "true", "per_page": 200}
    if args.team:
        query["team"] = _team_id(args.team)
    return _keys_table(args, _call("GET", "/keys", query=query)["items"], KEY_COLUMNS)


def keys_create(args: argparse.Namespace) -> int:
    body = {
        "name": args.name,
        "api": args.api,
        "lifetime_days": args.days,
        "description": args.description,
        "justification": args.justification,
    }
    if args.team:
        body["team"] = _team_id(args.team)
    if args.allow_from:
        body["networks"] = args.allow_from
    if args.permission or args.no_permissions:
        body["permissions"] = args.permission
    if args.public_key or args.jwks_url:
        body["credential"] = "private_key_jwt"
        body["public_key"] = _read(args.public_key) if args.public_key else None
        body["jwks_url"] = args.jwks_url
    if args.workload_issuer or args.workload_subject:
        if not (args.workload_issuer and args.workload_subject):
            raise Usage(
                "a workload identity key needs both --workload-issuer and --workload-subject "
                "(see `apikeys workload-issuers list`)"
            )
        body["credential"] = "workload"
        body["workload_issuer"] = args.workload_issuer
        body["workload_subject"] = args.workload_subject
    if args.dpop:
        body["dpop"] = True
    headers = {"Idempotency-Key": args.idempotency_key or str(uuid.uuid4())}
    return _secret(args, _call("POST", "/keys", body=body, headers=headers))


def keys_show(args: argparse.Namespace) -> int:
    key = _call("GET", f"/keys/{_key_id(args.key)}")
    if args.json:
        return _show(args, key, None)
    waiting = key["permission_request"]
    asked = f"{', '.join(waiting['permissions'])} (waiting for approval)" if waiting else None
    shown = _readable(key) | {
        "permissions": key["permissions"] or "none",
        "permission_request": asked,
    }
    return _show(args, shown, None)


def keys_rotate(args: argparse.Namespace) -> int:
    body = {"grace_seconds": _seconds(args.grace)}
    headers = {"Idempotency-Key": args.idempotency_key or str(uuid.uuid4())}
    path = f"/keys/{_key_id(args.key)}/rotate"
    return _secret(args, _call("POST", path, body=body, headers=headers))


def keys_rename(args: argparse.Namespace) -> int:
    body = {"name": args.name, "description": args.description}
    body = {field: value for field, value in body.items() if value is not None}
    if not body:
        raise SystemExit("Give --name, --description or both.")
    return _show(args, _call("PATCH", f"/keys/{_key_id(args.key)}", body=body), None)


def keys_move(args: argparse.Namespace) -> int:
    """A personal key of yours into a team; its secret and clients go on working."""
    body = {"team": _team_id(args.team)}
    key = _call("POST", f"/keys/{_key_id(args.key)}/move", body=body)
    if args.json:
        return _show(args, key, None)
    print(f"{key['client_id']} is now a key of the team {key['team_name']}; it works as before.")
    return 0


def keys_networks(args: argparse.Namespace) -> int:
    """Where a key's tokens may be requested from; Keycloak refuses every other address."""
    if not args.allow_from and not args.anywhere:
        raise SystemExit("Give --allow-from RANGE (repeatable) or --anywhere.")
    body = {"networks": [] if args.anywhere else args.allow_from}
    key = _call("PUT", f"/keys/{_key_id(args.key)}/networks", body=body)
    if args.json:
        return _show(args, key, None)
    print(f"{key['client_id']}: tokens from {', '.join(key['networks']) or 'anywhere'}.")
    return 0


def keys_dpop(args: argparse.Namespace) -> int:
    """Require DPoP-bound tokens of a key (RFC 9449), or stop requiring them."""
    key = _call("PUT", f"/keys/{_key_id(args.key)}/dpop", body={"required": args.on})
    if args.json:
        return _show(args, key, None)
    if key["dpop"]:
        print(
            f"{key['client_id']}: from its next token request on, Keycloak issues tokens only "
            "with a DPoP proof (RFC 9449), bound to the proof's key."
        )
    else:
        print(f"{key['client_id']}: plain bearer tokens again, from its next token request on.")
    return 0


def keys_permissions(args: argparse.Namespace) -> int:
    """What a key may do at its API, and what it asked for; with --set, change that."""
    key_id = _key_id(args.key)
    if args.withdraw:
        key = _call("DELETE", f"/keys/{key_id}/permission-request")
        said = ["Request withdrawn: the key keeps the permissions it has."]
    elif args.set is not None:
        body = {"permissions": args.set, "justification": args.justification}
        changed = _call("PUT", f"/keys/{key_id}/permissions", body=body)
        if args.json:
            return _show(args, changed, None)
        key, said = changed["key"], _permission_changes(changed)
    else:
        key, said = _call("GET", f"/keys/{key_id}"), []
    if args.json:
        return _show(args, key, None)
    for line in said:
        print(line)
    _print_pairs(_permissions_of(key))
    return 0


def _permission_changes(changed: dict[str, Any]) -> list[str]:
    said = [f"Added: {', '.join(changed['added'])}."] if changed["added"] else []
    if changed["removed"]:
        said.append(f"Removed: {', '.join(changed['removed'])}.")
    if changed["requested"]:
        asked = ", ".join(changed["requested"]["permissions"])
        said.append(
            f"Requested: {asked}. An administrator decides; the key works with what it has "
            "until then."
        )
    return said or ["Nothing to change: the key already has these permissions."]


def _permissions_of(key: dict[str, Any]) -> dict[str, Any]:
    waiting = key["permission_request"]
    shown = {"client_id": key["client_id"], "permissions": key["permissions"] or "none"}
    if waiting:
        shown["requested"] = ", ".join(waiting["permissions"])
        shown["requested_at"] = waiting["created_at"]
        shown["justification"] = waiting["justification"]
    return shown


def keys_end_grace(args: argparse.Namespace) -> int:
    key = _call("POST", f"/keys/{_key_id(args.key)}/end-grace")
    if args.json:
        return _show(args, key, None)
    print("The previous secret stopped working; only the current one gets tokens.")
    return 0


def keys_reinstate(args: argparse.Namespace) -> int:
    key = _call("POST", f"/keys/{_key_id(args.key)}/reinstate")
    if args.json:
        return _show(args, key, None)
    print(f"{key['client_id']} works again.")
    return 0


def keys_usage(args: argparse.Namespace) -> int:
    found = _call("GET", f"/keys/{_key_id(args.key)}/usage")
    if args.json:
        return _show(args, found, None)
    days = [d for d in found["days"] if d["grants"] or d["wrong_credentials"] or d["refused"]]
    _table(args, days, ("day", "grants", "wrong_credentials", "refused"))
    if found["warning"]:
        print(f"warning: {found['warning']}", file=sys.stderr)
    return 0


def public_keys_list(args: argparse.Namespace) -> int:
    found = _call("GET", f"/keys/{_key_id(args.key)}/public-keys")
    return _table(args, found, ("kid", "summary", "alg", "added_at"))


def public_keys_add(args: argparse.Namespace) -> int:
    body = {"public_key": _read(args.file)}
    key = _call("POST", f"/keys/{_key_id(args.key)}/public-keys", body=body)
    return _table(args, key["public_keys"], ("kid", "summary", "alg", "added_at"))


def public_keys_remove(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    key = _call("DELETE", f"/keys/{_key_id(args.key)}/public-keys/{quote(args.kid, safe='')}")
    return _table(args, key["public_keys"], ("kid", "summary", "alg", "added_at"))


def public_keys_refresh(args: argparse.Namespace) -> int:
    key = _call("POST", f"/keys/{_key_id(args.key)}/refresh-public-keys")
    if args.json:
        return _show(args, key, None)
    print("Keycloak has the key's public keys as listed (a JWKS URL is read again).")
    return 0


WEBHOOK_COLUMNS = ("id", "url", "active", "description")


def webhooks_list(args: argparse.Namespace) -> int:
    query = {"team": _team_id(args.team)} if args.team else None
    return _table(args, _call("GET", "/webhooks", query=query), WEBHOOK_COLUMNS)


def webhooks_create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"url": args.url, "description": args.description}
    if args.team:
        body["team"] = _team_id(args.team)
    if args.event:
        body["events"] = args.event
    return _signing_secret(args, _call("POST", "/webhooks", body=body))


def webhooks_show(args: argparse.Namespace) -> int:
    return _show(args, _call("GET", f"/webhooks/{_uuid(args.endpoint)}"), None)


def webhooks_update(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.url:
        body["url"] = args.url
    if args.description is not None:
        body["description"] = args.description
    if args.event:
        body["events"] = args.event
    if args.pause or args.resume:
        body["active"] = bool(args.resume)
    if not body:
        raise Usage("say what to change: --url, --description, --event, --pause or --resume")
    found = _call("PATCH", f"/webhooks/{_uuid(args.endpoint)}", body=body)
    return _show(args, found, WEBHOOK_COLUMNS)


def webhooks_delete(args: argparse.Namespace) -> int:
    endpoint = _uuid(args.endpoint)
    if not _confirmed(args, f"Delete the webhook endpoint {args.endpoint} and its log?"):
        return 2
    _call("DELETE", f"/webhooks/{endpoint}")
    print("Deleted.")
    return 0


def webhooks_rotate(args: argparse.Namespace) -> int:
    body = {"overlap_seconds": _seconds(args.overlap)}
    found = _call("POST", f"/webhooks/{_uuid(args.endpoint)}/rotate-secret", body=body)
    return _signing_secret(args, found)


def webhooks_test(args: argparse.Namespace) -> int:
    message = _call("POST", f"/webhooks/{_uuid(args.endpoint)}/test")
    return _show(args, message, ("id", "event_type", "status"))


def webhooks_log(args: argparse.Namespace) -> int:
    found = _call(
        "GET", f"/webhooks/{_uuid(args.endpoint)}/messages", query={"per_page": args.limit}
    )
    rows = [
        message
        | {
            "last": next(
                (
                    f"{a['status_code'] or a['error'][:40]} in {a['latency_ms']} ms"
                    for a in message["attempts_made"][:1]
                ),
                "-",
            )
        }
        for message in found["items"]
    ]
    return _table(args, rows, ("id", "event_type", "status", "attempts", "last"))


def webhooks_resend(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    path = f"/webhooks/{_uuid(args.endpoint)}/messages/{quote(args.message, safe='')}/resend"
    return _show(args, _call("POST", path), ("id", "event_type", "status"))


def _signing_secret(args: argparse.Namespace, found: dict[str, Any]) -> int:
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    _print_pairs(
        {
            "id": found["endpoint"]["id"],
            "team": found["endpoint"]["team"] or "personal",
            "url": found["endpoint"]["url"],
            "signing_secret": found["signing_secret"],
            "old_secret_until": found["endpoint"]["previous_secret_until"],
        }
    )
    print(
        "\nThe signing secret is shown this once: keep it where your receiver reads it.",
        file=sys.stderr,
    )
    return 0


def _uuid(given: str, what: str = "an endpoint id (see `apikeys webhooks list`)") -> str:
    try:
        return str(uuid.UUID(given))
    except ValueError:
        raise Usage(f"{given!r} is not {what}") from None


TOKEN_COLUMNS = ("id", "name", "team", "api", "permissions", "uses", "expires_at", "state")


def registration_tokens_list(args: argparse.Namespace) -> int:
    query: dict[str, Any] = {"per_page": 200}
    if args.team:
        query["team"] = _team_id(args.team)
    found = _call("GET", "/registration-tokens", query=query)["items"]
    if args.json:
        return _table(args, found, TOKEN_COLUMNS)
    return _table(args, [_token_row(token) for token in found], TOKEN_COLUMNS)


def registration_tokens_create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "api": args.api,
        "name": args.name,
        "max_registrations": args.max,
        "expires_in_days": args.days,
    }
    if args.key_days is not None:
        body["key_lifetime_days"] = args.key_days
    if args.permission:
        body["permissions"] = args.permission
    if args.allow_from:
        body["networks"] = args.allow_from
    if args.team:
        body["team"] = _team_id(args.team)
    made = _call("POST", "/registration-tokens", body=body)
    if args.json:
        print(json.dumps(made, indent=2))
        return 0
    if args.output == "env":
        print(f"REGISTRATION_TOKEN={made['token']}")
        print(f"REGISTRATION_ENDPOINT={made['registration_endpoint']}")
        return 0
    _print_pairs(
        _token_pairs(made["registration_token"])
        | {"registration_endpoint": made["registration_endpoint"], "token": made["token"]}
    )
    print(
        "\nThe token is shown this once: give it to the software that registers its keys "
        "(POST to the registration endpoint with `Authorization: Bearer <token>`).",
        file=sys.stderr,
    )
    return 0


def registration_tokens_show(args: argparse.Namespace) -> int:
    token = _call("GET", f"/registration-tokens/{_token_id(args.token)}")
    if args.json:
        return _show(args, token, None)
    _print_pairs(_token_pairs(token))
    if token["keys"]:
        print()
        _table(args, token["keys"], ("client_id", "name", "status", "created_at"))
    return 0


def registration_tokens_revoke(args: argparse.Namespace) -> int:
    token_id = _token_id(args.token)
    question = f"Revoke the registration token {args.token}? It registers nothing more."
    if not _confirmed(args, question):
        return 2
    token = _call("DELETE", f"/registration-tokens/{token_id}")
    if args.json:
        return _show(args, token, None)
    print(
        f"Revoked: “{_cell(token['name'])}” registers nothing more. The "
        f"{token['registrations']} keys it registered keep working; revoke them with "
        "`apikeys keys revoke` if they should stop too."
    )
    return 0


def _token_row(token: dict[str, Any]) -> dict[str, Any]:
    return token | {
        "team": token["team_name"] or "personal",
        "permissions": token["permissions"] or "-",
        "uses": f"{token['registrations']}/{token['max_registrations']}",
        "state": "active" if token["registers"] else token["refusal"],
    }


def _token_pairs(token: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": token["id"],
        "name": token["name"],
        "team": token["team_name"] or "personal",
        "api": token["api"],
        "permissions": ", ".join(token["permissions"]) or "none",
        "uses": f"{token['registrations']} of {token['max_registrations']}",
        "key_lifetime_days": token["key_lifetime_days"],
        "networks": ", ".join(token["networks"]) or "anywhere",
        "expires_at": token["expires_at"],
        "state": "active" if token["registers"] else token["refusal"],
    }


def _token_id(given: str) -> str:
    return _uuid(given, "a registration token id (see `apikeys registration-tokens list`)")


def secrets_check(args: argparse.Namespace) -> int:
    """Read a secret from standard input (never from the command line: shell history)."""
    if sys.stdin.isatty():
        import getpass

        secret = getpass.getpass("Secret (not shown): ")
    else:
        secret = sys.stdin.readline()
    answer = _call("POST", "/secrets/check", body={"secret": secret.strip()})
    if args.json:
        print(json.dumps(answer, indent=2))
    elif not answer["ours"]:
        whose = "" if answer["well_formed"] else " (it does not have the portal's format)"
        print(f"Not a secret of your keys{whose}.")
    else:
        key = answer["key"]
        state = "it can get tokens" if answer["works"] else "it no longer works"
        print(f"The {answer['which']} secret of {key['client_id']} ({key['name']}): {state}.")
    return 0


def keys_revoke(args: argparse.Namespace) -> int:
    key_id = _key_id(args.key)
    if not _confirmed(args, f"Revoke the key {args.key}? It stops working and cannot return."):
        return 2
    return _show(args, _call("POST", f"/keys/{key_id}/revoke"), ("name", "client_id", "status"))


def keys_finish(args: argparse.Namespace) -> int:
    return _secret(args, _call("POST", f"/keys/{_key_id(args.key)}/finish"))


def keys_discard(args: argparse.Namespace) -> int:
    key_id = _key_id(args.key)
    if not _confirmed(args, f"Discard the unfinished key {args.key}?"):
        return 2
    _call("POST", f"/keys/{key_id}/discard")
    print("Discarded.")
    return 0


ACTIVITY_COLUMNS = ("at", "action", "key_name", "client_id", "actor", "reason")


def activity(args: argparse.Namespace) -> int:
    found = _call("GET", "/activity", query={"per_page": args.limit})
    return _table(
        args, found["items"], ("at", "action", "key_name", "client_id", "actor", "reason")
    )


TEAM_COLUMNS = (
    "id",
    "name",
    "role",
    "key_quota",
    "live_keys",
    "ownerless_since",
    "requires_second_factor",
)


def teams_list(args: argparse.Namespace) -> int:
    return _table(args, _call("GET", "/teams"), ("id", "name", "role"))


def teams_create(args: argparse.Namespace) -> int:
    return _show(args, _call("POST", "/teams", body={"name": args.name}), TEAM_COLUMNS)


def teams_show(args: argparse.Namespace) -> int:
    return _show(args, _call("GET", f"/teams/{_team_id(args.team)}"), TEAM_COLUMNS)


def teams_set(args: argparse.Namespace) -> int:
    """An owner's: the team's name, and whether members need a second factor to change anything."""
    body = {"name": args.name, "requires_second_factor": args.require_second_factor}
    body = {name: value for name, value in body.items() if value is not None}
    if not body:
        raise Usage(
            "say what to change: --name, --require-second-factor or --no-require-second-factor"
        )
    return _show(args, _call("PATCH", f"/teams/{_team_id(args.team)}", body=body), TEAM_COLUMNS)


def teams_members(args: argparse.Namespace) -> int:
    found = _call("GET", f"/teams/{_team_id(args.team)}/members")
    return _table(args, found, ("user_id", "email", "name", "role", "joined_at"))


def teams_invite(args: argparse.Namespace) -> int:
    body = {"email": args.email, "role": args.role}
    sent = _call("POST", f"/teams/{_team_id(args.team)}/invitations", body=body)
    if args.json:
        return _show(args, sent, None)
    invitation = sent["invitation"]
    print(f"Invited {invitation['email']} as {invitation['role']} (id {invitation['id']}).")
    if sent["mailed"]:
        until = _cell(invitation["expires_at"])
        print(f"The link is in their mail only; it works once, until {until} UTC.")
    else:
        print("apikeys: the mail could not be sent: invite them again later.", file=sys.stderr)
    return 0 if sent["mailed"] else 6


def teams_invitations(args: argparse.Namespace) -> int:
    found = _call("GET", f"/teams/{_team_id(args.team)}/invitations")
    return _table(args, found, ("id", "email", "role", "state", "invited_by", "expires_at"))


def teams_revoke_invitation(args: argparse.Namespace) -> int:
    team, invitation = _team_id(args.team), _uuid(args.invitation, "an invitation id")
    found = _call("DELETE", f"/teams/{team}/invitations/{invitation}")
    return _show(args, found, ("id", "email", "role", "state"))


def teams_set_role(args: argparse.Namespace) -> int:
    path = f"/teams/{_team_id(args.team)}/members/{_user_id(args.user)}"
    return _show(args, _call("PATCH", path, body={"role": args.role}), ("email", "role"))


def teams_remove(args: argparse.Namespace) -> int:
    team, user = _team_id(args.team), _user_id(args.user)
    if not _confirmed(args, f"Remove the member {args.user} from the team {args.team}?"):
        return 2
    _call("DELETE", f"/teams/{team}/members/{user}")
    print("Removed. The keys they made stay the team's and keep working.")
    return 0


def teams_leave(args: argparse.Namespace) -> int:
    team = _team_id(args.team)
    if not _confirmed(args, f"Leave the team {args.team}? You no longer reach its keys."):
        return 2
    _call("DELETE", f"/teams/{team}/members/{_call('GET', '/me')['user_id']}")
    print("You left the team. The keys you made there stay the team's.")
    return 0


def teams_accept(args: argparse.Namespace) -> int:
    team = _call("POST", "/invitations/accept", body={"token": args.link})
    if args.json:
        return _show(args, team, None)
    print(f"You joined the team {team['name']} as {team['role']} (id {team['id']}).")
    return 0


def teams_activity(args: argparse.Namespace) -> int:
    found = _call("GET", f"/teams/{_team_id(args.team)}/activity", query={"per_page": args.limit})
    return _table(
        args, found["items"], ("at", "action", "key_name", "client_id", "actor", "reason")
    )


def admin_keys(args: argparse.Namespace) -> int:
    names = ("q", "api", "status", "unused_days", "team", "permission", "sort")
    query = {name: getattr(args, name) for name in names}
    query["per_page"] = args.limit
    found = _call("GET", "/admin/keys", query={k: v for k, v in query.items() if v})
    return _keys_table(args, found["items"], ("owner_email", *KEY_COLUMNS))


def admin_show(args: argparse.Namespace) -> int:
    key = _call("GET", f"/admin/keys/{_key_id(args.key)}")
    return _show(args, key if args.json else _readable(key), None)


def admin_decide(args: argparse.Namespace) -> int:
    if args.decision == "revoke" and not _confirmed(args, f"Revoke the key {args.key}?"):
        return 2
    body = None if args.decision == "approve" else {"reason": args.reason or ""}
    found = _call("POST", f"/admin/keys/{_key_id(args.key)}/{args.decision}", body=body)
    return _show(args, found, ("name", "client_id", "owner_email", "status", "status_reason"))


def admin_move(args: argparse.Namespace) -> int:
    """Give any key to another person or team; its client and secret stay."""
    if not (args.to_email or args.to_team):
        raise Usage("Say where to: --to-email, --to-team, or both.")
    body = {"reason": args.reason}
    if args.to_email:
        body["to_email"] = args.to_email
    if args.to_team:
        body["to_team"] = args.to_team  # its id or its name: the portal finds it
    key = _call("POST", f"/admin/keys/{_key_id(args.key)}/move", body=body)
    return _show(args, key, ("name", "client_id", "owner_email", "team_name", "status"))


REQUEST_COLUMNS = ("id", "client_id", "owner_email", "held", "permissions", "justification")


def admin_requests(args: argparse.Namespace) -> int:
    """Keys' requests for permissions that wait for a decision, oldest first."""
    return _table(args, _call("GET", "/admin/permission-requests"), REQUEST_COLUMNS)


def admin_decide_permissions(args: argparse.Namespace) -> int:
    request_id = _request_id(args.request)
    body = {"reason": args.reason} if args.decision == "refuse" else None
    found = _call("POST", f"/admin/permission-requests/{request_id}/{args.decision}", body=body)
    if args.json:
        return _show(args, found, None)
    asked = ", ".join(found["permissions"])
    if args.decision == "approve":
        print(f"{found['client_id']} has {asked} from its next token on; its owner is told.")
    else:
        print(f"{asked} refused for {found['client_id']}; its owner is told why.")
    return 0


ISSUER_COLUMNS = ("slug", "name", "issuer", "subject_hint", "allows_reuse")


def workload_issuers_list(args: argparse.Namespace) -> int:
    """The issuers of workload identity tokens the portal trusts."""
    return _table(args, _call("GET", "/workload-issuers"), ISSUER_COLUMNS)


def admin_issuers_list(args: argparse.Namespace) -> int:
    found = _call("GET", "/admin/workload-issuers")
    return _table(args, found, ("slug", "name", "issuer", "jwks_url", "allows_reuse", "live_keys"))


def admin_issuers_add(args: argparse.Namespace) -> int:
    body = {
        "slug": args.slug,
        "name": args.name,
        "issuer": args.issuer,
        "jwks_url": args.jwks_url,
        "allows_reuse": args.allow_reuse,
        "max_token_age": args.max_token_age,
        "keys_need_approval": not args.no_approval,
        "subject_hint": args.subject_hint,
    }
    issuer = _call("POST", "/admin/workload-issuers", body=body)
    if args.json:
        return _show(args, issuer, None)
    print(
        f"{issuer['name']} is trusted: keys name it as {issuer['slug']} "
        f"(`apikeys keys create ... --workload-issuer {issuer['slug']}`)."
    )
    return 0


def admin_issuers_remove(args: argparse.Namespace) -> int:
    question = f"Stop trusting the workload issuer {args.slug}?"
    if not _confirmed(args, question):
        return 2
    _call("DELETE", f"/admin/workload-issuers/{_path_part(args.slug)}")
    print(f"{args.slug} is no longer trusted.")
    return 0


def admin_audit(args: argparse.Namespace) -> int:
    query = {name: getattr(args, name) for name in ("actor", "action", "key", "since", "until")}
    query["per_page"] = args.limit
    found = _call("GET", "/admin/audit", query={k: v for k, v in query.items() if v})
    columns = ("at", "actor", "action", "key_name", "client_id", "ip_address", "via", "reason")
    return _table(args, found["items"], columns)


# The parser: the top level, then one function per command group, in the order `--help` lists


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apikeys",
        description="The API key portal from a terminal. Start with `apikeys login`.",
        epilog="Exit codes: 0 done, 2 usage, 3 not signed in, 4 not found, 5 refused, "
        "6 the portal or Keycloak unavailable, 1 anything else (an output cut short too).",
    )
    parser.add_argument(
        "--portal",
        help=f"the portal's address (default: $APIKEYS_PORTAL, the last login's, {DEFAULT_PORTAL})",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_account_commands(commands)
    _add_keys_commands(commands)
    _add_public_keys_commands(commands)
    _add_webhooks_commands(commands)
    _add_registration_tokens_commands(commands)
    _add_teams_commands(commands)
    _add_secrets_commands(commands)
    _add_workload_issuers_commands(commands)
    _add_admin_commands(commands)
    return parser


def _add_account_commands(commands: Any) -> None:
    """Signing in and out, and what needs no group: who you are, the APIs, your activity."""
    sub = _command(commands, "login", login, "sign in through Keycloak in your browser", out=False)
    sub.add_argument("--no-browser", action="store_true", help="print the address only")
    sub.add_argument("--device", action="store_true", help="sign in with a code on another device")
    _command(commands, "logout", logout, "revoke this device's sign-in and forget it", out=False)
    _command(commands, "me", me, "who you are signed in as")
    _command(commands, "token", token, "print a current access token for the API", out=False)
    _command(commands, "apis", apis, "the APIs you can make keys for")
    _command(commands, "activity", activity, "what happened to your keys").add_argument(
        "--limit", type=int, default=50
    )


def _add_keys_commands(commands: Any) -> None:
    keys = _group(commands, "keys", "your API keys")
    sub = _command(keys, "list", keys_list, "your live keys (personal, or a team's)")
    sub.add_argument("--all", action="store_true", help="ended keys too")
    _team_option(sub, "the team's keys instead of your personal ones")
    _add_keys_create(keys)
    _key_command(keys, "show", keys_show, "one key")
    text = "a new secret (shown once); the old one stops, or after --grace"
    sub = _key_command(keys, "rotate", keys_rotate, text)
    sub.add_argument("--output", choices=["table", "env"], default="table")
    sub.add_argument(
        "--grace",
        default="0",
        help="keep the old secret working this long too: 30m, 12h, 7d (default 0)",
    )
    sub.add_argument("--idempotency-key", help="the same key on a retry rotates nothing more")
    text = "stop the previous secret now, before its grace ends"
    _key_command(keys, "end-grace", keys_end_grace, text)
    sub = _key_command(keys, "rename", keys_rename, "give a key another name or description")
    sub.add_argument("--name", help="1 to 64 printable characters")
    sub.add_argument("--description", help="up to 500 characters ('' to clear)")
    text = "a key's daily tokens and failed attempts, last 30 days"
    _key_command(keys, "usage", keys_usage, text)
    _key_command(keys, "reinstate", keys_reinstate, "reinstate a key suspended for being unused")
    sub = _key_command(keys, "revoke", keys_revoke, "revoke a key: it stops working")
    sub.add_argument("--yes", action="store_true", help="do not ask")
    text = "finish setting up an unfinished key (its secret, once)"
    sub = _key_command(keys, "finish", keys_finish, text)
    sub.add_argument("--output", choices=["table", "env"], default="table")
    sub = _key_command(keys, "discard", keys_discard, "discard an unfinished key")
    sub.add_argument("--yes", action="store_true", help="do not ask")
    sub = _key_command(keys, "move", keys_move, "move a personal key into a team (same secret)")
    sub.add_argument("--team", required=True, help="the team's id or name (you a developer there)")
    text = "limit where a key's tokens may be requested from (Keycloak enforces it)"
    sub = _key_command(keys, "networks", keys_networks, text)
    _allow_from(sub)
    sub.add_argument("--anywhere", action="store_true", help="no limit")
    text = "require DPoP-bound tokens of a key (RFC 9449), or stop requiring them"
    sub = _key_command(keys, "dpop", keys_dpop, text)
    turned = sub.add_mutually_exclusive_group(required=True)
    turned.add_argument("--on", action="store_true", help="tokens only with a DPoP proof")
    turned.add_argument("--off", action="store_true", help="plain bearer tokens again")
    text = "what a key may do at its API, and its request waiting; --set changes it"
    sub = _key_command(keys, "permissions", keys_permissions, text)
    changes = sub.add_mutually_exclusive_group()
    changes.add_argument(
        "--set",
        nargs="*",
        metavar="NAME",
        help="every permission it should have (none given: none); fewer take effect at "
        "once, more too unless they need approval (then they are requested)",
    )
    changes.add_argument("--withdraw", action="store_true", help="withdraw the request that waits")
    sub.add_argument("--justification", default="", help="why it needs more (for approval)")


def _allow_from(sub: Any) -> None:
    sub.add_argument(
        "--allow-from",
        action="append",
        default=[],
        metavar="RANGE",
        help="an IPv4/IPv6 CIDR range or address its tokens may be requested from "
        "(repeatable; Keycloak refuses every other address)",
    )


def _add_keys_create(keys: Any) -> None:
    sub = _command(keys, "create", keys_create, "make a key; its secret is shown once")
    sub.add_argument("name")
    sub.add_argument("--api", required=True, help="the API's slug (see `apikeys apis`)")
    sub.add_argument("--days", type=int, help="how long it stays valid (default 90)")
    sub.add_argument("--description", default="")
    sub.add_argument("--justification", default="", help="for APIs that need approval")
    sub.add_argument("--idempotency-key", help="the same key on a retry makes no second key")
    _team_option(sub, "the team that will hold the key (default: a personal key)")
    _allow_from(sub)
    given = sub.add_mutually_exclusive_group()
    given.add_argument(
        "--permission",
        action="append",
        default=[],
        metavar="NAME",
        help="a permission of the API it gets (repeatable; none given: the API's defaults, "
        "see `apikeys apis`)",
    )
    given.add_argument("--no-permissions", action="store_true", help="no permission at all")
    sub.add_argument("--output", choices=["table", "env"], default="table")
    signed = sub.add_mutually_exclusive_group()
    signed.add_argument(
        "--public-key",
        metavar="FILE",
        help="sign in with a private key (private_key_jwt): its public key, PEM, JWK or "
        "JWKS, from FILE (- for standard input). Never the private key.",
    )
    signed.add_argument("--jwks-url", help="private_key_jwt, with your JWKS at this URL")
    signed.add_argument(
        "--workload-issuer",
        metavar="SLUG",
        help="a workload identity key: no secret, the workload sends a token of this trusted "
        "issuer (see `apikeys workload-issuers list`); with --workload-subject",
    )
    sub.add_argument(
        "--workload-subject",
        metavar="SUBJECT",
        help="the sub of the workload's tokens, e.g. system:serviceaccount:billing:invoicer",
    )
    sub.add_argument(
        "--dpop",
        action="store_true",
        help="bind its tokens to a key the application holds (DPoP, RFC 9449)",
    )


def _add_public_keys_commands(commands: Any) -> None:
    public = _group(commands, "public-keys", "the public keys of a private_key_jwt key")
    _command(public, "list", public_keys_list, "a key's public keys").add_argument("key")
    sub = _command(public, "add", public_keys_add, "add a public key (PEM, JWK or JWKS)")
    sub.add_argument("key")
    sub.add_argument("file", help="the public key's file, or - for standard input")
    sub = _command(public, "remove", public_keys_remove, "remove a public key: it stops working")
    sub.add_argument("key")
    sub.add_argument("kid", help="the kid of the key to remove")
    sub = _command(public, "refresh", public_keys_refresh, "make Keycloak read the keys again")
    sub.add_argument("key")


def _add_webhooks_commands(commands: Any) -> None:
    hooks = _group(commands, "webhooks", "endpoints that hear about your keys")
    _team_option(_command(hooks, "list", webhooks_list, "your endpoints"), "the team's endpoints")
    sub = _command(hooks, "create", webhooks_create, "add an endpoint; its secret is shown once")
    sub.add_argument("url")
    _team_option(sub, "an endpoint of the team, hearing about its keys")
    sub.add_argument("--description", default="")
    sub.add_argument("--event", action="append", help="an event it wants (repeat; default all)")
    _command(hooks, "show", webhooks_show, "one endpoint").add_argument("endpoint")
    sub = _command(hooks, "update", webhooks_update, "change, pause or resume an endpoint")
    sub.add_argument("endpoint")
    sub.add_argument("--url")
    sub.add_argument("--description")
    sub.add_argument("--event", action="append", help="the events it wants (repeat)")
    paused = sub.add_mutually_exclusive_group()
    paused.add_argument("--pause", action="store_true")
    paused.add_argument("--resume", action="store_true")
    sub = _command(hooks, "delete", webhooks_delete, "delete an endpoint and its log")
    sub.add_argument("endpoint")
    sub.add_argument("--yes", action="store_true", help="do not ask")
    sub = _command(hooks, "rotate-secret", webhooks_rotate, "a new signing secret (once)")
    sub.add_argument("endpoint")
    sub.add_argument("--overlap", default="0", help="the old one signs too this long: 24h")
    _command(hooks, "test", webhooks_test, "send a test event").add_argument("endpoint")
    sub = _command(hooks, "log", webhooks_log, "the delivery log")
    sub.add_argument("endpoint")
    sub.add_argument("--limit", type=int, default=25)
    sub = _command(hooks, "resend", webhooks_resend, "deliver a message again (same id)")
    sub.add_argument("endpoint")
    sub.add_argument("message", help="the message id (msg_...)")


def _add_registration_tokens_commands(commands: Any) -> None:
    text = "tokens with which software registers its own keys (RFC 7591)"
    tokens = _group(commands, "registration-tokens", text)
    sub = _command(tokens, "list", registration_tokens_list, "your registration tokens")
    _team_option(sub, "the team's tokens instead of your personal ones")
    text = "make a registration token; the token is shown once"
    sub = _command(tokens, "create", registration_tokens_create, text)
    sub.add_argument("--api", required=True, help="the API's slug (see `apikeys apis`)")
    sub.add_argument("--name", required=True, help="to tell your tokens apart")
    sub.add_argument("--max", type=int, required=True, help="how many keys it may register")
    sub.add_argument("--days", type=int, required=True, help="how long it registers keys")
    sub.add_argument(
        "--key-days", type=int, help="how long each key it registers is valid (default 90)"
    )
    sub.add_argument(
        "--permission",
        action="append",
        default=[],
        metavar="NAME",
        help="a permission of the API its keys get (repeatable; none given: the API's "
        "defaults, see `apikeys apis`)",
    )
    sub.add_argument(
        "--allow-from",
        action="append",
        default=[],
        metavar="RANGE",
        help="an IPv4/IPv6 CIDR range or address software may register from (repeatable; "
        "default anywhere)",
    )
    _team_option(sub, "the team whose keys it registers (default: your personal keys)")
    sub.add_argument("--output", choices=["table", "env"], default="table")
    text = "one registration token, with the keys it registered"
    _command(tokens, "show", registration_tokens_show, text).add_argument("token")
    text = "revoke a registration token: it registers nothing more"
    sub = _command(tokens, "revoke", registration_tokens_revoke, text)
    sub.add_argument("token", help="its id (see `apikeys registration-tokens list`)")
    sub.add_argument("--yes", action="store_true", help="do not ask")


def _add_teams_commands(commands: Any) -> None:
    teams = _group(commands, "teams", "teams: keys and webhooks shared with colleagues")
    _command(teams, "list", teams_list, "the teams you are in, with your role")
    _command(teams, "create", teams_create, "make a team (you its owner)").add_argument("name")
    _team_command(teams, "show", teams_show, "one team: your role, its quota and keys")
    sub = _team_command(teams, "set", teams_set, "change a team's settings (owners)")
    sub.add_argument("--name", help="its new name")
    sub.add_argument(
        "--require-second-factor",
        action=argparse.BooleanOptionalAction,
        help="members without a one-time password or passkey in Keycloak may read but change "
        "nothing (you need one yourself to turn it on)",
    )
    _team_command(teams, "members", teams_members, "a team's members and their roles")
    sub = _team_command(teams, "invite", teams_invite, "invite someone by email (owners)")
    sub.add_argument("email")
    sub.add_argument("--role", choices=ROLES, default="developer")
    _team_command(teams, "invitations", teams_invitations, "a team's invitations (owners)")
    text = "revoke a pending invitation (owners)"
    _team_command(teams, "revoke-invitation", teams_revoke_invitation, text).add_argument(
        "invitation", help="its id (see `apikeys teams invitations`)"
    )
    sub = _team_command(teams, "set-role", teams_set_role, "give a member another role (owners)")
    sub.add_argument("user", help="the member's user id (see `apikeys teams members`)")
    sub.add_argument("role", choices=ROLES)
    sub = _team_command(teams, "remove", teams_remove, "take a member out of a team (owners)")
    sub.add_argument("user", help="the member's user id (see `apikeys teams members`)")
    sub.add_argument("--yes", action="store_true", help="do not ask")
    sub = _team_command(teams, "leave", teams_leave, "leave a team (its last owner cannot)")
    sub.add_argument("--yes", action="store_true", help="do not ask")
    sub = _command(teams, "accept", teams_accept, "accept an invitation, signed in as its email")
    sub.add_argument("link", help="the link from the invitation's mail, or the token in it")
    sub = _team_command(teams, "activity", teams_activity, "what happened in a team")
    sub.add_argument("--limit", type=int, default=50)


def _add_secrets_commands(commands: Any) -> None:
    secrets = _group(commands, "secrets", "secrets found somewhere")
    text = "is this secret (read from standard input) one of your keys', and does it work?"
    _command(secrets, "check", secrets_check, text)


def _add_admin_commands(commands: Any) -> None:
    admin = _group(commands, "admin", "for portal administrators")
    sub = _command(admin, "keys", admin_keys, "every key, filtered")
    for name in ("q", "api", "status", "unused-days", "sort"):
        sub.add_argument(f"--{name}")
    sub.add_argument("--team", help="a team's id: its keys only")
    sub.add_argument("--permission", help="a permission's name: the keys that hold it")
    sub.add_argument("--limit", type=int, default=50)
    _command(admin, "show", admin_show, "any key").add_argument("key")
    _command(admin, "requests", admin_requests, "keys' requests for permissions, waiting")
    for decision, text in (
        ("approve", "give a key the permissions it asked for"),
        ("refuse", "refuse a key's request for permissions, with a reason"),
    ):
        sub = _command(admin, f"{decision}-permissions", admin_decide_permissions, text)
        sub.set_defaults(decision=decision)
        sub.add_argument("request", help="the request's id (see `apikeys admin requests`)")
        if decision == "refuse":
            sub.add_argument("--reason", required=True, help="the key's owner reads it")
    for decision, text in (
        ("approve", "approve a pending key"),
        ("reject", "reject a pending key, with a reason"),
        ("suspend", "suspend a key, with a reason"),
        ("reinstate", "reinstate a suspended key"),
        ("revoke", "revoke any key, with a reason"),
    ):
        sub = _command(admin, decision, admin_decide, text)
        sub.set_defaults(decision=decision)
        sub.add_argument("key")
        if decision != "approve":
            sub.add_argument(
                "--reason", required=decision != "reinstate", help="the owner reads it"
            )
        if decision == "revoke":
            sub.add_argument("--yes", action="store_true", help="do not ask")
    text = "give any key to another person or team (same client, same secret), with a reason"
    sub = _command(admin, "move", admin_move, text)
    sub.add_argument("key")
    sub.add_argument("--to-email", help="the person: their personal key (with a team: its maker)")
    sub.add_argument("--to-team", help="the team, by its name or id")
    sub.add_argument("--reason", required=True, help="the old and new holders read it")
    sub = _command(admin, "audit", admin_audit, "the audit trail")
    for name in ("actor", "action", "key", "since", "until"):
        sub.add_argument(f"--{name}")
    sub.add_argument("--limit", type=int, default=50)
    sub = _command(admin, "apis", apis, "the whole catalog")
    sub.set_defaults(all=True)
    _add_admin_issuers_commands(admin)


def _add_workload_issuers_commands(commands: Any) -> None:
    text = "the issuers of workload identity tokens the portal trusts"
    issuers = _group(commands, "workload-issuers", text)
    _command(issuers, "list", workload_issuers_list, "the trusted issuers, by slug")


def _add_admin_issuers_commands(admin: Any) -> None:
    text = "trust, or stop trusting, issuers of workload identity tokens"
    issuers = _group(admin, "workload-issuers", text)
    _command(issuers, "list", admin_issuers_list, "the trusted issuers, their keys counted")
    text = "trust an issuer (a Kubernetes cluster's, a CI system's): workload keys may name it"
    sub = _command(issuers, "add", admin_issuers_add, text)
    sub.add_argument("slug", help="its short name: lowercase letters, digits and hyphens")
    sub.add_argument("--name", required=True, help="a name people will recognise")
    sub.add_argument("--issuer", required=True, help="the iss of its tokens, exactly")
    sub.add_argument("--jwks-url", required=True, help="where its public keys are (JWKS)")
    sub.add_argument(
        "--allow-reuse",
        action="store_true",
        help="accept one token again while young enough (default: each token once)",
    )
    sub.add_argument(
        "--max-token-age",
        type=int,
        default=300,
        help="seconds after its iat Keycloak takes a token (300; 3600 for Kubernetes)",
    )
    sub.add_argument(
        "--no-approval",
        action="store_true",
        help="keys bound to it work without an administrator's approval (default: approval)",
    )
    sub.add_argument(
        "--subject-hint",
        default="",
        help="what its subjects look like, e.g. system:serviceaccount:<namespace>:<name>",
    )
    text = "stop trusting an issuer (refused while live keys are bound to it)"
    sub = _command(issuers, "remove", admin_issuers_remove, text, out=False)
    sub.add_argument("slug")
    sub.add_argument("--yes", action="store_true", help="do not ask")


def _command(
    group: Any,
    name: str,
    run: Callable[[argparse.Namespace], int],
    text: str,
    *,
    out: bool = True,
) -> argparse.ArgumentParser:
    """A command running `run`; with `out`, it also takes --json."""
    sub: argparse.ArgumentParser = group.add_parser(name, help=text, description=text)
    sub.set_defaults(run=run)
    if out:
        sub.add_argument("--json", action="store_true", help="JSON for scripts")
    return sub


def _key_command(
    keys: Any, name: str, run: Callable[[argparse.Namespace], int], text: str
) -> argparse.ArgumentParser:
    """A command about one of your keys, named by its first argument."""
    sub = _command(keys, name, run, text)
    sub.add_argument("key", help="the key's client id (apikey-...) or id")
    return sub


def _team_command(
    teams: Any, name: str, run: Callable[[argparse.Namespace], int], text: str
) -> argparse.ArgumentParser:
    """A command about one of your teams, named by its first argument."""
    sub = _command(teams, name, run, text)
    sub.add_argument("team", help="the team's id or name (see `apikeys teams list`)")
    return sub


def _team_option(sub: argparse.ArgumentParser, text: str) -> None:
    sub.add_argument("--team", help=f"{text}: its id or name (see `apikeys teams list`)")


# Helpers


def _group(commands: Any, name: str, text: str) -> Any:
    """A command with commands of its own; alone, it shows its help."""
    parser: argparse.ArgumentParser = commands.add_parser(name, help=text, description=text)

    def show_help(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(run=show_help)
    return parser.add_subparsers(title=f"{name} commands", metavar="COMMAND")


def _portal(args: argparse.Namespace) -> str:
    chosen = args.portal or os.environ.get("APIKEYS_PORTAL")
    if not chosen:
        try:
            chosen = signin.load()["portal"]
        except NotSignedIn:
            chosen = DEFAULT_PORTAL
    return require_safe_url(str(chosen).rstrip("/"))


def _call(
    method: str,
    path: str,
    *,
    body: Any = None,
    query: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """One API request; if the portal asks for a second factor (RFC 9470), sign in again in
    the browser asking for it, and send the request once more."""
    try:
        return _send(method, path, body=body, query=query, headers=headers)
    except StepUpNeeded as needed:
        if not (sys.stdin.isatty() or os.environ.get("BROWSER")):
            raise StepUpNeeded(  # a script: nobody would answer the browser for 5 minutes
                f"{needed} Sign in again in a terminal with a browser: apikeys login."
            ) from None
        print(f"{needed} Signing in again for it.", file=sys.stderr, flush=True)
        wanted = {"acr_values": needed.acr_values, "max_age": needed.max_age}
        signin.login(signin.load()["portal"], open_browser=True, step_up=wanted)
    return _send(method, path, body=body, query=query, headers=headers)


def _send(
    method: str,
    path: str,
    *,
    body: Any = None,
    query: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    data = signin.load()
    url = f"{data['portal']}/api/v1{path}"
    if query:
        from urllib.parse import urlencode

        url += "?" + urlencode(query)
    return request(
        method,
        url,
        token=signin.access_token(data),
        json_body=body if body is not None else ({} if method == "POST" else None),
        headers=headers,
    )


def _read(path: str) -> str:
    """A public key's file (- for standard input); a private key is never sent anywhere."""
    if path == "-":
        text = sys.stdin.read()
    else:
        try:
            with open(path, encoding="utf-8") as file:
                text = file.read()
        except (OSError, UnicodeDecodeError) as error:
            raise Usage(f"cannot read {path}: {error}") from None
    if "PRIVATE KEY" in text.upper() or "PuTTY-User-Key-File" in text or '"d"' in text:
        raise Usage(
            f"{path} holds a private key. Give the public key only (e.g. `openssl pkey -in "
            "key.pem -pubout`); it was not sent anywhere."
        )
    return text


def _seconds(text: str) -> int:
    """A duration: 0, 90 (seconds), 30s, 15m, 12h or 7d."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    try:
        if text and text[-1] in units:
            return int(text[:-1]) * units[text[-1]]
        return int(text)
    except ValueError:
        raise Usage(f"{text!r} is not a duration: say 0, 30m, 12h or 7d") from None


def _key_id(given: str) -> str:
    """A key's id from its client id (apikey-<hex>) or the id itself."""
    text = given.removeprefix("apikey-")
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise Usage(f"{given!r} is neither a client id (apikey-...) nor a key id") from None


def _team_id(given: str) -> str:
    """A team's id, from the id itself or the name of a team you are in."""
    try:
        return str(uuid.UUID(given))
    except ValueError:
        pass
    named = [t for t in _call("GET", "/teams") if t["name"].casefold() == given.casefold()]
    if not named:
        raise NotFound(f"You are in no team called {given!r} (see `apikeys teams list`).")
    if len(named) > 1:
        raise Usage(f"You are in {len(named)} teams called {given!r}: give the team's id.")
    return str(named[0]["id"])


def _path_part(given: str) -> str:
    from urllib.parse import quote

    return quote(given, safe="")


def _request_id(given: str) -> int:
    try:
        return int(given)
    except ValueError:
        raise Usage(f"{given!r} is not a request id (see `apikeys admin requests`)") from None


def _field_errors(failure: Failure) -> dict[str, list[str]]:
    """A refusal's errors by field, as the portal's problem document names them."""
    errors = failure.body.get("errors") if isinstance(failure.body, dict) else None
    if not isinstance(errors, dict):
        return {}
    return {str(field): [str(m) for m in messages] for field, messages in errors.items()}


def _user_id(given: str) -> int:
    try:
        return int(given)
    except ValueError:
        raise Usage(f"{given!r} is not a user id (see `apikeys teams members`)") from None


def _confirmed(args: argparse.Namespace, question: str) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        print(f"apikeys: {question} Add --yes to do it without asking.", file=sys.stderr)
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _secret(args: argparse.Namespace, credentials: dict[str, Any]) -> int:
    key = credentials["key"]
    secret = credentials["client_secret"]
    if args.json:
        print(json.dumps(credentials, indent=2))
    elif args.output == "env":
        print(f"CLIENT_ID={credentials['client_id']}")
        if secret:
            print(f"CLIENT_SECRET={secret}")
        else:
            print(f"ASSERTION_AUDIENCE={credentials['assertion_audience']}")
            print(f"CLIENT_ASSERTION_TYPE={credentials['client_assertion_type']}")
        print(f"TOKEN_ENDPOINT={credentials['token_endpoint']}")
        if workload := credentials.get("workload"):
            print(f"WORKLOAD_ISSUER={workload['issuer']}")
            print(f"WORKLOAD_SUBJECT={workload['subject']}")
    else:
        shown = {
            "name": key["name"],
            "team": key.get("team_name") or "personal",
            "api": key["api"],
            "status": key["status"],
            "client_id": credentials["client_id"],
            "client_secret": secret,
            "token_endpoint": credentials["token_endpoint"],
            "expires_at": key["expires_at"],
            "networks": ", ".join(key.get("networks") or []) or "anywhere",
            "permissions": ", ".join(key.get("permissions") or []) or "none",
        }
        if not secret:
            del shown["client_secret"]
            shown["assertion_audience"] = credentials["assertion_audience"]
        if credentials.get("workload"):
            shown["workload"] = _workload_text(key)
        elif not secret:
            shown["public_keys"] = (
                ", ".join(k["kid"] for k in key["public_keys"]) or key["jwks_url"]
            )
        if key.get("dpop"):
            shown["dpop"] = "required (RFC 9449): each token request carries a DPoP proof"
        if key.get("previous_secret_until"):
            shown["old_secret_until"] = key["previous_secret_until"]
        _print_pairs(shown)
        if credentials.get("workload"):
            print(_workload_instructions(credentials))
        if secret:
            print("\nThe secret is shown this once: keep it somewhere safe now.", file=sys.stderr)
    return 0


def _workload_instructions(credentials: dict[str, Any]) -> str:
    """How a workload identity key's workload gets tokens: with its platform's, no secret."""
    setup = {name: _printable(value) for name, value in credentials["workload"].items()}
    once = (
        "A platform token may be sent again until it expires."
        if credentials["workload"]["reuse"]
        else "Each platform token is accepted once: send a new one with each request."
    )
    proof = '    -H "DPoP: <a proof for this request>" \\\n' if credentials["key"]["dpop"] else ""
    return (
        "\nThis key has no secret. Have the workload's platform issue it a token with\n"
        f"  iss {setup['issuer']}\n  sub {setup['subject']}\n  aud {setup['audience']}\n"
        "(a Kubernetes projected service-account token's audience, a CI job's OIDC audience),\n"
        "and ask for access tokens with it:\n\n"
        f"  curl -X POST {_printable(credentials['token_endpoint'])} \\\n"
        f"{proof}"
        f"    -d grant_type={setup['grant_type']} \\\n"
        f"    -d client_assertion_type={setup['client_assertion_type']} \\\n"
        '    -d client_assertion="$(cat /path/to/the/platform/token)"\n\n'
        f"{once}"
    )


def _workload_text(key: dict[str, Any]) -> str | None:
    """A key's workload binding as a person reads it: its issuer's slug and the subject."""
    workload = key.get("workload")
    return f"{workload['subject']} (issuer {workload['issuer']})" if workload else None


def _readable(key: dict[str, Any]) -> dict[str, Any]:
    """A key as a person reads it: the binding to a workload as one line."""
    return key | {"workload": _workload_text(key)} if "workload" in key else key


def _keys_table(
    args: argparse.Namespace, keys: list[dict[str, Any]], columns: Sequence[str]
) -> int:
    """Keys, each in its space: the team's name, or "personal" (JSON: as the API has them)."""
    if args.json:
        return _table(args, keys, columns)
    rows = [_readable(k) | {"team": k.get("team_name") or "personal"} for k in keys]
    return _table(args, rows, columns)


def _show(args: argparse.Namespace, item: dict[str, Any], fields: Sequence[str] | None) -> int:
    if args.json:
        print(json.dumps(item, indent=2))
    else:
        _print_pairs({k: item[k] for k in fields} if fields else item)
    return 0


def _table(args: argparse.Namespace, rows: list[dict[str, Any]], columns: Sequence[str]) -> int:
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("Nothing.")
        return 0
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _print_pairs(item: dict[str, Any]) -> None:
    width = max(len(k) for k in item)
    for name, value in item.items():
        print(f"{name.ljust(width)}  {_cell(value)}")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return ", ".join(value) or "-"
    text = _printable(value)
    # A timestamp (2026-12-06T10:15:02.123+00:00) is shown to the second, in UTC as sent.
    return text[:19].replace("T", " ") if _TIMESTAMP.match(text) else text


_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")


def _printable(value: Any) -> str:
    """What people typed (a justification, a name) never drives the terminal: control
    characters, escape sequences included, are shown as spaces."""
    return "".join(c if c.isprintable() else " " for c in str(value))


if __name__ == "__main__":
    sys.exit(main())
