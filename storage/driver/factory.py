"""Builds the storage driver named by the config's ``storage`` section."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from configkit import ConfigError
from storage.driver.filesystem import FilesystemDriver, FilesystemParameters
from storage.driver.interface import StorageDriver
from storage.driver.s3_config import S3Parameters

Parameters = FilesystemParameters | S3Parameters | Mapping[str, Any]  # checked settings or the raw section


def build_driver(kind: str, parameters: Parameters, redirect: bool = True) -> StorageDriver:
    """Raise ConfigError naming the key when a parameter is wrong."""
    if kind == "filesystem":
        fs = FilesystemParameters.parse(parameters, "storage.filesystem")
        return FilesystemDriver(fs.rootdirectory, fsync=fs.fsync, directwrites=fs.directwrites)
    if kind == "s3":
        from storage.driver.s3 import S3Driver  # boto3 (~9 MiB of a process) only for S3

        return S3Driver.from_parameters(parameters, redirect=redirect)
    raise ConfigError(f"storage.{kind}: driver not available")
