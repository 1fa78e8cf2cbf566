"""The writing methods of the stores and the driver, as the write-path tests look for them: by the
attribute a store is reached by (``registry.blobs``, ``self.registry.tags``), its class and its methods.

``ReferrersIndex.catch_up`` writes too, but only derived data on reads (the index indexes manifests
someone else stored): ``SELF_REPAIR``, allowed anywhere."""

from __future__ import annotations

from storage.blobs import BlobStore
from storage.driver.interface import StorageDriver
from storage.manifests import ManifestStore, TagStore
from storage.referrers import ReferrersIndex
from storage.uploads import UploadStore
from storage.usage import UsageLedger

WRITING: dict[str, tuple[type, frozenset[str]]] = {
    "blobs": (BlobStore, frozenset({"link", "unlink", "relied_on", "put"})),
    "manifests": (ManifestStore, frozenset({"put", "delete", "restore", "relied_on"})),
    "tags": (TagStore, frozenset({"tag", "untag", "restore"})),
    "uploads": (UploadStore, frozenset({"create", "append", "commit", "cancel"})),
    "referrers": (ReferrersIndex, frozenset({"add", "remove"})),
    "ledger": (UsageLedger, frozenset({"add", "reserve", "withdraw", "mark", "uncount", "hold", "release", "reconcile"})),
    "driver": (StorageDriver, frozenset({"put_content", "put_contents", "writer", "delete", "delete_file", "move",
                                         "delete_objects"})),
}
STORES = ("blobs", "manifests", "tags", "uploads", "referrers")  # what holds a repository's content
SELF_REPAIR = ((ReferrersIndex, "catch_up"),)
