"""The distribution spec's grammar for repository names, tags and references."""

from __future__ import annotations

import re

from registry.errors import RegistryError
from storage.digests import Digest, InvalidDigest, parse_digest

NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{NAME_COMPONENT}(?:/{NAME_COMPONENT})*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
MAX_NAME_LENGTH = 255


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid repository name, else raise NAME_INVALID."""
    if len(name) > MAX_NAME_LENGTH:
        raise RegistryError("NAME_INVALID", f"repository name longer than {MAX_NAME_LENGTH} characters")
    if not NAME_RE.fullmatch(name):
        raise RegistryError("NAME_INVALID", "invalid repository name", detail={"name": name})
    return name


def is_tag(reference: str) -> bool:
    return TAG_RE.fullmatch(reference) is not None


def check_tag(tag: str) -> str:
    if not is_tag(tag):
        raise RegistryError("TAG_INVALID", "invalid tag", detail={"tag": tag})
    return tag


def digest_param(text: str, code: str = "DIGEST_INVALID") -> Digest:
    """A digest from the URL or query; malformed or unsupported ones raise ``code``."""
    try:
        return parse_digest(text)
    except InvalidDigest as e:
        raise RegistryError(code, str(e), detail={"digest": text}) from None
