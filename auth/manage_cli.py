"""``moorage user|team|namespace ...`` on the configured database, directly (no server needed: this is how
the first admin is made).  The same service as the REST API (auth/manage.py), as the operator, who holds
every right; a refusal prints its reason and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auth import htpasswd
from auth.terms import OPERATOR, Refused
from storage.database import DatabaseUnavailable

if TYPE_CHECKING:
    from auth.manage import Management

# The registry's CLI builds the service for a config (auth does not import the registry); it raises
# SystemExit with a message when the config has no database.
ManagementFactory = Callable[[Any], "Management"]
ROLE_HELP = "reader (pull), developer (+push), maintainer (+delete, retention, tag rules), owner (+members)"


def run(args: argparse.Namespace, work: Callable[[Management], Awaitable[int | None]]) -> int:
    """``work`` against the config's database as the operator; refusals and outages as one line."""
    management = args.management(args.load_config(args.config))

    async def main() -> int | None:
        try:
            return await work(management)
        finally:
            await management.db.close()

    try:
        return int(asyncio.run(main()) or 0)
    except Refused as e:
        print(f"moorage {args.command}: {e.message}", file=sys.stderr)
        return 1
    except DatabaseUnavailable as e:
        print(f"moorage {args.command}: {e} ({management.db.describe()})", file=sys.stderr)
        return 1


