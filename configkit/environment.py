"""Distribution's environment overrides: ``REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/x`` sets
``storage.filesystem.rootdirectory``.

The rules are Distribution's (configuration/parser.go): the name after ``REGISTRY_`` is split at
``_``; each part names a key of a section (case-insensitively), a key of a free mapping (an existing one
case-insensitively, else lower-cased), or an item of a list by number (the next free number appends);
the value is read as YAML. Variables apply in lexical order, so ``REGISTRY_STORAGE`` (a whole section)
comes before ``REGISTRY_STORAGE_S3_BUCKET``. Unlike Distribution, a variable naming no key is an
error, as an unknown key in the file is: a typo must not silently move the data somewhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from configkit.errors import ConfigError, join_key
from configkit.section import Section, field_type, kind_of

ENV_PREFIX = "REGISTRY_"


def apply_environment(raw: dict[str, Any], environ: Mapping[str, str], root: type[Section]) -> dict[str, str]:
    """Apply every ``REGISTRY_*`` variable to ``raw`` in place; returns which key each one set."""
    origins: dict[str, str] = {}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX:
            continue
        try:
            value = yaml.safe_load(environ[name])
        except yaml.YAMLError:
            value = environ[name]
        origins[overlay(raw, root, name[len(ENV_PREFIX):].split("_"), value, name)] = name
    return origins


def overlay(raw: dict[str, Any], root: type[Section], parts: list[str], value: Any, name: str) -> str:
    node: Any = raw
    kind, inner = "section", root
    path = ""
    for i, part in enumerate(parts):
        if not part:
            raise ConfigError(f"{name}: empty key in the variable name")
        key, (kind, inner) = step(node, kind, inner, part, path, name)
        path = join_key(path, key)
        if i == len(parts) - 1:
            assign(node, key, value)
            return path
        child = node[key] if isinstance(node, dict) and key in node or isinstance(key, int) and key < len(node) \
            else None
        container = list if kind == "list" else dict
        if not isinstance(child, container):
            child = container()
            assign(node, key, child)
        node = child
    return path


def step(node: Any, kind: str, inner: Any, part: str, path: str, name: str) -> tuple[str | int, tuple[str, Any]]:
    """The key ``part`` names in ``node`` (of the given kind), and the kind of what is below it."""
    if kind == "section":
        for field, info in inner.model_fields.items():
            if field.upper() == part:
                return field, kind_of(field_type(info))
        for ignored in inner.IGNORED:
            if ignored.upper() == part:
                return ignored, ("any", None)
        raise ConfigError(f"{name}: {join_key(path, part.lower())}: {inner.UNKNOWN} "
                          f"(known: {', '.join(inner.model_fields)})")
    if kind in ("map", "any"):
        for existing in node:
            if str(existing).upper() == part:
                return existing, (kind_of(inner) if kind == "map" else ("any", None))
        return part.lower(), (kind_of(inner) if kind == "map" else ("any", None))
    if kind == "list":
        if not part.isdigit() or int(part) > len(node):
            raise ConfigError(f"{name}: {path}: {part} is not the number of an item (0..{len(node)})")
        return int(part), kind_of(inner)
    raise ConfigError(f"{name}: {path}: a single value, it has no key {part.lower()!r}")


def assign(node: Any, key: str | int, value: Any) -> None:
    if isinstance(key, int) and key == len(node):
        node.append(value)
    else:
        node[key] = value
