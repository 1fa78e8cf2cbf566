"""The storage layout, identical to Distribution's (``registry/storage/paths.go``).

This module is the only place that knows where things live, so that Moorage and Distribution can serve
one data directory or bucket.  Moorage's own derived index (referrers) lives in ``_referrers`` below
the repository, a directory Distribution's catalog walk skips like every ``_``-prefixed one.

    /docker/registry/v2/
      blobs/<alg>/<hex[:2]>/<hex>/data
      repositories/<name>/
        _layers/<alg>/<hex>/link
        _manifests/revisions/<alg>/<hex>/link
        _manifests/tags/<tag>/current/link
        _manifests/tags/<tag>/index/<alg>/<hex>/link
        _uploads/<id>/data | startedat | hashstates/<alg>/<offset>
        _referrers/<subject alg>/<subject hex>/<alg>/<hex>/descriptor   (Moorage)
        _referrers/_scanned                                              (Moorage)
        _mirror/tags/<tag>/checked                                       (Moorage)
      _moorage/leases/<name>                  who runs GC now, until when (Moorage)
      _moorage/replication/<rule>/            replication executions, schedule and event queue (Moorage)
      _moorage/gc/<token>/condemned/<n>       what a running GC is deleting now (Moorage, storage.sweep)
      _moorage/gc/<token>/relied/<id>         what pushes rely on while it runs (Moorage, storage.sweep)
      blobs/<alg>/<hex[:2]>/<hex>/lastused    written by earlier versions: GC still reads its age
      _moorage/ui-sessions/<user>/<session>   web UI sessions without a database (Moorage, storage.sessions)

The walks of this tree (every repository, its tags, revisions, links, uploads; every blob) are in
``storage.tree``, built on the names below.
"""

from __future__ import annotations

from storage.digests import Digest, InvalidDigest, parse_digest

ROOT = "/docker/registry/v2"
REPOSITORIES = f"{ROOT}/repositories"
BLOBS = f"{ROOT}/blobs"
# a repository's reserved directories ("_" first: no repository name component starts with "_")
LAYERS = "_layers"
MANIFESTS = "_manifests"
UPLOADS = "_uploads"
REFERRERS = "_referrers"  # Moorage
MIRROR = "_mirror"  # Moorage
HASHSTATES = "hashstates"
# file names: a blob's bytes, a file naming a digest, an upload session's bytes and start time
BLOB_DATA = "data"
LINK = "link"
UPLOAD_DATA, UPLOAD_STARTED_AT = "data", "startedat"
TAG_CURRENT_LINK = f"current/{LINK}"  # below a tag's directory
# Distribution keeps Go-encoded hash states under hashstates/<alg>; ours are not compatible with its.
HASHSTATE_SUFFIX = "-moorage"


def blob_dir(digest: Digest) -> str:
    return f"{blobs_prefix_dir(digest.algorithm, digest.hex[:2])}/{digest.hex}"


def blob_data(digest: Digest) -> str:
    return f"{blob_dir(digest)}/{BLOB_DATA}"


def blob_of(directory: str) -> Digest | None:
    """The digest a blob directory (``.../<alg>/<hex[:2]>/<hex>``) is named by; None when it names none."""
    parts = directory.rsplit("/", 3)
    if len(parts) != 4:
        return None
    try:
        return parse_digest(f"{parts[1]}:{parts[3]}")
    except InvalidDigest:
        return None


LEGACY_MARKERS = ("lastused", "condemned")  # what earlier versions wrote beside blobs and links (GC)


def legacy_markers(directory: str) -> tuple[str, ...]:
    """The objects earlier versions' GC protocol may have left in a blob, link or tag directory."""
    return tuple(f"{directory}/{name}" for name in LEGACY_MARKERS)


MOORAGE = f"{ROOT}/_moorage"  # Moorage's own state: Distribution reads only blobs/ and repositories/


def lease(name: str) -> str:
    return f"{MOORAGE}/leases/{name}"


GC_RUNS = f"{MOORAGE}/gc"  # per garbage collection run, see storage.sweep


def gc_run(token: str) -> str:
    return f"{GC_RUNS}/{token}"


def gc_condemned_dir(token: str) -> str:
    return f"{gc_run(token)}/condemned"


def gc_condemned(token: str, batch: str) -> str:
    return f"{gc_condemned_dir(token)}/{batch}"


def gc_relied_dir(token: str) -> str:
    return f"{gc_run(token)}/relied"


def gc_relied(token: str, entry: str) -> str:
    return f"{gc_relied_dir(token)}/{entry}"


def ui_sessions(user_key: str) -> str:
    """A user's web UI sessions when there is no database (storage.sessions)."""
    return f"{MOORAGE}/ui-sessions/{user_key}"


def ui_session(user_key: str, session_key: str) -> str:
    return f"{ui_sessions(user_key)}/{session_key}"


def notification_events(endpoint: str) -> str:
    """The durable queue of a notification endpoint (registry.events.notifications.queue)."""
    return f"{MOORAGE}/notifications/{endpoint}/events"


