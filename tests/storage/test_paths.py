"""The storage layout, pinned object by object against Distribution's (``registry/storage/paths.go`` and the
table in its ``paths_test.go``, whose names and values the rows below reuse), so that Moorage and
``registry:2`` keep serving one data directory or bucket.  Rows marked Moorage are our own additions,
in ``_``-prefixed directories Distribution ignores."""

from __future__ import annotations

import pytest

from storage import paths
from storage.digests import Digest, parse_digest

NAME = "foo/bar"
TAG = "thetag"
UPLOAD = "asdf-asdf-asdf-adsf"
HEX = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
REVISION = parse_digest(f"sha256:{HEX}")
SUBJECT = Digest("sha512", "12" * 64)
REPO = "/docker/registry/v2/repositories/foo/bar"
BLOBS = "/docker/registry/v2/blobs"
ROOT = "/docker/registry/v2"

LAYOUT = [
    # Distribution's pathSpec            Moorage's path                                    expected path
    ("repositoriesRootPathSpec", paths.REPOSITORIES, "/docker/registry/v2/repositories"),
    ("manifestsPathSpec", paths.manifests_dir(NAME), f"{REPO}/_manifests"),
    ("manifestRevisionsPathSpec", paths.revisions_dir(NAME), f"{REPO}/_manifests/revisions"),
    ("manifestRevisionPathSpec", paths.revision_dir(NAME, REVISION), f"{REPO}/_manifests/revisions/sha256/{HEX}"),
    ("manifestRevisionLinkPathSpec", paths.revision_link(NAME, REVISION),
     f"{REPO}/_manifests/revisions/sha256/{HEX}/link"),
    ("manifestTagsPathSpec", paths.tags_dir(NAME), f"{REPO}/_manifests/tags"),
    ("manifestTagPathSpec", paths.tag_dir(NAME, TAG), f"{REPO}/_manifests/tags/thetag"),
    ("manifestTagCurrentPathSpec", paths.tag_current_link(NAME, TAG), f"{REPO}/_manifests/tags/thetag/current/link"),
    ("manifestTagIndexPathSpec", paths.tag_index_dir(NAME, TAG), f"{REPO}/_manifests/tags/thetag/index"),
    ("manifestTagIndexEntryLinkPathSpec", paths.tag_index_link(NAME, TAG, REVISION),
     f"{REPO}/_manifests/tags/thetag/index/sha256/{HEX}/link"),
    ("layersPathSpec", paths.layers_dir(NAME), f"{REPO}/_layers"),
    ("layerLinkPathSpec", paths.layer_link(NAME, REVISION), f"{REPO}/_layers/sha256/{HEX}/link"),
    ("uploadDataPathSpec", paths.upload_data(NAME, UPLOAD), f"{REPO}/_uploads/asdf-asdf-asdf-adsf/data"),
    ("uploadStartedAtPathSpec", paths.upload_started_at(NAME, UPLOAD),
     f"{REPO}/_uploads/asdf-asdf-asdf-adsf/startedat"),
    # Distribution's hashstates/<algorithm>/<offset> holds Go-encoded states: ours go beside them
    ("uploadHashStatePathSpec (Moorage's encoding)", paths.upload_hashstate(NAME, UPLOAD, "sha256", 42),
     f"{REPO}/_uploads/asdf-asdf-asdf-adsf/hashstates/sha256-moorage/42"),
    ("blobsPathSpec", paths.BLOBS, BLOBS),
    ("blobPathSpec", paths.blob_dir(REVISION), f"{BLOBS}/sha256/ab/{HEX}"),
    ("blobDataPathSpec", paths.blob_data(REVISION), f"{BLOBS}/sha256/ab/{HEX}/data"),
    # Moorage's own, in directories Distribution skips
    ("referrers index of a subject (Moorage)", paths.referrers_dir(NAME, SUBJECT),
     f"{REPO}/_referrers/sha512/{SUBJECT.hex}"),
    ("referrer descriptor (Moorage)", paths.referrer_descriptor(NAME, SUBJECT, REVISION),
     f"{REPO}/_referrers/sha512/{SUBJECT.hex}/sha256/{HEX}/descriptor"),
    ("revisions indexed for referrers (Moorage)", paths.referrers_scanned(NAME), f"{REPO}/_referrers/_scanned"),
    ("what earlier versions' GC left beside a blob (Moorage)", paths.legacy_markers(paths.blob_dir(REVISION)),
     (f"{BLOBS}/sha256/ab/{HEX}/lastused", f"{BLOBS}/sha256/ab/{HEX}/condemned")),
    ("a GC run's batch marker and journal entry (Moorage)",
     (paths.gc_condemned("t0k", "00000001"), paths.gc_relied("t0k", "e1")),
     (f"{ROOT}/_moorage/gc/t0k/condemned/00000001", f"{ROOT}/_moorage/gc/t0k/relied/e1")),
    ("mirror tag check time (Moorage)", paths.mirror_tag_checked(NAME, TAG), f"{REPO}/_mirror/tags/thetag/checked"),
]


@pytest.mark.parametrize(("spec", "path", "expected"), LAYOUT, ids=[row[0] for row in LAYOUT])
def test_layout_matches_distribution(spec: str, path: str, expected: str) -> None:
    assert path == expected



def test_blob_of_reads_a_blob_directory_back() -> None:
    assert paths.blob_of(paths.blob_dir(REVISION)) == REVISION
    assert paths.blob_of(paths.blob_dir(SUBJECT)) == SUBJECT
    assert paths.blob_of("/sha256/ab") is None  # too short to be one
    assert paths.blob_of(f"{BLOBS}/sha256/ab/not-hex") is None


def test_moorage_state_outside_distributions_directories() -> None:
    """GC's lease and the usage ledger live below ``_moorage``, which Distribution never reads."""
    assert paths.lease("gc") == "/docker/registry/v2/_moorage/leases/gc"
    assert paths.usage_base("team") == "/docker/registry/v2/_moorage/usage/team/base"
    assert paths.usage_log_entry("team", "1.0-5-x") == "/docker/registry/v2/_moorage/usage/team/log/1.0-5-x"
    assert paths.usage_marker("team", REVISION) == f"/docker/registry/v2/_moorage/usage/team/blobs/sha256/{HEX}"
