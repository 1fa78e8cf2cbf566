"""HTTP byte ranges: ``Range`` of blob GETs, ``Content-Range`` of upload PATCHes."""

from __future__ import annotations

import pytest

from registry.http.ranges import Unsatisfiable, parse_content_range, parse_range, upload_range


def test_ranges() -> None:
    assert parse_range("bytes=0-9", 100) == (0, 9)
    assert parse_range("bytes=90-200", 100) == (90, 99)
    assert parse_range("bytes=-10", 100) == (90, 99)
    assert parse_range("bytes=50-", 100) == (50, 99)
    assert parse_range("bytes=0-1,5-6", 100) is None
    assert parse_range("items=0-1", 100) is None
    for bad in ("bytes=100-", "bytes=5-4", "bytes=-0"):
        with pytest.raises(Unsatisfiable):
            parse_range(bad, 100)
    assert parse_content_range("0-99") == (0, 99)
    assert parse_content_range("bytes=100-199") == (100, 199)
    assert parse_content_range("bytes 0-9/10") == (0, 9)
    assert parse_content_range("9-0") is None
    assert parse_content_range("x") is None
    assert upload_range(0) == "0-0" and upload_range(10) == "0-9"
