"""The PyPI `oras` client (oras-py, which ships no CLI) as a small library and command line.

Library (used in-process by the tests)::

    reg = connect("127.0.0.1:5000")                       # plain HTTP
    digest = push(reg, "127.0.0.1:5000/art/x:1", [file], config_media_type="application/x.demo").digest
    subj = subject_of(reg, "127.0.0.1:5000/art/x:1")
    push(reg, "127.0.0.1:5000/art/x:sig", [sig], subject=subj)
    index, headers = referrers(reg, "127.0.0.1:5000", "art/x", subj.digest)

Command line::

    python -m tests.e2e.oras_cli --registry HOST:PORT [--plain-http|--ca F] [--user U --password P]
        push REF FILE... [--chunked] [--config-media-type T] | pull REF DIR | manifest REF
        | referrers REPO DIGEST [--artifact-type T] | delete REF

oras-py retries a failed request 5 times sleeping 2+3**n s (about 2 minutes in all); importing this
module caps each sleep at ORAS_MAX_RETRY_SLEEP seconds (default 1) so a failing registry fails fast.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import oras.provider  # first: importing oras.decorator alone hits a circular import

# isort: split
import oras.decorator
import oras.defaults
import oras.oci

_MAX_SLEEP = float(os.environ.get("ORAS_MAX_RETRY_SLEEP", "1"))


class _FastTime:
    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(min(seconds, _MAX_SLEEP))


oras.decorator.time = _FastTime  # type: ignore[attr-defined,assignment]

INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"


def connect(
    host: str,
    *,
    plain_http: bool = True,
    ca: str | None = None,
    user: str | None = None,
    password: str | None = None,
    auth_backend: str = "basic",
) -> oras.provider.Registry:
    """An oras-py Registry for `host` (HOST:PORT); Basic credentials are sent up front when given."""
    reg = oras.provider.Registry(
        hostname=host,
        insecure=plain_http,
        tls_verify=False if plain_http else (ca or True),
        auth_backend=auth_backend,
    )
    if user is not None:
        reg.auth.set_basic_auth(user, password or "")
        basic = getattr(reg.auth, "_basic_auth", None)
        if basic:
            reg.headers["Authorization"] = "Basic " + basic
    return reg


def _base(reg: oras.provider.Registry, host: str) -> str:
    return f"{reg.prefix}://{host}"


@dataclass(frozen=True)
class PushResult:
    """The manifest PUT's answer: digest (Docker-Content-Digest), status and headers."""

    digest: str
    status: int
    headers: Mapping[str, str]  # case-insensitive


def push(
    reg: oras.provider.Registry,
    target: str,
    files: Sequence[str | os.PathLike[str]],
    *,
    config_media_type: str | None = None,
    annotations: Mapping[str, str] | None = None,
    subject: oras.oci.Subject | None = None,
    chunked: bool = False,
    chunk_size: int = oras.defaults.default_chunksize,
) -> PushResult:
    """Push files as an artifact to `target` (HOST/REPO:TAG); `chunked` uses POST, PATCH..., PUT."""
    manifest_config = None
    if config_media_type:
        cfg = Path(files[0]).resolve().parent / ".oras-config.json"
        cfg.write_text("{}")
        manifest_config = f"{cfg}:{config_media_type}"
    r = reg.push(
        target=target,
        files=[str(f) for f in files],
        disable_path_validation=True,
        manifest_config=manifest_config,
        manifest_annotations=dict(annotations) if annotations else None,
        subject=subject,  # type: ignore[arg-type]
        do_chunked=chunked,
        chunk_size=chunk_size,
        quiet=True,
    )
    if r.status_code not in (200, 201):
        raise RuntimeError(f"manifest PUT answered {r.status_code}: {r.text[:500]}")
    return PushResult(str(r.headers.get("Docker-Content-Digest", "")), r.status_code, r.headers)


