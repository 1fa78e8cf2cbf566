"""One mechanism for every config section: typed sections (pydantic models), Distribution's
``REGISTRY_*`` environment overrides, and one error format that names the key.

A leaf package: ``registry/``, ``storage/`` and ``auth/`` each describe their own sections with it and
it imports none of them, so the imports keep running registry -> storage, registry -> auth, and from
all three to here. (In ``storage/`` or ``auth/`` it would make the other import sideways.)
"""

from configkit.environment import ENV_PREFIX, apply_environment
from configkit.errors import ConfigError, Invalid
from configkit.loading import load_file
from configkit.section import Section, compiled, convert, required
from configkit.types import (
    Addr,
    Bool,
    Duration,
    Headers,
    Patterns,
    PositiveDuration,
    Str,
    Strings,
    Text,
    Texts,
    choice,
    duration,
    existing_file,
    header_pairs,
    integer,
)

__all__ = [
    "ENV_PREFIX", "Addr", "Bool", "ConfigError", "Duration", "Headers", "Invalid", "Patterns", "PositiveDuration",
    "Section", "Str", "Strings", "Text", "Texts", "apply_environment", "choice", "compiled", "convert", "duration",
    "existing_file", "header_pairs", "integer", "load_file", "required",
]
