"""The database: the identity and policy store's tables (schema.py), migrations, bounded calls off the
event loop (engine.py) and the change feed that keeps every replica's caches current (feed.py).

``Database`` and ``default_url`` are imported on first access (PEP 562): SQLAlchemy is about 30 MiB of
every process's heap, and a registry that keeps nothing in a database (no logins) never loads it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from storage.database.errors import DatabaseUnavailable
from storage.database.feed import Cached, ChangeFeed
from storage.database.settings import DatabaseSettings

if TYPE_CHECKING:
    from storage.database.engine import Database, default_url

__all__ = ["Cached", "ChangeFeed", "Database", "DatabaseSettings", "DatabaseUnavailable", "default_url"]
ON_FIRST_ACCESS = {"Database": "storage.database.engine", "default_url": "storage.database.engine"}


def __getattr__(name: str) -> Any:
    module = ON_FIRST_ACCESS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
