"""The database: the identity and policy store's tables (schema.py), migrations, bounded calls off the
event loop (engine.py) and the change feed that keeps every replica's caches current (feed.py)."""

from storage.database.engine import Database, default_url
from storage.database.errors import DatabaseUnavailable
from storage.database.feed import Cached, ChangeFeed
from storage.database.settings import DatabaseSettings

__all__ = ["Cached", "ChangeFeed", "Database", "DatabaseSettings", "DatabaseUnavailable", "default_url"]
