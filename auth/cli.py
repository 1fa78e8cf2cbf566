"""CLI subcommands owned by auth: ``user ...`` (on the database, or an htpasswd file), ``team ...`` and
``namespace ...`` (auth/manage_cli.py), ``auth keygen``, ``token-server``.

Passwords are read from a prompt (twice) on a terminal, else from the first line of stdin; never
from the command line, where they would end up in shell history and ``ps``.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from auth import htpasswd, manage_cli
from auth.policy import policy_cache

# Reads a config file into the registry's config (``.auth``, ``.log_level``), exiting with a message on
# errors.  The registry's CLI passes its own: auth does not import the registry.
ConfigLoader = Callable[[str], Any]
Command = Callable[[argparse.Namespace], int]
FileCommand = Callable[[argparse.Namespace, Path], int]


def add_commands(sub: Any, load_config: ConfigLoader, management: manage_cli.ManagementFactory) -> None:
    """Register the subcommands on the ``moorage`` subparsers; each sets ``run`` like the core ones.
    ``management`` builds the management service on a config's database (the registry's)."""

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", help="config file (its database, or its htpasswd file)")
        p.set_defaults(load_config=load_config, management=management)

    user = sub.add_parser("user", help="manage users (the database of auth.database, or an htpasswd file)")
    users = user.add_subparsers(dest="user_command", required=True)
    for name, func, text in (
        ("add", user_add, "add a user (on an htpasswd file: or replace its password)"),
        ("passwd", user_passwd, "change an existing user's password"),
        ("remove", user_remove, "remove a user"),
        ("list", user_list, "list users"),
        ("show", user_show, "a user's details and teams (database)"),
        ("disable", user_disable, "refuse a user's logins and end their sessions (database)"),
        ("enable", user_disable, "let a disabled user log in again (database)"),
    ):
        p = users.add_parser(name, help=text)
        if name != "list":
            p.add_argument("name")
        if name in ("add", "passwd"):
            p.add_argument("--cost", type=int, default=htpasswd.DEFAULT_COST, help="bcrypt cost (htpasswd file)")
        if name == "add":
            p.add_argument("--admin", action="store_true", help="may do everything (database)")
            p.add_argument("--email", help="e-mail address (database)")
        if name in ("add", "passwd", "remove", "list"):
            p.add_argument("--htpasswd", type=Path, help="work on this htpasswd file instead of a database")
        common(p)
        p.set_defaults(run=func)
    p = users.add_parser("import", help="copy an htpasswd file's users into the database, keeping their passwords")
    p.add_argument("--htpasswd", type=Path, required=True, help="the htpasswd file to import")
    common(p)
    p.set_defaults(run=manage_cli.user_import)
    manage_cli.add_commands(sub, common)

    auth = sub.add_parser("auth", help="token auth helpers")
    auth_sub = auth.add_subparsers(dest="auth_command", required=True)
    gen = auth_sub.add_parser("keygen", help="write a token signing key and its self-signed certificate")
    gen.add_argument("--alg", default="ES256", help="ES256 (the default), RS256 or EdDSA")
    gen.add_argument("--key", type=Path, default=Path("token.key"))
    gen.add_argument("--cert", type=Path, default=Path("token.crt"))
    gen.add_argument("--days", type=int, default=3650)
    gen.add_argument("--cn", default="moorage token signer", help="certificate common name")
    gen.add_argument("--force", action="store_true", help="overwrite existing files")
    gen.set_defaults(run=auth_keygen)

    server = sub.add_parser("token-server", help="run the built-in token server alone")
    server.add_argument("config")
    server.add_argument("--addr", help="HOST:PORT (default: auth.tokenserver.addr)")
    server.set_defaults(run=token_server, load_config=load_config, management=management)


def htpasswd_path(args: argparse.Namespace) -> Path | None:
    """The htpasswd file to work on: ``--htpasswd``, or the config's when it has no ``auth.database``;
    None: the config's database."""
    if getattr(args, "htpasswd", None):
        return args.htpasswd
    config = args.load_config(args.config)
    auth = config.auth
    if auth.database is not None:
        return None
    value = auth.htpasswd.path if auth.htpasswd else auth.tokenserver.htpasswd if auth.tokenserver else None
    if value:
        return Path(value)
    if not args.config:
        raise SystemExit("moorage user: give --htpasswd FILE or --config CONFIG (with auth.database, or an "
                         "htpasswd file)")
    raise SystemExit(f"{args.config}: no auth.htpasswd.path or auth.tokenserver.htpasswd, and no auth.database")


