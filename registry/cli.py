"""The ``moorage`` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from registry import config as config_module
from registry.config import Config, ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="moorage", description="A private container image registry.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the registry")
    serve.add_argument("config", nargs="?", help="YAML config file (Distribution's keys); optional")
    serve.set_defaults(run=run_serve)
    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


def load_config(path: str | None) -> Config:
    try:
        return config_module.load(path)
    except ConfigError as e:
        print(f"moorage: config error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def run_serve(args: argparse.Namespace) -> int:
    from registry.server import serve

    config = load_config(args.config)
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.config:
        os.environ["MOORAGE_CONFIG"] = os.path.abspath(args.config)
    try:
        serve(config)
    except ConfigError as e:
        print(f"moorage: config error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
