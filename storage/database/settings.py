"""The ``database`` config section: where the identity and policy store lives, and how long a call may take."""

from __future__ import annotations

from pydantic import field_validator

from configkit import Invalid, PositiveDuration, Section, Str

SCHEMES = ("sqlite", "postgresql", "postgres", "postgresql+psycopg")
DEFAULT_FILE = "moorage.db"


class DatabaseSettings(Section):
    """``url``: ``sqlite:////path/moorage.db`` or ``postgresql://user:pass@host/db``; unset: the file
    ``moorage.db`` in the filesystem storage's root directory (storage/database/engine.py says when it
    is created).  ``timeout``: the bound of every database call; past it the request answers 503."""

    KEY = "database"

    url: Str | None = None
    timeout: PositiveDuration = 5.0

    @field_validator("url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        if url is None or url == "":
            return None
        scheme = url.partition("://")[0].lower()
        if "://" not in url or scheme not in SCHEMES:
            raise Invalid("expected sqlite:////path/to/moorage.db or postgresql://user:password@host/database, "
                          f"got a URL with scheme {scheme!r}")
        return url
