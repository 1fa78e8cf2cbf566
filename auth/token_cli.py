"""``moorage token create|list|revoke`` and ``moorage robot add|list|remove``: access tokens and robot
accounts from the command line, on the configured database directly (no server needed; the operator
acts with every right). The fields are the API's (``POST /api/v1/tokens``).

    moorage token create --user alice --name ci --scopes pull,push --repositories 'payments/**' \\
        --expires 2027-01-01T00:00:00Z -c config.yml        # prints the secret once
    moorage token create --robot robot+payments+ci --name pipeline --scopes pull,push -c config.yml
    moorage token list (--user alice | --robot robot+payments+ci) -c config.yml
    moorage token revoke ID -c config.yml
    moorage robot add payments ci --actions pull,push -c config.yml
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from auth.factory import build_access_controller
from auth.settings import AccessTokenSettings, AuthSettings
from auth.terms import OPERATOR, Refused, token_view
from storage.database import DatabaseUnavailable

if TYPE_CHECKING:
    from auth.tokens import AccessTokens
    from storage.database import Database

ConfigLoader = Callable[[str | None], Any]
DatabaseOpener = Callable[[Any], "Database | None"]  # the registry's config -> its database
T = TypeVar("T")


def add_commands(sub: Any, load_config: ConfigLoader, open_database: DatabaseOpener) -> None:
    token = sub.add_parser("token", help="personal access tokens and robot tokens (in the database)")
    tokens = token.add_subparsers(dest="token_command", required=True)
    create = tokens.add_parser("create", help="create a token and print its secret (shown once)")
    owner = create.add_mutually_exclusive_group(required=True)
    owner.add_argument("--user", help="the user the token acts as")
    owner.add_argument("--robot", help="the robot (robot+NAMESPACE+NAME) the token acts as")
    create.add_argument("--name", required=True)
    create.add_argument("--scopes", required=True, help="pull, pull,push or pull,push,delete")
    create.add_argument("--repositories", nargs="+", help="repository globs, e.g. 'payments/**'")
    create.add_argument("--expires", help="RFC 3339 time, e.g. 2027-01-01T00:00:00Z")
    create.add_argument("--quiet", action="store_true", help="print the secret only (for scripts)")
    listing = tokens.add_parser("list", help="list tokens (no secrets)")
    whose = listing.add_mutually_exclusive_group(required=True)
    whose.add_argument("--user")
    whose.add_argument("--robot")
    revoke = tokens.add_parser("revoke", help="revoke a token")
    revoke.add_argument("id")

    robot = sub.add_parser("robot", help="robot accounts of namespaces (in the database)")
    robots = robot.add_subparsers(dest="robot_command", required=True)
    add = robots.add_parser("add", help="create robot+NAMESPACE+NAME")
    add.add_argument("namespace")
    add.add_argument("name")
    add.add_argument("--actions", default="pull", help="pull, pull,push or pull,push,delete (default pull)")
    add.add_argument("--description")
    listed = robots.add_parser("list", help="a namespace's robots")
    listed.add_argument("namespace")
    remove = robots.add_parser("remove", help="remove a robot and its tokens")
    remove.add_argument("robot")

    for parser, run in ((create, token_create), (listing, token_list), (revoke, token_revoke), (add, robot_add),
                        (listed, robot_list), (remove, robot_remove)):
        parser.add_argument("-c", "--config", help="config file (its database; default moorage.db in ./data)")
        parser.set_defaults(run=run, load_config=load_config, open_database=open_database)


def service(args: argparse.Namespace) -> tuple[AccessTokens, Database]:
    from auth.tokens import AccessTokens  # SQLAlchemy only for the commands that use the database

    config = args.load_config(args.config)
    db = args.open_database(config)
    if db is None:
        raise SystemExit("moorage: no database: set database.url (S3 storage has no default)")
    auth = AuthSettings.parse(config.auth)
    access = build_access_controller(auth)
    return AccessTokens(db, AccessTokenSettings.parse(auth.accesstokens), access.actions), db


def call(args: argparse.Namespace, work: Callable[[AccessTokens], Awaitable[T]]) -> T:
    """``work`` on the database, its refusals printed as ``moorage: ...`` with exit status 1."""
    tokens, db = service(args)

    async def run() -> T:
        try:
            return await work(tokens)
        finally:
            await db.close()

    try:
        return asyncio.run(run())
    except Refused as e:
        raise SystemExit(f"moorage: {e.message}") from None
    except DatabaseUnavailable as e:
        raise SystemExit(f"moorage: the database is unavailable: {e}") from None


def token_create(args: argparse.Namespace) -> int:
    made = call(args, lambda t: t.create(OPERATOR, args.name, args.scopes, args.repositories, args.expires,
                                         robot=args.robot, user=args.user))
    if args.quiet:
        print(made.secret)
        return 0
    view = token_view(made.record)
    print(f"token {view['id']} {view['name']} of {view['owner']}: {','.join(view['scopes'])}"
          f"{' on ' + ' '.join(view['repositories']) if view['repositories'] else ''}"
          f", expires {view['expires'] or 'never'}")
    print(f"secret (shown once; use it as the password of {view['owner']}):", file=sys.stderr)
    print(made.secret)
    return 0


def token_list(args: argparse.Namespace) -> int:
    records = call(args, lambda t: t.list(OPERATOR, user=args.user, robot=args.robot))
    print(f"{'ID':<17} {'NAME':<20} {'SCOPES':<18} {'REPOSITORIES':<24} {'EXPIRES':<21} LAST USED")
    for record in records:
        v = token_view(record)
        used = f"{v['last_used']} from {v['last_address']}" if v["last_used"] else "never"
        print(f"{v['id']:<17} {v['name']:<20} {','.join(v['scopes']):<18} "
              f"{' '.join(v['repositories'] or ['(all)']):<24} {v['expires'] or 'never':<21} {used}")
    return 0


def token_revoke(args: argparse.Namespace) -> int:
    record = call(args, lambda t: t.revoke(OPERATOR, args.id))
    print(f"revoked token {record.id} {record.name} of {record.owner}")
    return 0


def robot_add(args: argparse.Namespace) -> int:
    robot = call(args, lambda t: t.create_robot(OPERATOR, args.namespace, args.name, args.actions, args.description))
    print(f"robot robot+{robot.namespace}+{robot.name}: {','.join(robot.actions)}")
    return 0


def robot_list(args: argparse.Namespace) -> int:
    for robot in call(args, lambda t: t.list_robots(OPERATOR, args.namespace)):
        print(f"robot+{robot.namespace}+{robot.name}\t{','.join(robot.actions)}\t{robot.description or ''}")
    return 0


def robot_remove(args: argparse.Namespace) -> int:
    call(args, lambda t: t.remove_robot(OPERATOR, args.robot))
    print(f"removed {args.robot}")
    return 0
