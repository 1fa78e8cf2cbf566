"""Small readers for the ``auth`` config section: each error names the offending key."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

DURATION_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def mapping(raw: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    """The mapping at dotted ``key`` inside ``raw`` (empty if absent), refusing unknown sub-keys."""
    return checked(raw.get(key.rsplit(".", 1)[-1]), key, allowed)


def checked(value: Any, key: str, allowed: tuple[str, ...] | None) -> Mapping[str, Any]:
    """``value`` as a mapping (empty if None); ``allowed`` None accepts any sub-key."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{key}: expected a mapping, got {type(value).__name__}")
    for sub in value:
        if allowed is not None and sub not in allowed:
            raise ValueError(f"{key}.{sub}: unknown key (known: {', '.join(allowed)})")
    return value


def text(value: Any, key: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float) or str(value) == "":
        raise ValueError(f"{key}: expected a non-empty string, got {value!r}")
    return str(value)


def texts(value: Any, key: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise ValueError(f"{key}: expected a list of strings")
    return [text(v, key) for v in value]


def flag(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"{key}: expected true or false, got {value!r}")


def existing_file(value: Any, key: str) -> Path:
    path = Path(text(value, key))
    if not path.is_file():
        raise ValueError(f"{key}: file not found: {path}")
    return path


def seconds(value: Any, key: str) -> float:
    """Go-style durations (``5m``, ``720h``, ``1h30m``) or plain seconds; must be positive."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        total = float(value)
    else:
        total, number, rest = 0.0, "", text(value, key).strip()
        while rest:
            if rest[0].isdigit() or rest[0] == ".":
                number, rest = number + rest[0], rest[1:]
                continue
            unit = rest[:2] if rest[:2] in DURATION_UNITS else rest[0]
            if unit not in DURATION_UNITS or not number:
                raise ValueError(f"{key}: invalid duration {value!r}")
            try:
                total += float(number) * DURATION_UNITS[unit]
            except ValueError as e:
                raise ValueError(f"{key}: invalid duration {value!r}") from e
            number, rest = "", rest[len(unit):]
        if number:
            raise ValueError(f"{key}: invalid duration {value!r} (missing unit)")
    if total <= 0:
        raise ValueError(f"{key}: expected a positive duration, got {value!r}")
    return total
