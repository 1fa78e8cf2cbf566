"""The database's one failure callers handle: it cannot answer now (the registry answers 503)."""

from __future__ import annotations

from storage.driver.interface import StorageUnavailable


class DatabaseUnavailable(StorageUnavailable):
    """The database cannot be reached or did not answer in time: the request may succeed later (503)."""
