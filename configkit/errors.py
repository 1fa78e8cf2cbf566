"""The one config error: every message is ``[SOURCE: ]KEY: what is wrong``."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is missing or wrong. ``problems`` are ``(key, message)`` pairs (dotted keys,
    ``[i]`` for list items); ``source`` is the file or environment variable they came from, if known."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems if problems is not None else [("", message)]
        self.sources: list[str | None] = [None] * len(self.problems)

    @classmethod
    def of(cls, problems: list[tuple[str, str]]) -> ConfigError:
        return cls("\n".join(join_message(key, message) for key, message in problems), problems)

    def attributed(self, source_of: dict[str, str], default: str | None) -> ConfigError:
        """The same problems, each prefixed with where its key was set: the environment variable that set
        the key (or a section above it), else ``default`` (the file)."""
        sources = []
        for key, _ in self.problems:
            covering = [k for k in source_of if k == key or key.startswith((k + ".", k + "["))]
            sources.append(source_of[max(covering, key=len)] if covering else default)
        error = ConfigError("\n".join(
            f"{source}: {join_message(key, message)}" if source else join_message(key, message)
            for source, (key, message) in zip(sources, self.problems, strict=True)
        ), self.problems)
        error.sources = sources
        return error


class Invalid(ValueError):
    """Raised by a section's validators: ``message`` about ``key`` (relative to the value checked: a
    field name, ``[i]``, ``a.b``; empty for the value itself)."""

    def __init__(self, message: str, key: str = "", more: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key = key
        self.problems = [(key, message), *(more or [])]  # (key, message) pairs when there are several


def join_key(base: str, key: str | int) -> str:
    """``http`` + ``tls`` -> ``http.tls``; ``rules`` + 0 -> ``rules[0]``; ``a`` + ``[1].b`` -> ``a[1].b``."""
    if isinstance(key, int):
        return f"{base}[{key}]"
    if not key:
        return base
    if not base or key.startswith("["):
        return base + key
    return f"{base}.{key}"


def join_message(key: str, message: str) -> str:
    return f"{key}: {message}" if key else message
