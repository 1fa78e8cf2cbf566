"""``Section``: a config mapping as a pydantic model that refuses unknown keys, and the translation of
pydantic's errors into the one format (``auth.token.realm: expected a non-empty string, got None``)."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, TypeAdapter, ValidationError, model_validator
from pydantic.fields import FieldInfo

from configkit.errors import ConfigError, Invalid, join_key
from configkit.types import shown


class Section(BaseModel):
    """One mapping of the config file. Fields are its keys, with their types and defaults; keys that are
    not fields are refused, except ``IGNORED`` ones (Distribution's, accepted and not read)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    KEY: ClassVar[str] = ""  # where the section sits in the config file, for errors when parsed alone
    IGNORED: ClassVar[tuple[str, ...]] = ()
    UNKNOWN: ClassVar[str] = "unknown key"  # what an unknown key is told

    @model_validator(mode="before")
    @classmethod
    def _prepare(cls, raw: Any) -> Any:
        """Drop ``IGNORED`` keys, and empty values of keys that hold a mapping or a list (a YAML key
        whose contents are all commented out) so that they get their defaults."""
        if not isinstance(raw, Mapping):
            return raw
        return {k: v for k, v in raw.items() if k not in cls.IGNORED and not (v is None and k in cls._containers())}

    @classmethod
    def _containers(cls) -> frozenset[str]:
        return frozenset(name for name, info in cls.model_fields.items()
                         if kind_of(info.annotation)[0] in ("section", "map", "list") and info.default is not None)

    @classmethod
    def parse(cls, raw: Any, key: str | None = None) -> Self:
        """``raw`` (a mapping, None for empty, or an instance already checked) as this section, or a
        ConfigError naming every bad key below ``key`` (default: the section's own place)."""
        try:
            return cls.model_validate({} if raw is None else raw)
        except ValidationError as e:
            raise ConfigError.of(problems(cls, e, cls.KEY if key is None else key)) from None


def convert(type_: Any, value: Any, key: str) -> Any:
    """One value checked as ``type_`` (e.g. ``Duration``) outside a section; errors name ``key``."""
    try:
        return TypeAdapter(type_).validate_python(value)
    except ValidationError as e:
        raise ConfigError.of(problems(None, e, key)) from None


@dataclasses.dataclass(frozen=True)
class Compiled(PlainValidator):
    """A PlainValidator that remembers the structure it checks, for the environment overrides."""

    schema: Any = None


def compiled(schema: Any, build: Callable[[Any], Any]) -> Any:
    """A key whose value is checked as ``schema`` (a section, a list of sections...) and then made into a
    domain object by ``build`` (e.g. compiled retention policies). Errors name the key below it."""
    adapter = TypeAdapter(schema)

    def check(value: Any) -> Any:
        try:
            checked = adapter.validate_python(value)
        except ValidationError as e:
            (key, message), *more = problems(schema, e, "")
            raise Invalid(message, key, more) from None
        return build(checked)

    return Compiled(check, schema=schema)


def problems(root: Any, error: ValidationError, base: str) -> list[tuple[str, str]]:
    """``(key, message)`` for each of pydantic's errors; ``root`` is the type validated (None: a scalar)."""
    found = []
    for item in error.errors():
        loc = item["loc"]
        key = base
        for part in loc:
            key = join_key(key, part)
        kind, ctx = item["type"], item.get("ctx") or {}
        cause = ctx.get("error")
        if isinstance(cause, Invalid):
            found.extend((join_key(key, sub), message) for sub, message in cause.problems)
            continue
        if kind == "value_error" and cause is not None:
            message = str(cause)
        elif kind == "extra_forbidden":
            owner = section_at(root, loc[:-1])
            known = ", ".join(owner.model_fields) if owner else ""
            message = f"{owner.UNKNOWN if owner else 'unknown key'}" + (f" (known: {known})" if known else "")
        elif kind == "missing":
            message = "required"
        elif kind in ("model_type", "model_attributes_type", "dict_type", "mapping_type"):
            message = f"expected a mapping, got {shown(item['input'])}"
        elif kind in ("list_type", "tuple_type"):
            message = f"expected a list, got {shown(item['input'])}"
        else:
            message = item["msg"]
        found.append((key, message))
    return found


def section_at(root: Any, loc: tuple[str | int, ...]) -> type[Section] | None:
    """The section class at ``loc`` below ``root`` (None if the path leads elsewhere)."""
    annotation: Any = root
    for part in loc:
        kind, inner = kind_of(annotation)
        if kind == "section" and isinstance(part, str) and part in inner.model_fields:
            annotation = field_type(inner.model_fields[part])
        elif kind in ("map", "list"):
            annotation = inner
        else:
            return None
    kind, inner = kind_of(annotation)
    return inner if kind == "section" else None


def field_type(info: FieldInfo) -> Any:
    """A field's annotation with the metadata pydantic keeps apart (validators, ``Compiled``)."""
    return typing.Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


def kind_of(annotation: Any) -> tuple[str, Any]:
    """How a field's type is addressed from the environment: ``("section", cls)``, ``("map", value
    type)``, ``("list", item type)``, ``("any", None)`` or ``("leaf", None)``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            args = typing.get_args(annotation)
            schemas = [m.schema for m in args[1:] if isinstance(m, Compiled)]
            annotation = schemas[0] if schemas else args[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return "leaf", None
            annotation = args[0]
        else:
            break
    if annotation is Any:
        return "any", None
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return "section", annotation
    if origin in (dict, Mapping):
        return "map", typing.get_args(annotation)[1]
    if origin in (list, tuple):
        return "list", typing.get_args(annotation)[0]
    return "leaf", None


def required() -> Any:
    """Default of a required key whose type's own message says what is missing (``auth.token.issuer:
    expected a non-empty string, got None``) instead of a bare "required"."""
    return Field(None, validate_default=True)