REPLICATION = f"{MOORAGE}/replication"  # per rule, see registry.replication.executions


def replication_rule(rule: str) -> str:
    return f"{REPLICATION}/{rule}"


def replication_events(rule: str) -> str:
    """The durable queue of an event rule: the notifications' queue, consumed by replication."""
    return f"{REPLICATION}/{rule}/events"


USAGE = f"{MOORAGE}/usage"  # per namespace, see storage.usage


def usage_base(namespace: str) -> str:
    return f"{USAGE}/{namespace}/base"


def usage_log_dir(namespace: str) -> str:
    return f"{USAGE}/{namespace}/log"


def usage_log_entry(namespace: str, entry: str) -> str:
    return f"{usage_log_dir(namespace)}/{entry}"


def usage_markers_dir(namespace: str) -> str:
    return f"{USAGE}/{namespace}/blobs"


def usage_marker(namespace: str, digest: Digest) -> str:
    return f"{usage_markers_dir(namespace)}/{digest.algorithm}/{digest.hex}"


def repository(name: str) -> str:
    return f"{REPOSITORIES}/{name}"


def blobs_dir(algorithm: str) -> str:
    return f"{BLOBS}/{algorithm}"


def blobs_prefix_dir(algorithm: str, prefix: str) -> str:
    """The directory of the blobs whose hex digest starts with ``prefix`` (two characters)."""
    return f"{blobs_dir(algorithm)}/{prefix}"


def layers_dir(name: str) -> str:
    return f"{REPOSITORIES}/{name}/{LAYERS}"


def layer_dir(name: str, digest: Digest) -> str:
    return f"{layers_dir(name)}/{digest.algorithm}/{digest.hex}"


def layer_link(name: str, digest: Digest) -> str:
    return f"{layer_dir(name, digest)}/{LINK}"


def manifests_dir(name: str) -> str:
    return f"{REPOSITORIES}/{name}/{MANIFESTS}"


def revisions_dir(name: str) -> str:
    return f"{manifests_dir(name)}/revisions"


def revision_dir(name: str, digest: Digest) -> str:
    return f"{revisions_dir(name)}/{digest.algorithm}/{digest.hex}"


def revision_link(name: str, digest: Digest) -> str:
    return f"{revision_dir(name, digest)}/{LINK}"


def tags_dir(name: str) -> str:
    return f"{manifests_dir(name)}/tags"


def tag_dir(name: str, tag: str) -> str:
    return f"{tags_dir(name)}/{tag}"


def tag_current_link(name: str, tag: str) -> str:
    return f"{tag_dir(name, tag)}/{TAG_CURRENT_LINK}"


def tag_index_dir(name: str, tag: str) -> str:
    return f"{tag_dir(name, tag)}/index"


def tag_index_link(name: str, tag: str, digest: Digest) -> str:
    return f"{tag_index_dir(name, tag)}/{digest.algorithm}/{digest.hex}/{LINK}"


def uploads_dir(name: str) -> str:
    return f"{REPOSITORIES}/{name}/{UPLOADS}"


def upload_dir(name: str, upload_id: str) -> str:
    return f"{uploads_dir(name)}/{upload_id}"


def upload_data(name: str, upload_id: str) -> str:
    return f"{upload_dir(name, upload_id)}/{UPLOAD_DATA}"


def upload_started_at(name: str, upload_id: str) -> str:
    return f"{upload_dir(name, upload_id)}/{UPLOAD_STARTED_AT}"


def upload_hashstates_root(name: str, upload_id: str) -> str:
    """Where the hash states of every algorithm live (Distribution's and Moorage's)."""
    return f"{upload_dir(name, upload_id)}/{HASHSTATES}"


def upload_hashstates_dir(name: str, upload_id: str, algorithm: str) -> str:
    return f"{upload_hashstates_root(name, upload_id)}/{algorithm}{HASHSTATE_SUFFIX}"


def upload_hashstate(name: str, upload_id: str, algorithm: str, offset: int) -> str:
    return f"{upload_hashstates_dir(name, upload_id, algorithm)}/{offset}"


def referrers_root(name: str) -> str:
    return f"{REPOSITORIES}/{name}/{REFERRERS}"


def referrers_dir(name: str, subject: Digest) -> str:
    return f"{referrers_root(name)}/{subject.algorithm}/{subject.hex}"


def referrers_scanned(name: str) -> str:
    """The revisions whose ``subject`` has been indexed, one digest a line (written when catching up)."""
    return f"{referrers_root(name)}/_scanned"


def referrer_dir(name: str, subject: Digest, referrer: Digest) -> str:
    return f"{referrers_dir(name, subject)}/{referrer.algorithm}/{referrer.hex}"


def referrer_descriptor(name: str, subject: Digest, referrer: Digest) -> str:
    return f"{referrer_dir(name, subject, referrer)}/descriptor"


def mirror_tag_checked(name: str, tag: str) -> str:
    """When the mirror last confirmed ``tag`` with its upstream (``{"checked": <unix time>}``)."""
    return f"{REPOSITORIES}/{name}/{MIRROR}/tags/{tag}/checked"
