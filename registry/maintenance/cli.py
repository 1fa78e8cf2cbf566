"""``moorage gc``, ``moorage retention`` and ``moorage du``: maintenance run against the storage of a config, online
(registries may serve the same storage meanwhile)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from auth.rules import glob_regex
from auth.settings import PATTERN_RE
from configkit import Duration, convert
from registry.config import Config, ConfigError
from registry.maintenance.progress import TerminalProgress

if TYPE_CHECKING:
    from storage.accounting import UsageReport


def add_commands(commands: Any, load_config: Callable[[str | None], Config],
                 config_arguments: Callable[[argparse.ArgumentParser], None]) -> None:
    """The maintenance commands; ``load_config`` reads a config or exits with its errors (``moorage``'s),
    ``config_arguments`` adds the config as every command takes it (``CONFIG`` or ``-c CONFIG``)."""
    gc = commands.add_parser("gc", help="garbage-collect unreferenced blobs and manifests (online)")
    config_arguments(gc)
    gc.add_argument("--dry-run", action="store_true", help="only report what would be removed")
    gc.add_argument("--delete-untagged", action="store_true",
                    help="also remove manifests no tag, kept index or kept subject needs")
    gc.add_argument("--grace", help="spare what was pushed or used this recently (default: "
                                    "storage.maintenance.gc.grace, 1h)")
    gc.set_defaults(run=run_gc, load_config=load_config)
    retention = commands.add_parser(
        "retention", help="remove the tags the retention policies expire (then collect what they held)")
    config_arguments(retention)
    retention.add_argument("--dry-run", action="store_true", help="only list the tags that would go")
    retention.add_argument("--grace", help="as for gc")
    retention.set_defaults(run=run_retention, delete_untagged=False, load_config=load_config)
    du = commands.add_parser("du", help="bytes per repository and namespace (shared blobs counted once)")
    config_arguments(du)
    du.add_argument("glob", nargs="?", default="**", help="repositories to show (access-rule glob, default **)")
    du.add_argument("--json", action="store_true", help="print the report as JSON (as GET /api/v1/usage)")
    du.set_defaults(run=run_du, load_config=load_config)


def run_du(args: argparse.Namespace) -> int:
    # the registry's machinery only when a command runs: `moorage serve` imports this module too, and
    # must choose the metrics' multiprocess mode before prometheus-client is imported (registry.http.server)
    from registry.instance import Registry
    from storage.accounting import usage_report
    from storage.gc import human_size

    config = args.load_config(args.config)
    pattern = glob_regex(args.glob, "")
    if not PATTERN_RE.fullmatch(args.glob) or pattern is None:
        print(f"moorage du: bad glob {args.glob!r} (lowercase names, / * ** ? only)", file=sys.stderr)
        return 2

    async def report() -> UsageReport:
        registry = Registry.build(config)
        try:
            async def selected(name: str) -> bool:
                return pattern.fullmatch(name) is not None

            return await usage_report(registry.driver, selected)
        finally:
            await registry.close()

    result = asyncio.run(report())
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
        return 0
    width = max([len(h.name) for h in result.repositories + result.namespaces] + [10])
    for title, rows in (("namespace", result.namespaces), ("repository", result.repositories)):
        print(f"{title:<{width}}  {'size':>10}  {'blobs':>7}  {'only here':>10}")
        for h in rows:
            print(f"{h.name:<{width}}  {human_size(h.bytes):>10}  {h.blobs:>7}  {human_size(h.exclusive):>10}")
        print()
    print(f"{'total':<{width}}  {human_size(result.total.bytes):>10}  {result.total.blobs:>7}")
    return 0


def run_retention(args: argparse.Namespace) -> int:
    config = args.load_config(args.config)
    if (config.storage.retention is None or not config.storage.retention.policies) and config.auth.database is None:
        print("moorage retention: no storage.maintenance.retention.policies in the config", file=sys.stderr)
        return 2
    return run_gc(args, config, retention=True)


def run_gc(args: argparse.Namespace, config: Config | None = None, retention: bool = False) -> int:
    from registry.instance import Registry
    from storage.driver import StorageUnavailable
    from storage.gc import GarbageCollector, GCBusy

    config = config or args.load_config(args.config)
    try:
        grace = convert(Duration, args.grace, "--grace") if args.grace is not None else config.storage.gc.grace
    except ConfigError as e:
        print(f"moorage gc: {e}", file=sys.stderr)
        return 2
    progress = TerminalProgress()

    async def collect() -> int:
        registry = Registry.build(config)
        try:
            expire = None
            if retention:
                try:
                    expire = await registry.retention()
                except StorageUnavailable as e:
                    print(f"moorage retention: {e}", file=sys.stderr)
                    return 1
                if expire is None:
                    print("moorage retention: no storage.maintenance.retention.policies in the config and no "
                          "namespace in the database sets a retention", file=sys.stderr)
                    return 2
            collector = GarbageCollector(
                registry.driver, dry_run=args.dry_run, grace=grace, progress=progress,
                delete_untagged=args.delete_untagged or config.storage.gc.deleteuntagged,
                expire=expire, ledger=registry.ledger,
            )
            try:
                result = await collector.run()
            except GCBusy as e:
                progress.close()
                print(f"moorage gc: {e}", file=sys.stderr)
                return 1
            progress.close()
            verb = "would remove" if args.dry_run else "removed"
            for name, tag, digest in sorted(result.tags_removed):
                print(f"{verb} tag {name}:{tag} ({digest})")
            print(("dry run: " if args.dry_run else "") + result.summary())
            return 0
        finally:
            await registry.close()

    return asyncio.run(collect())
