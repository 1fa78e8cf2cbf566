"""Digests: parsing, hashing, and hash states saved between upload requests."""

from __future__ import annotations

import hashlib

import pytest

from registry.errors import RegistryError
from registry.names import digest_param
from storage.digests import InvalidDigest, OneShotHasher, digest_bytes, new_hasher, parse_digest, restore_hasher


def test_digests() -> None:
    hex_ = hashlib.sha256(b"x").hexdigest()
    assert str(parse_digest(f"sha256:{hex_}")) == f"sha256:{hex_}"
    for bad in ("sha256:" + hex_.upper(), "sha256:" + hex_[:-1], "md5:" + "0" * 32, "sha256", "", ":abc",
                "sha512:" + hex_):
        with pytest.raises(InvalidDigest):
            parse_digest(bad)
    with pytest.raises(RegistryError) as e:
        digest_param("nope")
    assert e.value.code == "DIGEST_INVALID"
    assert digest_bytes(b"x").hex == hex_
    assert digest_bytes(b"x", "sha512").hex == hashlib.sha512(b"x").hexdigest()


def test_hash_state_round_trip() -> None:
    hasher = new_hasher("sha256")
    hasher.update(b"first half ")
    resumed = restore_hasher("sha256", hasher.serialize())
    resumed.update(b"second half")
    assert resumed.finalize() == hashlib.sha256(b"first half second half").hexdigest()


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_one_shot_and_resumable_hashers_agree(algorithm: str) -> None:
    pieces = [b"a" * 70_000, b"b" * 3, b""]
    one_shot, resumable = OneShotHasher(algorithm), new_hasher(algorithm)
    for piece in pieces:
        one_shot.update(piece)
        resumable.update(piece)
    assert one_shot.finalize() == resumable.finalize() == hashlib.new(algorithm, b"a" * 70_000 + b"bbb").hexdigest()
