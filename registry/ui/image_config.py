"""An image's config blob as the web UI and ``docker search`` show it, read defensively.

The config is whatever the pusher uploaded: the registry checks its digest, not its shape.  One config
with ``"config": ["x"]`` (or labels as a list, a number for ``Env``) made every page and search that
summarised it answer 500, for everyone who could see the repository.  So every field is read for the
type the image spec gives it; a field of another type is left out and named in ``problems``, which the
page shows: what is malformed is rendered as malformed, and the rest of the image still shows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_SHOWN = 1000  # list entries (Env, history...) kept: a config may be megabytes of them


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    created: str
    command: str  # ``created_by``, else the comment
    empty_layer: bool


@dataclass(frozen=True, slots=True)
class ImageConfig:
    os: str = ""
    architecture: str = ""
    variant: str = ""
    created: str | None = None
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    history: tuple[HistoryEntry, ...] = ()
    problems: tuple[str, ...] = ()  # what was of the wrong type, e.g. "config.Labels is not an object"

    @property
    def platform(self) -> str:
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)


class _Reader:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def object(self, parent: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
        value = parent.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problems.append(f"{where}{key} is not an object")
            return {}
        return value

    def text(self, parent: Mapping[str, Any], key: str, where: str) -> str:
        value = parent.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            self.problems.append(f"{where}{key} is not a string")
            return ""
        return value

    def texts(self, parent: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
        """A list of strings (a lone string counts as a list of one, as Docker writes some commands)."""
        value = parent.get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.problems.append(f"{where}{key} is not a list of strings")
            return ()
        return tuple(value[:MAX_SHOWN])

    def labels(self, parent: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
        value = self.object(parent, key, where)
        if not all(isinstance(v, str) for v in value.values()):
            self.problems.append(f"{where}{key} has values that are not strings")
        return {k: v for k, v in list(value.items())[:MAX_SHOWN] if isinstance(v, str)}

    def history(self, parent: Mapping[str, Any]) -> tuple[HistoryEntry, ...]:
        value = parent.get("history")
        if value is None:
            return ()
        if not isinstance(value, list):
            self.problems.append("history is not a list")
            return ()
        entries = []
        for number, item in enumerate(value[:MAX_SHOWN]):
            if not isinstance(item, dict):
                self.problems.append(f"history[{number}] is not an object")
                continue
            where = f"history[{number}]."
            command = self.text(item, "created_by", where) or self.text(item, "comment", where)
            empty = item.get("empty_layer")
            entries.append(HistoryEntry(self.text(item, "created", where), command, empty is True))
        return tuple(entries)


def read_config(doc: Any) -> ImageConfig:
    """The config ``doc`` (parsed JSON, anything at all) as the UI shows it; never raises."""
    if not isinstance(doc, dict):
        return ImageConfig(problems=("the config is not a JSON object",))
    read = _Reader()
    config = read.object(doc, "config", "")
    created = read.text(doc, "created", "")
    image = ImageConfig(
        os=read.text(doc, "os", ""),
        architecture=read.text(doc, "architecture", ""),
        variant=read.text(doc, "variant", ""),
        created=created or None,
        entrypoint=read.texts(config, "Entrypoint", "config."),
        cmd=read.texts(config, "Cmd", "config."),
        working_dir=read.text(config, "WorkingDir", "config."),
        user=read.text(config, "User", "config."),
        exposed_ports=tuple(sorted(read.object(config, "ExposedPorts", "config.")))[:MAX_SHOWN],
        env=read.texts(config, "Env", "config."),
        labels=read.labels(config, "Labels", "config."),
        history=read.history(doc),
    )
    return dataclasses.replace(image, problems=tuple(read.problems)) if read.problems else image