def manifest_bytes(reg: oras.provider.Registry, ref: str) -> tuple[bytes, str]:
    """(raw manifest bytes, Content-Type) of `ref` (HOST/REPO:TAG or @DIGEST)."""
    c = reg.get_container(ref)
    accept = ", ".join(oras.defaults.default_manifest_accepted_media_types + [INDEX_MEDIA_TYPE])
    r = reg.do_request(f"{reg.prefix}://{c.manifest_url()}", "GET", headers={"Accept": accept})
    if r.status_code != 200:
        raise RuntimeError(f"GET manifest {ref} answered {r.status_code}: {r.text[:300]}")
    return r.content, r.headers.get("Content-Type", "").split(";")[0].strip()


def subject_of(reg: oras.provider.Registry, ref: str) -> oras.oci.Subject:
    """The OCI descriptor of the manifest `ref` points at, for use as a `subject`."""
    body, ctype = manifest_bytes(reg, ref)
    media_type = ctype or json.loads(body).get("mediaType") or oras.defaults.default_manifest_media_type
    return oras.oci.Subject(mediaType=media_type, digest="sha256:" + hashlib.sha256(body).hexdigest(), size=len(body))


def referrers(
    reg: oras.provider.Registry,
    host: str,
    repo: str,
    digest: str,
    artifact_type: str | None = None,
) -> tuple[dict[str, Any], Mapping[str, str]]:
    """GET /v2/REPO/referrers/DIGEST[?artifactType=T]; returns (index JSON, response headers)."""
    url = f"{_base(reg, host)}/v2/{repo}/referrers/{digest}"
    if artifact_type:
        url += "?artifactType=" + artifact_type
    r = reg.do_request(url, "GET", headers={"Accept": INDEX_MEDIA_TYPE})
    if r.status_code != 200:
        raise RuntimeError(f"GET {url} answered {r.status_code}: {r.text[:300]}")
    return r.json(), r.headers


def pull(reg: oras.provider.Registry, ref: str, outdir: str | os.PathLike[str]) -> list[str]:
    """Pull an artifact's files into outdir."""
    return list(reg.pull(target=ref, outdir=str(outdir)))


def delete(reg: oras.provider.Registry, ref: str) -> None:
    """Delete the manifest a tag points to."""
    c = reg.get_container(ref)
    if not reg.delete_tag(c, c.tag):
        raise RuntimeError(f"oras delete of {ref} failed")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; exit 0 on success, 1 on failure."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--registry", required=True)
    ap.add_argument("--plain-http", action="store_true")
    ap.add_argument("--ca")
    ap.add_argument("--user")
    ap.add_argument("--password")
    sub = ap.add_subparsers(dest="action", required=True)
    p = sub.add_parser("push")
    p.add_argument("ref")
    p.add_argument("files", nargs="+")
    p.add_argument("--chunked", action="store_true")
    p.add_argument("--config-media-type")
    p.add_argument("--subject", help="a reference whose manifest becomes the subject")
    p = sub.add_parser("pull")
    p.add_argument("ref")
    p.add_argument("outdir")
    p = sub.add_parser("manifest")
    p.add_argument("ref")
    p = sub.add_parser("referrers")
    p.add_argument("repo")
    p.add_argument("digest")
    p.add_argument("--artifact-type")
    p = sub.add_parser("delete")
    p.add_argument("ref")
    a = ap.parse_args(argv)
    reg = connect(a.registry, plain_http=a.plain_http, ca=a.ca, user=a.user, password=a.password)

    def full(ref: str) -> str:
        return ref if ref.startswith(a.registry + "/") else f"{a.registry}/{ref}"

    try:
        if a.action == "push":
            subj = subject_of(reg, full(a.subject)) if a.subject else None
            print(
                push(
                    reg,
                    full(a.ref),
                    a.files,
                    config_media_type=a.config_media_type,
                    subject=subj,
                    chunked=a.chunked,
                ).digest
            )
        elif a.action == "pull":
            print("\n".join(pull(reg, full(a.ref), a.outdir)))
        elif a.action == "manifest":
            print(manifest_bytes(reg, full(a.ref))[0].decode())
        elif a.action == "referrers":
            print(json.dumps(referrers(reg, a.registry, a.repo, a.digest, a.artifact_type)[0], indent=2))
        else:
            delete(reg, full(a.ref))
    except Exception as e:  # report on one line, exit 1
        print(f"oras_cli: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
