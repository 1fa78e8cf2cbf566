"""The ``moorage`` command."""

from __future__ import annotations

import argparse
import os
import sys

from auth import cli as auth_cli
from auth import token_cli
from registry import config as config_module
from registry.config import Config, ConfigError
from registry.maintenance import cli as maintenance_cli
from registry.replication import cli as replication_cli
from storage.database import Database


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="moorage", description="A private container image registry.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the registry")
    serve.add_argument("config", nargs="?", help="YAML config file (Distribution's keys); optional")
    serve.set_defaults(run=run_serve)
    rebuild = commands.add_parser(
        "rebuild-index", help="re-create the referrers index from the stored manifests (after Distribution wrote)"
    )
    rebuild.add_argument("config", nargs="?", help="YAML config file")
    rebuild.set_defaults(run=run_rebuild_index)
    maintenance_cli.add_commands(commands, load_config)
    replication_cli.add_commands(commands, load_config)
    auth_cli.add_commands(commands, load_config)
    token_cli.add_commands(commands, load_config, open_database)
    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


def open_database(config: Config) -> Database | None:
    from registry.instance import open_database as opened

    return opened(config)


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
    sys.exit(main())
