"""The distribution spec's grammar: repository names and tags."""

from __future__ import annotations

import pytest

from registry.errors import RegistryError
from registry.names import check_name, check_tag


@pytest.mark.parametrize("name", ["a", "team/app", "a.b_c__d-e/f--g", "x" * 255, "0/1/2/3"])
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "a/", "/a", "a//b", "..", "a/../b", "a/./b", "_a", "a_", "a-",
                                  "a___b", "a/.b", "x" * 256, "a%2eb", "a b", "a\x00b"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(RegistryError) as e:
        check_name(name)
    assert e.value.code == "NAME_INVALID"


def test_tags() -> None:
    assert check_tag("v1.0_rc-1") == "v1.0_rc-1"
    assert check_tag("A" * 128)
    for bad in ("", ".a", "-a", "a" * 129, "a/b", "a:b"):
        with pytest.raises(RegistryError):
            check_tag(bad)