@contextmanager
def refusal_exits(command: str) -> Iterator[None]:
    """A ValueError (a bad name, password or setting) ends ``moorage command`` with its message, no traceback."""
    try:
        yield
    except ValueError as e:
        raise SystemExit(f"moorage {command}: {e}") from None


def read_password(confirm: bool = True) -> str:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if confirm and getpass.getpass("Repeat password: ") != password:
            raise SystemExit("passwords do not match")
        return password
    return sys.stdin.readline().rstrip("\r\n")


def or_database(database_command: Command) -> Callable[[FileCommand], Command]:
    """A ``user`` command that works on the htpasswd file (given with its path) unless the config has a
    database, where ``database_command`` runs instead."""
    def wrap(file_command: FileCommand) -> Command:
        @functools.wraps(file_command)
        def run(args: argparse.Namespace) -> int:
            path = htpasswd_path(args)
            return database_command(args) if path is None else file_command(args, path)
        return run
    return wrap


@or_database(lambda args: manage_cli.user_add(args, read_password()))
def user_add(args: argparse.Namespace, path: Path) -> int:
    if args.admin or args.email:
        raise SystemExit("moorage user add: --admin and --email need the database (auth.database)")
    with refusal_exits("user add"):
        htpasswd.check_user_name(args.name)
        existed = htpasswd.set_password(path, args.name, read_password(), args.cost)
    print(f"{'updated' if existed else 'added'} {args.name} in {path}")
    return 0


@or_database(lambda args: manage_cli.user_passwd(args, read_password()))
def user_passwd(args: argparse.Namespace, path: Path) -> int:
    if args.name not in htpasswd.user_names(path):
        raise SystemExit(f"moorage user passwd: no user {args.name!r} in {path}")
    with refusal_exits("user passwd"):
        htpasswd.set_password(path, args.name, read_password(), args.cost)
    print(f"password of {args.name} changed in {path}")
    return 0


@or_database(manage_cli.user_remove)
def user_remove(args: argparse.Namespace, path: Path) -> int:
    if not htpasswd.remove_user(path, args.name):
        raise SystemExit(f"moorage user remove: no user {args.name!r} in {path}")
    print(f"removed {args.name} from {path}")
    return 0


@or_database(manage_cli.user_list)
def user_list(args: argparse.Namespace, path: Path) -> int:
    for name in htpasswd.user_names(path):
        print(name)
    return 0


def user_show(args: argparse.Namespace) -> int:
    if htpasswd_path(args) is not None:
        raise SystemExit("moorage user show: needs the database (auth.database)")
    return manage_cli.user_show(args)


def user_disable(args: argparse.Namespace) -> int:
    if htpasswd_path(args) is not None:
        raise SystemExit(f"moorage user {args.user_command}: needs the database (auth.database); "
                         "remove the user from the htpasswd file instead")
    return manage_cli.user_disable(args)


def auth_keygen(args: argparse.Namespace) -> int:
    from auth import keygen, keys  # cryptography and PyJWT only for this command

    if args.alg not in keygen.ALGORITHMS:
        raise SystemExit(f"moorage auth keygen: --alg {args.alg}: not one of {', '.join(keygen.ALGORITHMS)}")
    try:
        keygen.write_keypair(args.key, args.cert, args.alg, args.cn, args.days, args.force)
    except FileExistsError as e:
        raise SystemExit(f"moorage auth keygen: {e}") from None
    key = keys.load_private_key(args.key, "--key")
    print(f"wrote {args.key} ({args.alg}, keep it secret) and {args.cert} (use as auth.token.rootcertbundle)")
    print(f"kid (RFC 7638 thumbprint): {keys.thumbprint(key.public_key())}")
    return 0


def token_server(args: argparse.Namespace) -> int:
    from auth.standalone import serve

    config = args.load_config(args.config)
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    policy = policy_cache(args.management(config).db) if config.auth.database is not None else None
    with refusal_exits("token-server"):
        serve(config.auth, args.addr, "warning" if config.log_level == "warn" else config.log_level, policy)
    return 0
