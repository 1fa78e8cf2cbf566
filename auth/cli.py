"""CLI subcommands owned by auth: ``user add|remove|list|passwd``, ``auth keygen``, ``token-server``.

Passwords are read from a prompt (twice) on a terminal, else from the first line of stdin; never
from the command line, where they would end up in shell history and ``ps``.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from auth import htpasswd, keygen, keys

# Reads a config file into the registry's config (``.auth``, ``.log_level``), exiting with a message on
# errors.  The registry's CLI passes its own: auth does not import the registry.
ConfigLoader = Callable[[str], Any]


def add_commands(sub: Any, load_config: ConfigLoader) -> None:
    """Register the subcommands on the ``moorage`` subparsers; each sets ``run`` like the core ones."""
    user = sub.add_parser("user", help="manage htpasswd users")
    users = user.add_subparsers(dest="user_command", required=True)
    for name, func, text in (
        ("add", user_add, "add a user (or replace its password)"),
        ("passwd", user_passwd, "change an existing user's password"),
        ("remove", user_remove, "remove a user"),
        ("list", user_list, "list users"),
    ):
        p = users.add_parser(name, help=text)
        if name != "list":
            p.add_argument("name")
        if name in ("add", "passwd"):
            p.add_argument("--cost", type=int, default=htpasswd.DEFAULT_COST, help="bcrypt cost")
        where = p.add_mutually_exclusive_group()
        where.add_argument("--htpasswd", type=Path, help="htpasswd file")
        where.add_argument("-c", "--config", help="config file naming the htpasswd file")
        p.set_defaults(run=func, load_config=load_config)

    auth = sub.add_parser("auth", help="token auth helpers")
    auth_sub = auth.add_subparsers(dest="auth_command", required=True)
    gen = auth_sub.add_parser("keygen", help="write a token signing key and its self-signed certificate")
    gen.add_argument("--alg", choices=keygen.ALGORITHMS, default="ES256")
    gen.add_argument("--key", type=Path, default=Path("token.key"))
    gen.add_argument("--cert", type=Path, default=Path("token.crt"))
    gen.add_argument("--days", type=int, default=3650)
    gen.add_argument("--cn", default="moorage token signer", help="certificate common name")
    gen.add_argument("--force", action="store_true", help="overwrite existing files")
    gen.set_defaults(run=auth_keygen)

    server = sub.add_parser("token-server", help="run the built-in token server alone")
    server.add_argument("config")
    server.add_argument("--addr", help="HOST:PORT (default: auth.tokenserver.addr)")
    server.set_defaults(run=token_server, load_config=load_config)


def htpasswd_path(args: argparse.Namespace) -> Path:
    if args.htpasswd:
        return args.htpasswd
    if not args.config:
        raise SystemExit("moorage user: give --htpasswd FILE or --config CONFIG")
    auth = args.load_config(args.config).auth
    value = auth.htpasswd.path if auth.htpasswd else auth.tokenserver.htpasswd if auth.tokenserver else None
    if value:
        return Path(value)
    raise SystemExit(f"{args.config}: no auth.htpasswd.path or auth.tokenserver.htpasswd")


def read_password(confirm: bool = True) -> str:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if confirm and getpass.getpass("Repeat password: ") != password:
            raise SystemExit("passwords do not match")
        return password
    return sys.stdin.readline().rstrip("\r\n")


def user_add(args: argparse.Namespace) -> int:
    path = htpasswd_path(args)
    try:
        htpasswd.check_user_name(args.name)
        existed = htpasswd.set_password(path, args.name, read_password(), args.cost)
    except ValueError as e:
        raise SystemExit(f"moorage user add: {e}") from None
    print(f"{'updated' if existed else 'added'} {args.name} in {path}")
    return 0


def user_passwd(args: argparse.Namespace) -> int:
    path = htpasswd_path(args)
    if args.name not in htpasswd.user_names(path):
        raise SystemExit(f"moorage user passwd: no user {args.name!r} in {path}")
    try:
        htpasswd.set_password(path, args.name, read_password(), args.cost)
    except ValueError as e:
        raise SystemExit(f"moorage user passwd: {e}") from None
    print(f"password of {args.name} changed in {path}")
    return 0


def user_remove(args: argparse.Namespace) -> int:
    path = htpasswd_path(args)
    if not htpasswd.remove_user(path, args.name):
        raise SystemExit(f"moorage user remove: no user {args.name!r} in {path}")
    print(f"removed {args.name} from {path}")
    return 0


def user_list(args: argparse.Namespace) -> int:
    for name in htpasswd.user_names(htpasswd_path(args)):
        print(name)
    return 0


def auth_keygen(args: argparse.Namespace) -> int:
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
    try:
        serve(config.auth, args.addr, "warning" if config.log_level == "warn" else config.log_level)
    except ValueError as e:
        raise SystemExit(f"moorage token-server: {e}") from None
    return 0
