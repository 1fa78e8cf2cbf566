"""HTTP byte ranges: ``Range`` on blob GETs and ``Content-Range`` on upload PATCHes."""

from __future__ import annotations

import re

# offsets are int64 (19 digits at most): longer numbers are malformed, not a 500 from int()
RANGE_RE = re.compile(r"bytes=(\d{0,19})-(\d{0,19})")
CONTENT_RANGE_RE = re.compile(r"(?:bytes[= ])?(\d{1,19})-(\d{1,19})(?:/(?:\d{1,19}|\*))?")


class Unsatisfiable(Exception):
    """The range lies outside the object (416)."""


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) for a single ``bytes=`` range; None means "ignore, send everything"."""
    match = RANGE_RE.fullmatch(header.strip())
    if match is None:
        return None  # multiple or malformed ranges: RFC 9110 allows answering with the whole body
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable(header)
        return max(0, size - suffix), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size or end < start:
        raise Unsatisfiable(header)
    return start, min(end, size - 1)


def parse_content_range(header: str) -> tuple[int, int] | None:
    """(start, end inclusive) of an upload chunk; accepts ``a-b``, ``bytes=a-b`` and ``bytes a-b/n``."""
    match = CONTENT_RANGE_RE.fullmatch(header.strip())
    if match is None:
        return None
    start, end = int(match.group(1)), int(match.group(2))
    return (start, end) if end >= start else None


def upload_range(size: int) -> str:
    """The ``Range`` header of an upload status: the bytes received so far (Distribution's form)."""
    return f"0-{max(size - 1, 0)}"
