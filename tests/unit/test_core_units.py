"""Unit tests of the grammar, digests, ranges, config and manifest parsing."""

from __future__ import annotations

import hashlib
import json

import pytest

from registry import config
from registry.errors import RegistryError
from registry.mediatypes import InvalidManifest, detect_media_type, parse
from registry.names import check_name, check_tag, digest_param
from registry.ranges import Unsatisfiable, parse_content_range, parse_range, upload_range
from storage.digests import InvalidDigest, digest_bytes, new_hasher, parse_digest, restore_hasher


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


def test_digests() -> None:
    hex_ = hashlib.sha256(b"x").hexdigest()
    assert str(parse_digest(f"sha256:{hex_}")) == f"sha256:{hex_}"
    for bad in ("sha256:" + hex_.upper(), "sha256:" + hex_[:-1], "md5:" + "0" * 32, "sha256", "", ":abc",
                "sha512:" + hex_):
        with pytest.raises(InvalidDigest):
            parse_digest(bad)
    with pytest.raises(RegistryError) as e:
        digest_param("nope")
    assert e.value.code == "DIGEST_INVALID"
    assert digest_bytes(b"x").hex == hex_
    assert digest_bytes(b"x", "sha512").hex == hashlib.sha512(b"x").hexdigest()


def test_hash_state_round_trip() -> None:
    hasher = new_hasher("sha256")
    hasher.update(b"first half ")
    resumed = restore_hasher("sha256", hasher.serialize())
    resumed.update(b"second half")
    assert resumed.finalize() == hashlib.sha256(b"first half second half").hexdigest()


def test_ranges() -> None:
    assert parse_range("bytes=0-9", 100) == (0, 9)
    assert parse_range("bytes=90-200", 100) == (90, 99)
    assert parse_range("bytes=-10", 100) == (90, 99)
    assert parse_range("bytes=50-", 100) == (50, 99)
    assert parse_range("bytes=0-1,5-6", 100) is None
    assert parse_range("items=0-1", 100) is None
    for bad in ("bytes=100-", "bytes=5-4", "bytes=-0"):
        with pytest.raises(Unsatisfiable):
            parse_range(bad, 100)
    assert parse_content_range("0-99") == (0, 99)
    assert parse_content_range("bytes=100-199") == (100, 199)
    assert parse_content_range("bytes 0-9/10") == (0, 9)
    assert parse_content_range("9-0") is None
    assert parse_content_range("x") is None
    assert upload_range(0) == "0-0" and upload_range(10) == "0-9"


def test_config_defaults_and_distribution_keys(tmp_path) -> None:
    defaults = config.parse({})
    assert defaults.http.addr == "0.0.0.0:5000"
    assert defaults.storage.parameters["rootdirectory"] == "./data"
    path = tmp_path / "config.yml"
    path.write_text(
        "version: 0.1\nlog: {level: warn, accesslog: {disabled: true}}\n"
        "http: {addr: ':5001', host: 'https://r.example.test/', prefix: /reg, relativeurls: true}\n"
        "storage: {filesystem: {rootdirectory: /x}, delete: {enabled: false},"
        " maintenance: {readonly: {enabled: true}, uploadpurging: {age: 1h30m}}}\n"
    )
    loaded = config.load(path, environ={"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/override"})
    assert loaded.log_level == "warning" and not loaded.accesslog
    assert loaded.http.addr == ":5001" and loaded.http.host == "https://r.example.test"
    assert loaded.http.prefix == "/reg/" and loaded.http.relativeurls
    assert loaded.storage.parameters["rootdirectory"] == "/override"
    assert not loaded.storage.delete_enabled and loaded.storage.readonly
    assert loaded.storage.upload_purge_age == 5400


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"http": {"addr": "nocolon"}}, "http.addr"),
        ({"storage": {"gcs": {}}}, "storage.gcs"),
        ({"storage": {"delete": {"enabled": "maybe"}}}, "storage.delete.enabled"),
        ({"log": {"level": "loud"}}, "log.level"),
        ({"http": {"tls": {"certificate": "/c"}}}, "http.tls"),
        ({"bogus": 1}, "bogus"),
        ({"storage": {"maintenance": {"uploadpurging": {"age": "10x"}}}}, "storage.maintenance.uploadpurging.age"),
        ({"http": {"tsl": {}}}, "http.tsl"),
        ({"http": {"net": "unix"}}, "http.net"),
        ({"http": {"tls": {"letsencrypt": {}}}}, "http.tls.letsencrypt"),
        ({"http": {"debug": {"adr": "x:1"}}}, "http.debug.adr"),
        ({"http": {"headers": {"X-Bad\nName": ["v"]}}}, "http.headers"),
        ({"storage": {"filesystem": {"rootdir": "/x"}}}, "storage.filesystem.rootdir"),
        ({"storage": {"maintenance": {"readonlymode": {"enabled": True}}}}, "storage.maintenance.readonlymode"),
        ({"validation": {"manifest": {}}}, "validation.manifest"),
    ],
)
def test_config_errors_name_the_key(raw: dict, key: str) -> None:
    with pytest.raises(config.ConfigError, match=key.replace(".", r"\.")):
        config.parse(raw)


def test_http_headers_go_on_every_api_response(tmp_path) -> None:
    from starlette.testclient import TestClient

    from registry.app import create_app

    raw = {"storage": {"filesystem": {"rootdirectory": str(tmp_path)}},
           "http": {"headers": {"X-Content-Type-Options": ["nosniff"], "X-Team": "infra"}}}
    with TestClient(create_app(config.parse(raw))) as client:
        for response in (client.get("/v2/"), client.get("/v2/no/such/manifests/x")):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-team"] == "infra"


def test_bad_yaml_file(tmp_path) -> None:
    path = tmp_path / "c.yml"
    path.write_text("http: [unclosed")
    with pytest.raises(config.ConfigError, match="invalid YAML"):
        config.load(path, environ={})
    with pytest.raises(config.ConfigError, match="cannot read"):
        config.load(tmp_path / "missing.yml", environ={})


def descriptor(data: bytes, media_type: str = "application/vnd.oci.image.layer.v1.tar") -> dict:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}


def test_manifest_parsing_by_type() -> None:
    oci = {"schemaVersion": 2, "config": descriptor(b"c", "application/vnd.example+json"),
           "layers": [descriptor(b"l")], "subject": descriptor(b"s", "application/vnd.oci.image.manifest.v1+json")}
    parsed = parse(json.dumps(oci).encode(), "application/vnd.oci.image.manifest.v1+json")
    assert len(parsed.blobs) == 2 and parsed.subject is not None
    assert parsed.artifact_type == "application/vnd.example+json"  # the config type, as the spec says
    # without a Content-Type the document decides, as in Distribution
    assert parse(json.dumps(oci).encode(), None).media_type == "application/vnd.oci.image.manifest.v1+json"
    index = {"schemaVersion": 2, "manifests": [descriptor(b"m", "application/vnd.oci.image.manifest.v1+json")]}
    assert detect_media_type(json.dumps(index).encode()) == "application/vnd.oci.image.index.v1+json"
    with pytest.raises(InvalidManifest, match="does not match"):
        parse(json.dumps({**oci, "mediaType": "application/vnd.oci.image.index.v1+json"}).encode(),
              "application/vnd.oci.image.manifest.v1+json")
