"""The ``moorage`` command."""

from __future__ import annotations

import argparse
import gc
import os
import sys
from typing import TYPE_CHECKING, NoReturn

from auth import cli as auth_cli
from auth import token_cli
from registry import config as config_module
from registry.config import Config, ConfigError
from registry.maintenance import cli as maintenance_cli
from registry.replication import cli as replication_cli

if TYPE_CHECKING:
    from auth.manage import Management
    from storage.database import Database


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="moorage", description="A private container image registry.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the registry")
    config_arguments(serve, "YAML config file (Distribution's keys); optional")
    serve.set_defaults(run=run_serve)
    rebuild = commands.add_parser(
        "rebuild-index", help="re-create the referrers index from the stored manifests (after Distribution wrote)"
    )
    config_arguments(rebuild)
    rebuild.set_defaults(run=run_rebuild_index)
    maintenance_cli.add_commands(commands, load_config, config_arguments)
    replication_cli.add_commands(commands, load_config)
    auth_cli.add_commands(commands, load_config, management_for)
    token_cli.add_commands(commands, load_config, open_database)
    args = parser.parse_args(argv)
    if getattr(args, "config_option", None) is not None:
        if args.config is not None and not hasattr(args, "glob"):
            parser.error(f"give the config once: {args.config} or -c {args.config_option}")
        if hasattr(args, "glob") and args.config is not None:  # du -c CONFIG GLOB
            if args.glob != "**":
                parser.error(f"give the config once: {args.config} or -c {args.config_option}")
            args.glob = args.config
        args.config = args.config_option
    return int(args.run(args) or 0)


def entry() -> NoReturn:
    """The ``moorage`` command: ``main``, then an exit that spares the collector a walk over every object
    the command leaves behind (``gc.freeze``: a tenth of a second of a short one such as ``replicate run``)."""
    code = main()
    gc.freeze()
    sys.exit(code)


def open_database(config: Config) -> Database | None:
    from registry.instance import open_database as opened

    return opened(config)


def config_arguments(command: argparse.ArgumentParser, text: str = "YAML config file") -> None:
    """``CONFIG`` as today's commands take it, or ``-c CONFIG`` as the user, team and namespace commands do."""
    command.add_argument("config", nargs="?", help=text)
    command.add_argument("-c", "--config", dest="config_option", metavar="CONFIG", help=f"{text} (the same)")


def management_for(config: Config) -> Management:
    """The management service on ``config``'s database, for the CLI (no policy cache: it reads the database)."""
    from registry.instance import build_management, open_database

    database = open_database(config)
    if database is None:
        raise SystemExit("moorage: this config has no database: set database.url (required with s3 storage)")
    return build_management(config, database)


def load_config(path: str | None) -> Config:
    try:
        return config_module.load(path)
    except ConfigError as e:
        report(e, path)
        raise SystemExit(2) from None


def report(error: ConfigError, path: str | None) -> None:
    """One line per problem, each naming where it was set (the file unless an environment variable)."""
    if path is not None and not any(error.sources):
        error = error.attributed({}, path)
    for line in str(error).splitlines():
        print(f"moorage: config error: {line}", file=sys.stderr)


def run_serve(args: argparse.Namespace) -> int:
    from registry.events import logs
    from registry.http.server import serve

    config = load_config(args.config)
    logs.configure(config)
    if args.config:
        os.environ["MOORAGE_CONFIG"] = os.path.abspath(args.config)
    try:
        serve(config, args.config)
    except ConfigError as e:
        report(e, args.config)
        return 2
    return 0


def run_rebuild_index(args: argparse.Namespace) -> int:
    import asyncio

    from registry.instance import Registry
    from storage.referrers import rebuild_referrers

    config = load_config(args.config)

    async def rebuild() -> int:
        registry = Registry.build(config)
        try:
            return await rebuild_referrers(registry.referrers)
        finally:
            await registry.close()

    print(f"referrers index: {asyncio.run(rebuild())} entries written")
    return 0


if __name__ == "__main__":
    entry()
