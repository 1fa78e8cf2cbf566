"""``moorage replicate run RULE [-c CONFIG] [--dry-run]``: run a rule now, in this process.

When no ``moorage serve`` replica holds the rule, it runs here (holding the rule's lease); when one does,
the run is queued for it and followed from the storage (taken over here should that replica die).  The
execution is recorded like any other (the API and the UI show it); a progress bar on a terminal, plain
lines otherwise; every failed item with the remote's error; exit 0 only when every item succeeded.
``--dry-run`` lists what would be copied or deleted and writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

from registry.config import Config


def add_commands(commands: argparse._SubParsersAction, load_config: Callable[[str | None], Config]) -> None:
    replicate = commands.add_parser("replicate", help="replication between registries (docs/replication.md)")
    sub = replicate.add_subparsers(dest="replicate_command", required=True)
    run = sub.add_parser("run", help="run a replication rule now; exits 0 when every item was copied")
    run.add_argument("rule", help="the rule's name (replication.rules[].name)")
    run.add_argument("-c", "--config", help="YAML config file")
    run.add_argument("--dry-run", action="store_true", help="list what would be copied or deleted, write nothing")
    run.set_defaults(run=lambda args: run_rule(args, load_config(args.config)))


def run_rule(args: argparse.Namespace, config: Config) -> int:
    replication = config.replication.replication()
    rule = replication.rules.get(args.rule) if replication is not None else None
    if rule is None or replication is None:
        known = ", ".join(replication.rules) if replication is not None else "none configured"
        print(f"moorage: no replication rule {args.rule!r} (rules: {known})", file=sys.stderr)
        return 2
    from registry.replication.manual import dry_run, execute  # the runner and its HTTP client: only here

    return asyncio.run(dry_run(config, rule) if args.dry_run else execute(config, rule, replication.lease))
