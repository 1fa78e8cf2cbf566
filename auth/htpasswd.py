"""The htpasswd file: bcrypt entries, re-read when it changes, checked in constant time.

Checking costs one bcrypt whether or not the user exists (an unknown user is checked against a
dummy hash of the usual cost), so timing does not reveal user names. Verified credentials are
remembered for a short while under a keyed digest, because clients send Basic on every request.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import bcrypt

log = logging.getLogger("moorage.auth")

BCRYPT_PREFIXES = (b"$2a$", b"$2b$", b"$2y$")
BCRYPT_MAX_PASSWORD = 72
DEFAULT_COST = 12
CACHE_SECONDS = 300.0
CACHE_ENTRIES = 4096
RESERVED_NAMES = ("anonymous", "authenticated")


class Htpasswd:
    """Read side of an htpasswd file, as used by the Basic controller and the token server."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._entries: dict[str, bytes] = {}
        self._dummy: bytes = b""
        self._lock = threading.Lock()
        self._cache_key = secrets.token_bytes(32)
        self._verified: dict[bytes, float] = {}
        self._refresh()

    def tag(self, user: str) -> str | None:
        """A short fingerprint of the user's current hash: changes when the password does."""
        self._refresh()
        entry = self._entries.get(user)
        return hashlib.sha256(entry).hexdigest()[:16] if entry is not None else None

    async def check(self, user: str, password: str) -> bool:
        """Whether ``user:password`` matches; runs bcrypt off the event loop."""
        self._refresh()
        entry = self._entries.get(user)
        digest = self._digest(user, password, entry)
        if entry is not None and self._verified.get(digest, 0.0) > time.monotonic():
            return True
        ok = await asyncio.to_thread(self._bcrypt, password, entry)
        if ok:
            if len(self._verified) >= CACHE_ENTRIES:
                self._verified.clear()
            self._verified[digest] = time.monotonic() + CACHE_SECONDS
        return ok

    def _bcrypt(self, password: str, entry: bytes | None) -> bool:
        secret = password.encode()
        usable = entry is not None and len(secret) <= BCRYPT_MAX_PASSWORD
        try:
            matched = bcrypt.checkpw(secret[:BCRYPT_MAX_PASSWORD], entry if usable else self._dummy)
        except ValueError:
            return False
        return matched and usable

    def _digest(self, user: str, password: str, entry: bytes | None) -> bytes:
        material = b"\0".join((user.encode(), password.encode(), entry or b""))
        return hmac.new(self._cache_key, material, hashlib.sha256).digest()

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError as e:
            stamp = None
            if self._stamp is not None or not self._dummy:
                log.error("htpasswd %s unreadable (%s): nobody can log in", self.path, e.strerror)
        if stamp == self._stamp and self._dummy:
            return
        with self._lock:
            try:
                entries = parse(self.path.read_text(errors="replace")) if stamp else {}
            except OSError:
                entries = {}
            costs = Counter(cost_of(h) for h in entries.values())
            cost = costs.most_common(1)[0][0] if costs else DEFAULT_COST
            if not self._dummy or cost_of(self._dummy) != cost:
                self._dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(cost))
            self._entries, self._stamp = entries, stamp
            self._verified.clear()
            log.info("htpasswd %s loaded: %d users", self.path, len(entries))


def parse(content: str) -> dict[str, bytes]:
    """``user:hash`` lines; blank lines and ``#`` comments are skipped, as is every non-bcrypt hash."""
    entries: dict[str, bytes] = {}
    for number, line in enumerate(content.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user:
            log.warning("htpasswd line %d: not user:hash, ignored", number)
            continue
        if not hashed.encode().startswith(BCRYPT_PREFIXES):
            log.warning("htpasswd line %d: user %r has a non-bcrypt hash, ignored", number, user)
            continue
        entries.setdefault(user, hashed.encode())
    return entries


def user_names(path: Path) -> list[str]:
    """The users with a usable (bcrypt) entry, sorted."""
    return sorted(parse("\n".join(read_lines(path))))


def cost_of(hashed: bytes) -> int:
    try:
        return int(hashed[4:6])
    except ValueError:
        return DEFAULT_COST


def check_user_name(user: str) -> str:
    """Names usable in an htpasswd file and in rules: no ``:``, whitespace or reserved words."""
    if not user or ":" in user or any(c.isspace() for c in user) or user.startswith("#"):
        raise ValueError(f"invalid user name {user!r}: no ':', spaces or leading '#'")
    if user in RESERVED_NAMES:
        raise ValueError(f"invalid user name {user!r}: reserved for access rules")
    return user


def hash_password(password: str, cost: int = DEFAULT_COST) -> str:
    secret = password.encode()
    if not secret:
        raise ValueError("empty password")
    if len(secret) > BCRYPT_MAX_PASSWORD:
        raise ValueError(f"password longer than {BCRYPT_MAX_PASSWORD} bytes (bcrypt's limit)")
    return bcrypt.hashpw(secret, bcrypt.gensalt(cost)).decode()


def set_password(path: Path, user: str, password: str, cost: int = DEFAULT_COST) -> bool:
    """Add ``user`` or replace its hash; returns whether the user existed."""
    check_user_name(user)
    line = f"{user}:{hash_password(password, cost)}"
    lines, existed = [], False
    for old in read_lines(path):
        if old.partition(":")[0] == user and not old.startswith("#"):
            if not existed:
                lines.append(line)
            existed = True
        else:
            lines.append(old)
    if not existed:
        lines.append(line)
    write_lines(path, lines)
    return existed


def remove_user(path: Path, user: str) -> bool:
    """Drop every line of ``user``; returns whether there was one."""
    lines = read_lines(path)
    kept = [ln for ln in lines if ln.startswith("#") or ln.partition(":")[0] != user]
    if len(kept) == len(lines):
        return False
    write_lines(path, kept)
    return True


def read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def write_lines(path: Path, lines: list[str]) -> None:
    """Atomic replace, so a running registry never reads half a file; mode 0600 for new files."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write("".join(f"{ln}\n" for ln in lines))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
