"""Storage drivers: bytes under keys, on a filesystem or in an S3 bucket.

``interface`` is the contract, ``base`` what every driver does alike (path validation, generic walk),
``filesystem`` and ``s3`` the backends (``s3_config`` the ``storage.s3`` parameters), ``factory`` builds
the one the config names.  The registry's stores (``storage.blobs`` ...) use only the interface.
"""

from storage.driver.interface import (
    FileInfo,
    FileWriter,
    InvalidOffset,
    KeyPage,
    PathNotFound,
    StorageDriver,
    StorageError,
    StorageUnavailable,
)

__all__ = ["FileInfo", "FileWriter", "InvalidOffset", "KeyPage", "PathNotFound", "StorageDriver", "StorageError",
           "StorageUnavailable"]
