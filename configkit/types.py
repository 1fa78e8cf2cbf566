"""Value types of config keys. Values come from YAML or, as strings, from ``REGISTRY_*`` variables
(read as YAML too, so quoted scalars are the only strings that need converting). Each validator says
what it expected and what it got; the section mechanism adds the key."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, PlainValidator

from configkit.errors import ConfigError, Invalid

HEADER_NAME = re.compile(r"[A-Za-z0-9-]+")
DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def shown(value: Any) -> str:
    """A bad value as the message shows it: scalars as written, containers by kind."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def to_string(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise Invalid(f"expected a string, got {shown(value)}")
    return str(value)


def to_text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float) or str(value) == "":
        raise Invalid(f"expected a non-empty string, got {shown(value)}")
    return str(value)


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise Invalid(f"expected true or false, got {shown(value)}")


def listed(item: Callable[[Any], str]) -> Callable[[Any], list[str]]:
    """A list of ``item``s; a single scalar is a list of one (``who: anonymous``)."""

    def check(value: Any) -> list[str]:
        if isinstance(value, str):
            return [item(value)]
        if not isinstance(value, list):
            raise Invalid(f"expected a list of strings, got {shown(value)}")
        out = []
        for i, v in enumerate(value):
            try:
                out.append(item(v))
            except Invalid as e:
                raise Invalid(e.message, f"[{i}]") from None
        return out

    return check


def duration(positive: bool = False, days: bool = True) -> Any:
    """Seconds, from Go-style durations (``168h``, ``90m``, ``1h30m``, ``250ms``; ``30d`` unless ``days``
    is off) or plain numbers; never negative, and above 0 when ``positive``."""
    units = DURATION_UNITS if days else {k: v for k, v in DURATION_UNITS.items() if k != "d"}

    def check(value: Any) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            total = float(value)
        else:
            total = parse_duration(to_string(value).strip(), units, value)
        if total < 0 or (positive and total == 0):
            raise Invalid(f"expected a {'positive duration' if positive else 'duration >= 0'}, got {value!r}")
        return total

    return Annotated[float, PlainValidator(check)]


def parse_duration(text: str, units: dict[str, float], value: Any) -> float:
    total, number, i = 0.0, "", 0
    if not text:
        raise Invalid(f"invalid duration {value!r}")
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            number += ch
            i += 1
            continue
        unit = text[i : i + 2] if text[i : i + 2] in units else ch
        if unit not in units or not number:
            raise Invalid(f"invalid duration {value!r}")
        try:
            total += float(number) * units[unit]
        except ValueError:
            raise Invalid(f"invalid duration {value!r}") from None
        number = ""
        i += len(unit)
    if number:
        raise Invalid(f"invalid duration {value!r} (missing unit)")
    return total


def to_patterns(value: Any) -> list[re.Pattern[str]]:
    compiled = []
    for text in listed(to_string)(value):
        try:
            compiled.append(re.compile(text))
        except re.error as e:
            raise Invalid(f"invalid regular expression {text!r}: {e}") from None
    return compiled


def to_addr(value: Any) -> str:
    addr = to_text(value)
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise Invalid(f"expected HOST:PORT, got {addr!r}")
    return addr


def to_integer(value: Any, minimum: int, maximum: int | None = None) -> int:
    """A whole number in ``minimum..maximum`` (a numeric string too)."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"expected a whole number, got {shown(value)}")
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise Invalid(f"expected a whole number {bounds}, got {value}")
    return value


def integer(minimum: int, maximum: int | None = None) -> Any:
    return Annotated[int, PlainValidator(lambda value: to_integer(value, minimum, maximum))]


def choice(*options: str, upper: bool = False) -> Any:
    """One of ``options``, case-insensitively (stored lower-case, or upper-case with ``upper``)."""

    def check(value: Any) -> str:
        text = to_string(value)
        text = text.upper() if upper else text.lower()
        if text not in options:
            raise Invalid(f"expected one of {', '.join(options)}, got {value!r}")
        return text

    return Annotated[str, PlainValidator(check)]


Str = Annotated[str, PlainValidator(to_string)]
Text = Annotated[str, PlainValidator(to_text)]  # non-empty
Bool = Annotated[bool, PlainValidator(to_bool)]
Strings = Annotated[list[str], PlainValidator(listed(to_string))]
Texts = Annotated[list[str], PlainValidator(listed(to_text))]
Duration = duration()  # seconds
PositiveDuration = duration(positive=True)
Patterns = Annotated[list[re.Pattern[str]], PlainValidator(to_patterns)]
Addr = Annotated[str, PlainValidator(to_addr)]  # HOST:PORT


def existing_file(value: str | None, key: str) -> Path:
    """A file a key names, checked when it is opened (start-up), not when the config is read."""
    if not value:
        raise ConfigError(f"{key}: expected a non-empty string, got {value!r}")
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"{key}: file not found: {path}")
    return path


def checked_headers(headers: dict[str, list[str]]) -> dict[str, list[str]]:
    for name, values in headers.items():
        if not HEADER_NAME.fullmatch(name):
            raise Invalid("not a valid header name", name)
        if any("\r" in v or "\n" in v for v in values):
            raise Invalid("a value may not contain line breaks", name)
    return headers


def header_pairs(headers: dict[str, list[str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, values in headers.items() for value in values]


# Distribution's ``headers``: name -> list of values, e.g. ``X-Content-Type-Options: [nosniff]``
Headers = Annotated[dict[str, Strings], AfterValidator(checked_headers)]
