"""The conformance suite's request helpers, re-expressed as asserting Python functions.

Each helper sends what the suite sends (methods, headers, Content-Length / chunked bodies) and checks
what the suite checks. ``Unsupported`` marks a response the suite records as "registry does not support
this optional API" (a skip there, not a failure).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import httpx

from tests.conformance.ocidata import CHUNK_MIN, MT_INDEX, MT_OCTET

BASE = "http://registry.test"
REQUIRE_DIGEST_HEADER = True  # the suite's "1.1+dev" profile: Docker-Content-Digest must be returned
ERROR_CODES = {
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID", "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "MANIFEST_UNVERIFIED", "NAME_INVALID", "NAME_UNKNOWN",
    "SIZE_INVALID", "TAG_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED",
}


class Unsupported(Exception):
    """The registry answered in a way the suite treats as a missing optional feature."""


def describe(resp: httpx.Response) -> str:
    body = resp.content[:300]
    return f"{resp.request.method} {resp.request.url} -> {resp.status_code} {dict(resp.headers)} {body!r}"


def expect_status(resp: httpx.Response, *codes: int) -> None:
    assert resp.status_code in codes, f"expected status {codes}: {describe(resp)}"


def expect_header(resp: httpx.Response, name: str, value: str | None = None) -> None:
    """The suite's apiExpectHeader: present (value None) or one of the values equals ``value``."""
    values = resp.headers.get_list(name)
    if value is None:
        assert values, f"missing header {name}: {describe(resp)}"
    else:
        assert value in values, f"header {name} expected {value!r}, got {values}: {describe(resp)}"


def chunked(data: bytes) -> Iterator[bytes]:
    """A body sent with Transfer-Encoding: chunked, as Go's client does for a body without a length."""
    yield data


@dataclass
class Checks:
    """Collects failures of independent steps so one test reports all of them (the suite's errors.Join)."""

    failures: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)

    def run(self, name: str, fn: Callable[[], Any]) -> bool:
        try:
            fn()
        except Unsupported as e:
            self.unsupported.append(f"{name}: {e}")
            return False
        except AssertionError as e:
            self.failures.append(f"{name}: {e}")
            return False
        self.passed.append(name)
        return True

    def assert_ok(self) -> None:
        assert not self.failures, "\n".join(self.failures)


