"""Builds the storage driver named by the config's ``storage`` section."""

from __future__ import annotations

from typing import Any

from storage.driver.filesystem import FilesystemDriver
from storage.driver.interface import StorageDriver
from storage.driver.s3 import S3Driver


def build_driver(kind: str, parameters: dict[str, Any], redirect: bool = True) -> StorageDriver:
    """Raise ValueError naming the key when a parameter is wrong."""
    if kind == "filesystem":
        fsync = parameters.get("fsync", True)
        if not isinstance(fsync, bool):
            raise ValueError("storage.filesystem.fsync: expected true or false")
        return FilesystemDriver(str(parameters["rootdirectory"]), fsync=fsync)
    if kind == "s3":
        return S3Driver.from_parameters(parameters, redirect=redirect)
    raise ValueError(f"storage.{kind}: driver not available")
