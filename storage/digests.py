"""Content digests (``sha256:<hex>``): parsing, and hashers whose state can be saved in storage."""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass
from typing import Protocol

import rehashes

HEX_LENGTH = {"sha256": 64, "sha512": 128}
DIGEST_RE = re.compile(r"([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")
HEX_RE = re.compile(r"[a-f0-9]+")


class Hasher(Protocol):
    def update(self, data: bytes) -> None: ...
    def finalize(self) -> str: ...


class ResumableHasher(Hasher, Protocol):
    """A hasher whose state can be saved between the requests of one upload session."""

    def serialize(self) -> bytes: ...


class OneShotHasher:
    """hashlib's hasher, for an upload whose data all comes in one request (a monolithic upload).

    It releases the GIL while it hashes, where rehashes holds it: the event loop goes on receiving the
    next pieces of a blob meanwhile. Its state cannot be saved.
    """

    __slots__ = ("_hash",)

    def __init__(self, algorithm: str) -> None:
        self._hash = hashlib.new(algorithm)

    def update(self, data: bytes) -> None:
        self._hash.update(data)

    def finalize(self) -> str:
        return self._hash.hexdigest()


HASHERS = {"sha256": rehashes.PySha256, "sha512": rehashes.PySha512}


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


class InvalidDigest(ValueError):
    """Malformed digest or unsupported algorithm."""


def parse_digest(text: str) -> Digest:
    """Parse and validate a digest: only sha256 and sha512 with lowercase hex of the right length."""
    match = DIGEST_RE.fullmatch(text)
    if match is None:
        raise InvalidDigest(f"invalid digest {text!r}")
    algorithm, hex_ = match.groups()
    if algorithm not in HEX_LENGTH:
        raise InvalidDigest(f"unsupported digest algorithm {algorithm!r}")
    if len(hex_) != HEX_LENGTH[algorithm] or not HEX_RE.fullmatch(hex_):
        raise InvalidDigest(f"invalid digest {text!r}")
    return Digest(sys.intern(algorithm), hex_)  # one "sha256" for all (GC holds every digest at once)


def new_hasher(algorithm: str) -> ResumableHasher:
    return HASHERS[algorithm]()


def restore_hasher(algorithm: str, state: bytes) -> ResumableHasher:
    return HASHERS[algorithm].deserialize(state)


def digest_bytes(data: bytes, algorithm: str = "sha256") -> Digest:
    return Digest(algorithm, hashlib.new(algorithm, data).hexdigest())
