"""Reading a config file: YAML, then the environment overrides, then the typed model."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from configkit.environment import apply_environment
from configkit.errors import ConfigError
from configkit.section import Section

S = TypeVar("S", bound=Section)


def load_file(model: type[S], path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> S:
    """``model`` from the YAML file at ``path`` (None: no file) and ``environ``; each error names the
    key and where it was set (``config.yml: http.addr: ...``, ``REGISTRY_HTTP_ADDR: http.addr: ...``)."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from e
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        raw = loaded
    origins = apply_environment(raw, environ, model)
    try:
        return model.parse(raw)
    except ConfigError as e:
        raise e.attributed(origins, None if path is None else str(path)) from None