def add_commands(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """``team`` and ``namespace``; ``common`` adds -c/--config and the factories to each."""
    team = sub.add_parser("team", help="manage teams (database)")
    teams = team.add_subparsers(dest="team_command", required=True)
    for name, func, text in (("add", team_add, "create a team"), ("remove", team_remove, "remove a team"),
                             ("show", team_show, "a team and its members"), ("list", team_list, "list teams")):
        p = teams.add_parser(name, help=text)
        if name != "list":
            p.add_argument("team")
        common(p)
        p.set_defaults(run=func)
    member = teams.add_parser("member", help="add or remove a team's members")
    members = member.add_subparsers(dest="member_command", required=True)
    for name, func in (("add", team_member_add), ("remove", team_member_remove)):
        p = members.add_parser(name, help=f"{name} a member")
        p.add_argument("team")
        p.add_argument("user")
        common(p)
        p.set_defaults(run=func)

    namespace = sub.add_parser("namespace", help="manage namespaces, their members and settings (database)")
    spaces = namespace.add_subparsers(dest="namespace_command", required=True)
    p = spaces.add_parser("add", help="create a namespace (a repository path prefix)")
    p.add_argument("namespace")
    p.add_argument("--public", action="store_true", help="anyone may pull (default: members only)")
    common(p)
    p.set_defaults(run=namespace_add)
    for name, func, text in (("remove", namespace_remove, "remove a namespace (its images stay)"),
                             ("show", namespace_show, "a namespace, its settings and members"),
                             ("list", namespace_list, "list namespaces")):
        p = spaces.add_parser(name, help=text)
        if name != "list":
            p.add_argument("namespace")
        common(p)
        p.set_defaults(run=func)
    for name, func, text in (("grant", namespace_grant, "give a user or team a role (or change theirs)"),
                             ("revoke", namespace_revoke, "take a user's or team's role away")):
        p = spaces.add_parser(name, help=text)
        p.add_argument("namespace")
        who = p.add_mutually_exclusive_group(required=True)
        who.add_argument("--user")
        who.add_argument("--team")
        if name == "grant":
            p.add_argument("role", help=ROLE_HELP)
        common(p)
        p.set_defaults(run=func)


# --- users on the database (auth/cli.py decides between the database and an htpasswd file) -----------------


def user_add(args: argparse.Namespace, password: str) -> int:
    async def work(m: Management) -> None:
        await m.create_user(OPERATOR, args.name, password, email=args.email, admin=args.admin)
        print(f"added {args.name}{' (admin)' if args.admin else ''} to {m.db.describe()}")

    return run(args, work)


def user_passwd(args: argparse.Namespace, password: str) -> int:
    async def work(m: Management) -> None:
        await m.update_user(OPERATOR, args.name, password=password)
        print(f"password of {args.name} changed (their sessions end)")

    return run(args, work)


def user_remove(args: argparse.Namespace) -> int:
    async def work(m: Management) -> None:
        await m.remove_user(OPERATOR, args.name)
        print(f"removed {args.name}")

    return run(args, work)


def user_disable(args: argparse.Namespace) -> int:
    disabled = args.user_command == "disable"

    async def work(m: Management) -> None:
        await m.update_user(OPERATOR, args.name, disabled=disabled)
        print(f"{'disabled' if disabled else 'enabled'} {args.name}")

    return run(args, work)


def user_list(args: argparse.Namespace) -> int:
    async def work(m: Management) -> None:
        after = None
        while page := await m.list_users(OPERATOR, after, 1000):
            for user in page:
                flags = [f for f, on in (("admin", user.admin), ("disabled", user.disabled)) if on]
                print(user.name + (f" ({', '.join(flags)})" if flags else ""))
            after = page[-1].name

    return run(args, work)


def user_show(args: argparse.Namespace) -> int:
    async def work(m: Management) -> None:
        user, teams = await m.get_user(OPERATOR, args.name)
        print(f"name: {user.name}\nemail: {user.email or '-'}\nadmin: {str(user.admin).lower()}\n"
              f"disabled: {str(user.disabled).lower()}\ncreated: {user.created.isoformat()}\n"
              f"last login: {user.last_login.isoformat() if user.last_login else 'never'}\n"
              f"teams: {', '.join(teams) or '-'}")

    return run(args, work)


def user_import(args: argparse.Namespace) -> int:
    """The users of an htpasswd file, with their bcrypt hashes: the same passwords keep working."""
    path: Path = args.htpasswd
    if not path.exists():
        print(f"moorage user import: no file {path}", file=sys.stderr)
        return 1
    entries = {name: hashed for name, hashed in htpasswd.parse(path.read_text(errors="replace")).items()}

    async def work(m: Management) -> int:
        imported, skipped = await m.import_users(OPERATOR, entries)
        for reason in skipped:
            print(f"skipped {reason}", file=sys.stderr)
        print(f"imported {len(imported)} users from {path} into {m.db.describe()}")
        return 0

    return run(args, work)


# --- teams -------------------------------------------------------------------------------------------------


def team_add(args: argparse.Namespace) -> int:
    async def work(m: Management) -> None:
        await m.create_team(OPERATOR, args.team)
        print(f"added team {args.team}")

    return run(args, work)


def team_remove(args: argparse.Namespace) -> int:
    async def work(m: Management) -> None:
        await m.remove_team(OPERATOR, args.team)
        print(f"removed team {args.team}")

    return run(args, work)


def team_show(args: argparse.Namespace) -> int:
    async def work(m: Management) -> None:
        team, members = await m.get_team(OPERATOR, args.team)
        print(f"team: {team.name} ({team.members} members)")
        for member in members:
            print(f"  {member}")

    return run(args, work)


def team_list(args: argparse.Namespace) -> int:
    async def work(m: Management) -> None:
        after = None
        while page := await m.list_teams(OPERATOR, after, 1000):
            for team in page:
                print(f"{team.name} ({team.members} members)")
            after = page[-1].name

    return run(args, work)


def team_member_add(args: argparse.Namespace) -> int:
    async def work(m: Management) -> None:
        await m.add_team_member(OPERATOR, args.team, args.user)
        print(f"{args.user} is in team {args.team}")

    return run(args, work)


def team_member_remove(args: argparse.Namespace) -> int:
    async def work(m: Management) -> None:
        await m.remove_team_member(OPERATOR, args.team, args.user)
        print(f"{args.user} left team {args.team}")

    return run(args, work)


# --- namespaces --------------------------------------------------------------------------------------------


def namespace_add(args: argparse.Namespace) -> int:
    async def work(m: Management) -> None:
        ns = await m.create_namespace(OPERATOR, args.namespace, args.public)
        print(f"added namespace {ns.path} ({'public' if ns.public else 'private'})")

    return run(args, work)


def namespace_remove(args: argparse.Namespace) -> int:
    async def work(m: Management) -> None:
        await m.remove_namespace(OPERATOR, args.namespace)
        print(f"removed namespace {args.namespace} (its repositories stay; the namespace above governs them)")

    return run(args, work)


def namespace_show(args: argparse.Namespace) -> int:
    async def work(m: Management) -> None:
        view = await m.get_namespace(OPERATOR, args.namespace)
        ns = view.record
        print(f"namespace: {ns.path}\nvisibility: {'public' if ns.public else 'private'}\n"
              f"personal: {ns.personal or '-'}\nquota: {ns.quota if ns.quota is not None else '-'}\n"
              f"retention: {ns.retention or '-'}\nimmutable tags: {', '.join(ns.immutable_tags) or '-'}\nmembers:")
        for member in view.members:
            print(f"  {member.kind} {member.name}: {member.role}")

    return run(args, work)


def namespace_list(args: argparse.Namespace) -> int:
    async def work(m: Management) -> None:
        after = None
        while page := await m.list_namespaces(OPERATOR, after, 1000):
            for view in page:
                print(f"{view.record.path} ({'public' if view.record.public else 'private'})")
            after = page[-1].record.path

    return run(args, work)


def namespace_grant(args: argparse.Namespace) -> int:
    kind, name = ("user", args.user) if args.user else ("team", args.team)

    async def work(m: Management) -> None:
        await m.set_member(OPERATOR, args.namespace, kind, name, args.role)
        print(f"{kind} {name} is {args.role} of {args.namespace}")

    return run(args, work)


def namespace_revoke(args: argparse.Namespace) -> int:
    kind, name = ("user", args.user) if args.user else ("team", args.team)

    async def work(m: Management) -> None:
        await m.remove_member(OPERATOR, args.namespace, kind, name)
        print(f"{kind} {name} holds no role on {args.namespace} any more")

    return run(args, work)
