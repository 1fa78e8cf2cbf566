"""Schemathesis against a live `moorage serve`, driven by docs/openapi.yaml (issue 14).

Every operation of the description gets cases that follow the schema and cases that break it; no
answer may be a 5xx, and every error must be the registry's JSON error format with one of the spec's
codes.  Bounded (EXAMPLES per operation and mode) so that it runs in about a minute.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from registry.errors import CODES

from .helpers import free_port

pytestmark = pytest.mark.e2e

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
EXAMPLES = 8
SCHEMA = schemathesis.openapi.from_path(SPEC)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
# the management API (tag access) needs auth.database: fuzzed as an admin on a database below, where its
# cases get past the 404 it answers without one (and each test stays well within its time limit)
ACCESS = [op for op in OPERATIONS if "access" in (op.definition.raw.get("tags") or [])]


def seed(base: str) -> None:
    """One small image, so that cases on existing names reach past the 404s."""
    config = b'{"architecture":"amd64","os":"linux"}'
    layer = b"fuzz layer"
    for blob in (config, layer):
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        r = requests.post(f"{base}/v2/fuzz/app/blobs/uploads/", params={"digest": digest}, data=blob, timeout=10)
        assert r.status_code == 201, r.text
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": "sha256:" + hashlib.sha256(layer).hexdigest(), "size": len(layer)}],
    })
    r = requests.put(f"{base}/v2/fuzz/app/manifests/v1", data=manifest, timeout=10,
                     headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text


def problem(response: requests.Response) -> str | None:
    """Why this answer is wrong, or None."""
    if response.status_code >= 500 and response.status_code not in (503, 507):
        return f"server error {response.status_code}"
    if response.status_code < 400 or response.request.method == "HEAD":
        return None
    try:
        body: Any = response.json()
    except ValueError:
        return f"{response.status_code} without a JSON body: {response.text[:200]!r}"
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list) or not errors:
        return f"{response.status_code} body without an errors list: {body!r:.200}"
    for error in errors:
        if not isinstance(error, dict) or error.get("code") not in CODES or not isinstance(error.get("message"), str):
            return f"{response.status_code} with a malformed error entry: {error!r:.200}"
    return None


def fuzz(operation: Any, mode: GenerationMode, base: str, session: requests.Session, found: dict[str, str]) -> None:
    """EXAMPLES cases of ``operation`` in ``mode``; what is wrong goes into ``found`` (one example each)."""
    label = f"{operation.label} ({mode.value})"

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=base, session=session, timeout=15)
        why = problem(response)
        if why is not None:
            found.setdefault(f"{label}: {why}", f"{response.request.method} {response.request.url}")

    try:
        run()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE, label  # nothing to break (no parameters)


def test_fuzzed_requests_get_no_5xx_and_registry_errors(start_moorage) -> None:  # type: ignore[no-untyped-def]
    # one replication rule (to a remote nobody listens on), so that /api/v1/replication has something to show
    nowhere = {"name": "nowhere", "url": f"http://127.0.0.1:{free_port()}"}
    server = start_moorage({"replication": {"remotes": [nowhere], "rules": [{"name": "fuzz", "remote": "nowhere"}]}})
    seed(server.url)
    session = requests.Session()
    found: dict[str, str] = {}
    for operation in OPERATIONS:
        if operation in ACCESS:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode, server.url, session, found)
    assert not found, "\n".join(f"{why}\n    e.g. {request}" for why, request in found.items())


def test_fuzzed_access_api_as_an_admin(start_moorage, moorage_bin: str) -> None:  # type: ignore[no-untyped-def]
    """The /api/v1 management operations with auth.database, called as an admin (past the 401s), on a
    database with users, a team and namespaces to find."""
    server = start_moorage({"auth": {"database": {}}})
    env = {**os.environ, "PATH": f"{Path(moorage_bin).parent}:{os.environ.get('PATH', '')}"}
    for argv, stdin in ((["user", "add", "admin", "--admin"], "admin-pw\n"), (["user", "add", "bob"], "bob-pw\n"),
                        (["team", "add", "devs"], ""), (["team", "member", "add", "devs", "bob"], ""),
                        (["namespace", "add", "payments"], ""),
                        (["namespace", "grant", "payments", "--team", "devs", "developer"], "")):
        done = subprocess.run([moorage_bin, *argv, "-c", str(server.config_path)], input=stdin, text=True,
                              capture_output=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
    session = requests.Session()
    session.auth = ("admin", "admin-pw")
    found: dict[str, str] = {}
    assert ACCESS, "no operation tagged access in docs/openapi.yaml"
    for operation in ACCESS:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode, server.url, session, found)
    assert not found, "\n".join(f"{why}\n    e.g. {request}" for why, request in found.items())
    r = session.get(f"{server.url}/api/v1/users/admin", timeout=10)
    assert r.status_code == 200 and r.json()["admin"], "the admin was lost to the fuzzing"