class Api:
    """A registry client speaking exactly like the suite's api.go."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.base = str(client.base_url).rstrip("/") + "/"

    # -- plumbing --------------------------------------------------------------------------------
    def do(self, method: str, url: str, *, headers: dict[str, str] | list[tuple[str, str]] | None = None,
           content: bytes | Iterator[bytes] | None = None, params: dict[str, str] | None = None) -> httpx.Response:
        if params:
            sep = "&" if "?" in url else "?"
            url = f"{url}{sep}{urlencode(params)}"
        resp = self.client.request(method, urljoin(self.base, url), headers=headers, content=content)
        check_framing(resp)
        return resp

    @staticmethod
    def with_param(url: str, key: str, value: str) -> str:
        sep = "&" if "?" in url else "?"
        return f"{url}{sep}{urlencode({key: value})}"

    def resolve(self, base: str, location: str) -> str:
        return urljoin(urljoin(self.base, base), location)

    @staticmethod
    def verify_digest(resp: httpx.Response, dig: str) -> None:
        header = resp.headers.get("docker-content-digest", "")
        if REQUIRE_DIGEST_HEADER:
            assert header, f"registry did not return a Docker-Content-Digest header: {describe(resp)}"
        if header and dig:
            assert header == dig, f"Docker-Content-Digest expected {dig}, got {header}"

    # -- ping, blobs -----------------------------------------------------------------------------
    def ping(self) -> httpx.Response:
        resp = self.do("GET", "/v2/")
        expect_status(resp, 200)
        return resp

    def blob_get(self, repo: str, dig: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.do("GET", f"/v2/{repo}/blobs/{dig}", headers=headers)

    def blob_get_exists(self, repo: str, dig: str, data: bytes | None) -> None:
        resp = self.blob_get(repo, dig)
        expect_status(resp, 200)
        if data is not None:
            assert resp.content == data, f"blob body mismatch for {dig}"
            expect_header(resp, "Content-Length", str(len(data)))
        self.verify_digest(resp, dig)

    def blob_head_exists(self, repo: str, dig: str, data: bytes | None) -> None:
        resp = self.do("HEAD", f"/v2/{repo}/blobs/{dig}")
        expect_status(resp, 200)
        assert resp.content == b"", "HEAD returned a body"
        if data is not None:
            expect_header(resp, "Content-Length", str(len(data)))
        self.verify_digest(resp, dig)

    def blob_delete(self, repo: str, dig: str, atomic: bool = True) -> None:
        resp = self.do("DELETE", f"/v2/{repo}/blobs/{dig}")
        expect_status(resp, 202, 404, 405)
        if resp.status_code == 405:
            raise Unsupported(f"blob delete returned 405: {describe(resp)}")
        if atomic:
            head = self.do("HEAD", f"/v2/{repo}/blobs/{dig}")
            expect_status(head, 404)

    def verify_location(self, base: str, location: str, data: bytes) -> None:
        assert location, "location header missing"
        resp = self.do("GET", self.resolve(base, location))
        expect_status(resp, 200)
        assert resp.content == data, f"content at Location {location} differs from the pushed blob"

    def blob_post_only(self, repo: str, dig: str, data: bytes, bad: bool = False) -> None:
        url = f"/v2/{repo}/blobs/uploads/?{urlencode({'digest': dig})}"
        headers = {"Content-Length": str(len(data)), "Content-Type": MT_OCTET}
        resp = self.do("POST", url, headers=headers, content=data)
        if bad:
            expect_status(resp, 400, 202)
        else:
            expect_status(resp, 201, 202)
            expect_header(resp, "Location")
        if resp.status_code == 202:
            put = self.resolve(url, resp.headers.get("location", ""))
            put_resp = self.do("PUT", self.with_param(put, "digest", dig), headers=headers, content=data)
            expect_status(put_resp, 400 if bad else 201)
            raise Unsupported("registry does not support content in the POST, fell back to PUT")
        if bad:
            return
        self.verify_digest(resp, dig)
        self.verify_location(url, resp.headers["location"], data)

    def blob_post_put(self, repo: str, dig: str, data: bytes, bad: bool = False) -> None:
        url = f"/v2/{repo}/blobs/uploads/"
        resp = self.do("POST", url)
        expect_status(resp, 202)
        location = resp.headers.get("location", "")
        assert location, "blob post did not return a location"
        put = self.with_param(self.resolve(url, location), "digest", dig)
        headers = {"Content-Length": str(len(data)), "Content-Type": MT_OCTET}
        resp = self.do("PUT", put, headers=headers, content=data)
        expect_status(resp, 400 if bad else 201)
        if bad:
            return
        self.verify_digest(resp, dig)
        self.verify_location(put, resp.headers.get("location", ""), data)

    def blob_patch_stream(self, repo: str, dig: str, data: bytes, bad: bool = False) -> None:
        url = f"/v2/{repo}/blobs/uploads/"
        resp = self.do("POST", url, headers={"Content-Length": "0"})
        expect_status(resp, 202)
        location = resp.headers.get("location", "")
        assert location, "blob post did not return a location"
        url = self.resolve(url, location)
        resp = self.do("PATCH", url, headers={"Content-Type": MT_OCTET}, content=chunked(data))
        expect_status(resp, 202)
        location = resp.headers.get("location", "")
        assert location, "blob patch did not return a location"
        put = self.with_param(self.resolve(url, location), "digest", dig)
        resp = self.do("PUT", put, headers={"Content-Length": "0", "Content-Type": MT_OCTET})
        expect_status(resp, 400 if bad else 201)
        if bad:
            return
        expect_header(resp, "Location")
        self.verify_digest(resp, dig)
        self.verify_location(put, resp.headers["location"], data)

    def blob_patch_chunked(self, repo: str, dig: str, data: bytes, bad: bool = False,
                           put_last: bool = False, out_of_order: bool = False) -> str:
        """Chunked upload in (about) three chunks; returns the OCI-Chunk-Min-Length header value."""
        url = f"/v2/{repo}/blobs/uploads/"
        resp = self.do("POST", url, headers={"Content-Length": "0"})
        expect_status(resp, 202)
        min_header = resp.headers.get("oci-chunk-min-length", "")
        location = resp.headers.get("location", "")
        chunk = len(data) // 3 + 1
        if min_header:
            chunk = max(chunk, int(min_header))
        chunk = min(max(chunk, CHUNK_MIN), len(data))
        last = -1
        while last < len(data) - 1:
            if out_of_order:
                assert location, "blob request did not return a location"
                url = self.resolve(url, location)
                bad_start = last + 1 + chunk
                if bad_start >= len(data):
                    bad_start = 0
                bad_end = min(bad_start + chunk - 1, len(data) - 1)
                method, target = "PATCH", url
                if put_last and bad_end == len(data) - 1:
                    method, target = "PUT", self.with_param(url, "digest", dig)
                resp = self.do(method, target, headers=self._chunk_headers(bad_start, bad_end),
                               content=data[bad_start:bad_end + 1])
                expect_status(resp, 416)
                location = resp.headers.get("location", location)
                resp = self.do("GET", url)
                expect_status(resp, 204)
                location = resp.headers.get("location", location)
                range_header = resp.headers.get("range", "")
                assert range_header.startswith("0-"), f"upload Range header lacks the 0- prefix: {range_header!r}"
                reported = int(range_header[2:])
                if last >= 0:
                    assert reported == last, f"upload Range {range_header!r}, expected 0-{last}"
            assert location, "blob request did not return a location"
            url = self.resolve(url, location)
            start, last = last + 1, min(last + chunk, len(data) - 1)
            headers = self._chunk_headers(start, last)
            if put_last and last == len(data) - 1:
                put = self.with_param(url, "digest", dig)
                resp = self.do("PUT", put, headers=headers, content=data[start:last + 1])
                expect_status(resp, 400 if bad else 201)
                url = put
            else:
                resp = self.do("PATCH", url, headers=headers, content=data[start:last + 1])
                expect_status(resp, 202)
            location = resp.headers.get("location", location)
        if not put_last:
            assert location, "blob patch did not return a location"
            url = self.with_param(self.resolve(url, location), "digest", dig)
            resp = self.do("PUT", url, headers={"Content-Length": "0", "Content-Type": MT_OCTET})
            expect_status(resp, 400 if bad else 201)
            location = resp.headers.get("location", "")
        if not bad:
            self.verify_digest(resp, dig)
            self.verify_location(url, location, data)
        return min_header

    @staticmethod
    def _chunk_headers(start: int, end: int) -> dict[str, str]:
        return {"Content-Length": str(end - start + 1), "Content-Type": MT_OCTET, "Content-Range": f"{start}-{end}"}

    def blob_post_cancel(self, repo: str) -> None:
        url = f"/v2/{repo}/blobs/uploads/"
        resp = self.do("POST", url)
        expect_status(resp, 202)
        location = resp.headers.get("location", "")
        assert location, "blob post did not return a location"
        resp = self.do("DELETE", self.resolve(url, location), headers={"Content-Length": "0"})
        expect_status(resp, 204)

    def blob_mount(self, repo: str, source: str | None, dig: str, data: bytes) -> None:
        query = {"mount": dig} | ({"from": source} if source else {})
        url = f"/v2/{repo}/blobs/uploads/?{urlencode(query)}"
        resp = self.do("POST", url)
        expect_status(resp, 201, 202)
        location = resp.headers.get("location", "")
        assert location, "blob post did not return a location"
        if resp.status_code == 202:
            put = self.with_param(self.resolve(url, location), "digest", dig)
            put_resp = self.do("PUT", put, headers={"Content-Length": str(len(data)), "Content-Type": MT_OCTET},
                               content=data)
            expect_status(put_resp, 201)
            self.verify_digest(put_resp, dig)
            self.verify_location(put, put_resp.headers.get("location", ""), data)
            raise Unsupported("mount returned 202, fell back to POST+PUT")
        self.verify_digest(resp, dig)
        self.verify_location(url, location, data)

    def push_blob(self, repo: str, dig: str, data: bytes) -> None:
        """Any working upload (the suite's TestPushBlobAny); POST+PUT is enough here."""
        self.blob_post_put(repo, dig, data)

    # -- manifests -------------------------------------------------------------------------------
    ACCEPT = [("Accept", MT_INDEX), ("Accept", "application/vnd.oci.image.manifest.v1+json")]

    def manifest_put(self, repo: str, ref: str, body: bytes, dig: str, *, bad: bool = False,
                     tags: list[str] | None = None, subject: str | None = None) -> httpx.Response:
        media_type = detect_media_type(body)
        url = f"/v2/{repo}/manifests/{ref}"
        if tags:
            url += "?" + urlencode([("tag", t) for t in tags])
        resp = self.do("PUT", url, headers={"Content-Type": media_type}, content=chunked(body))
        if bad:
            expect_status(resp, 400)
            return resp
        expect_status(resp, 201)
        if subject is not None:
            expect_header(resp, "OCI-Subject", subject)
        header = resp.headers.get("docker-content-digest", "")
        if header:
            assert header == dig, f"Docker-Content-Digest expected {dig}, got {header}"
        location = resp.headers.get("location", "")
        assert location, f"manifest put did not return a location: {describe(resp)}"
        got = self.do("GET", self.resolve(url, location), headers=self.ACCEPT)
        expect_status(got, 200)
        expect_header(got, "Content-Type", media_type)
        expect_header(got, "Content-Length", str(len(body)))
        assert got.content == body, "manifest at Location differs from the pushed bytes"
        return resp

    def manifest_get_exists(self, repo: str, ref: str, dig: str, body: bytes | None) -> None:
        resp = self.do("GET", f"/v2/{repo}/manifests/{ref}", headers=self.ACCEPT)
        expect_status(resp, 200)
        if body:
            assert resp.content == body, f"manifest {ref} body differs"
            expect_header(resp, "Content-Type", detect_media_type(body))
            expect_header(resp, "Content-Length", str(len(body)))
        self.verify_digest(resp, dig)

    def manifest_head_exists(self, repo: str, ref: str, dig: str, body: bytes | None) -> None:
        resp = self.do("HEAD", f"/v2/{repo}/manifests/{ref}", headers=self.ACCEPT)
        expect_status(resp, 200)
        assert resp.content == b"", "HEAD returned a body"
        if body:
            expect_header(resp, "Content-Type", detect_media_type(body))
            expect_header(resp, "Content-Length", str(len(body)))
        self.verify_digest(resp, dig)

    def manifest_delete(self, repo: str, ref: str, atomic: bool = True) -> None:
        resp = self.do("DELETE", f"/v2/{repo}/manifests/{ref}")
        expect_status(resp, 202, 404, 400, 405)
        if resp.status_code in (400, 405):
            raise Unsupported(f"manifest delete returned {resp.status_code}")
        if atomic:
            head = self.do("HEAD", f"/v2/{repo}/manifests/{ref}", headers=self.ACCEPT)
            expect_status(head, 404)

    # -- listings --------------------------------------------------------------------------------
    def referrers(self, repo: str, dig: str, artifact_type: str | None = None) -> tuple[dict[str, Any], httpx.Response]:
        url = f"/v2/{repo}/referrers/{dig}"
        if artifact_type is not None:
            url += "?" + urlencode({"artifactType": artifact_type})
        resp = self.do("GET", url)
        expect_status(resp, 200)
        expect_header(resp, "Content-Type", MT_INDEX)
        index = resp.json()
        assert index.get("mediaType") == MT_INDEX and index.get("schemaVersion") == 2, (
            f"referrers response is not an OCI index: {index}")
        return index, resp

    def tag_list(self, repo: str, **params: str) -> list[str]:
        """200 with a tag list, or 404 (an empty repository); returns the tags."""
        url = f"/v2/{repo}/tags/list"
        if params:
            url += "?" + urlencode(params)
        resp = self.do("GET", url)
        expect_status(resp, 200, 404)
        if resp.status_code == 404:
            return []
        return list(resp.json().get("tags") or [])


def check_framing(resp: httpx.Response) -> None:
    """A body must match its Content-Length (uvicorn resets the connection otherwise; TestClient does not)."""
    declared = resp.headers.get("content-length")
    if declared is None or resp.request.method == "HEAD" or resp.status_code in (204, 304):
        return
    assert int(declared) == len(resp.content), (
        f"Content-Length {declared} but {len(resp.content)} body bytes: {describe(resp)}")


def detect_media_type(body: bytes) -> str:
    """The suite's detectMediaType: the document's mediaType, defaulting to the OCI image manifest."""
    try:
        doc = json.loads(body)
    except ValueError:
        return "application/vnd.oci.image.manifest.v1+json"
    value = doc.get("mediaType") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else "application/vnd.oci.image.manifest.v1+json"


def relative(location: str) -> str:
    """The path (and query) of a Location header, as reggie's GetRelativeLocation gives it."""
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def error_codes(resp: httpx.Response) -> list[str]:
    """The ``code`` of each entry of an error body (empty when the body is not one)."""
    try:
        doc = resp.json()
    except ValueError:
        return []
    errors = doc.get("errors") if isinstance(doc, dict) else None
    return [e.get("code") for e in errors or [] if isinstance(e, dict)]
