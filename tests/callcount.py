"""Counting calls to a driver's methods (or any object's), so a test can say how much of the tree a request read."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest


def counted(calls: Counter[str], name: str, method: Callable[..., object]) -> Callable[..., object]:
    """``method``, adding one to ``calls[name]`` per call."""
    def call(*args: object, **kwargs: object) -> object:
        calls[name] += 1
        return method(*args, **kwargs)
    return call


def count_calls(target: object, names: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """The calls to ``target``'s methods ``names`` from now on (until the test ends)."""
    calls: Counter[str] = Counter()
    for name in names:
        monkeypatch.setattr(target, name, counted(calls, name, getattr(target, name)))
    return calls
