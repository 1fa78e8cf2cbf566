"""Property-based tests (Hypothesis) of every parser that sees client input (issue 14).

Each parser, given anything at all, either returns a well-formed value or refuses with its own error
(the registry's error code, ``None``, or the config's ConfigError) - never another exception - and what
it accepts round-trips.  Examples are limited so that the whole module runs in seconds.
"""

from __future__ import annotations

import json
import string
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from auth.basic import basic_credentials
from auth.scopes import format_scopes, parse_scope
from registry import config as config_module
from registry.api.paging import MAX_PAGE, page_size
from registry.config import ConfigError
from registry.errors import RegistryError
from registry.http.ranges import Unsatisfiable, parse_content_range, parse_range
from registry.mediatypes import MAX_DEPTH, InvalidManifest, nesting_within, parse
from registry.mediatypes.descriptor import MAX_SIZE
from registry.names import MAX_NAME_LENGTH, NAME_RE, check_name, check_tag, digest_param, is_tag
from registry.ui.image_config import read_config
from storage.digests import HEX_LENGTH, InvalidDigest, parse_digest
from storage.driver.s3_config import S3Parameters

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
HEX = "0123456789abcdef"

# --- strategies ---------------------------------------------------------------------------------------

alnum = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8)
separator = st.sampled_from([".", "_", "__", "-", "--"])
component = st.tuples(alnum, st.lists(st.tuples(separator, alnum), max_size=2)).map(
    lambda parts: parts[0] + "".join(sep + word for sep, word in parts[1]))
names = st.lists(component, min_size=1, max_size=5).map("/".join).filter(lambda n: len(n) <= MAX_NAME_LENGTH)
tags = st.from_regex(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}", fullmatch=True)
digests = st.sampled_from(sorted(HEX_LENGTH)).flatmap(
    lambda alg: st.text(HEX, min_size=HEX_LENGTH[alg], max_size=HEX_LENGTH[alg]).map(lambda h: f"{alg}:{h}"))
# text that looks like the real thing often enough to reach deep into the parsers
digestish = st.one_of(digests, st.text(HEX + "sha2561:+._-/%GZ", max_size=140), st.text(max_size=80))
nameish = st.one_of(names, st.text(string.ascii_letters + string.digits + "._-/:%@", max_size=300), st.text())
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@st.composite
def descriptors(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "mediaType": draw(st.sampled_from(["application/vnd.oci.image.layer.v1.tar+gzip",
                                           "application/vnd.oci.image.config.v1+json", "text/plain"])),
        "digest": draw(digests),
        "size": draw(st.integers(min_value=0, max_value=MAX_SIZE)),
    }


@st.composite
def manifests(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": draw(descriptors()),
                           "layers": draw(st.lists(descriptors(), max_size=5))}
    if draw(st.booleans()):
        doc["annotations"] = draw(st.dictionaries(st.text(max_size=10), st.text(max_size=30), max_size=3))
    return doc


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """A valid manifest with one field replaced by anything."""
    doc = draw(manifests())
    target = draw(st.sampled_from(["config", "layers", "schemaVersion", "mediaType", "annotations", "subject",
                                   "layer-digest", "layer-size", "layer-mediaType"]))
    value = draw(json_values)
    if target.startswith("layer-") and doc["layers"]:
        doc["layers"][0][target.removeprefix("layer-")] = value
    else:
        doc[target] = value
    return doc


# --- digests, names, tags -----------------------------------------------------------------------------


@FAST
@given(digests)
def test_valid_digests_round_trip(text: str) -> None:
    assert str(parse_digest(text)) == text
    assert str(digest_param(text)) == text


@FAST
@given(digestish)
@example("sha256/" + "a" * 64)
@example("sha256:" + "A" * 64)
def test_any_digest_text_parses_or_is_digest_invalid(text: str) -> None:
    try:
        digest = parse_digest(text)
    except InvalidDigest:
        try:
            digest_param(text)
        except RegistryError as e:
            assert e.code == "DIGEST_INVALID" and e.status == 400
        else:
            raise AssertionError("digest_param accepted what parse_digest refused") from None
        return
    assert str(digest) == text and len(digest.hex) == HEX_LENGTH[digest.algorithm]
    assert set(digest.hex) <= set(HEX)


@FAST
@given(names)
def test_valid_names_are_accepted(name: str) -> None:
    assert check_name(name) == name


@FAST
@given(nameish)
@example("a" * 256)
@example("team//app")
@example("Team/app")
def test_any_name_is_accepted_only_if_it_follows_the_grammar(name: str) -> None:
    try:
        check_name(name)
    except RegistryError as e:
        assert e.code == "NAME_INVALID"
        assert len(name) > MAX_NAME_LENGTH or not NAME_RE.fullmatch(name)
    else:
        assert len(name) <= MAX_NAME_LENGTH and NAME_RE.fullmatch(name)


@FAST
@given(st.one_of(tags, st.text(max_size=200)))
@example("a" * 129)
@example(".hidden")
def test_tags(tag: str) -> None:
    if is_tag(tag):
        assert check_tag(tag) == tag and 1 <= len(tag) <= 128 and ":" not in tag and "/" not in tag
    else:
        try:
            check_tag(tag)
        except RegistryError as e:
            assert e.code == "TAG_INVALID"
        else:
            raise AssertionError("check_tag accepted a non-tag")


# --- Range and Content-Range --------------------------------------------------------------------------

range_headers = st.one_of(
    st.builds(lambda a, b: f"bytes={a}-{b}", st.integers(0, 10**6) | st.just(""), st.integers(0, 10**6) | st.just("")),
    st.text(string.digits + "bytes=-, */", max_size=40),
    st.text(max_size=40),
)


@FAST
@given(range_headers, st.integers(min_value=0, max_value=10**6))
@example("bytes=-0", 10)
@example("bytes=5-", 0)
@example("bytes=" + "9" * 5000 + "-", 10)
def test_range_is_inside_the_object_or_unsatisfiable(header: str, size: int) -> None:
    try:
        selected = parse_range(header, size)
    except Unsatisfiable:
        return
    if selected is not None:
        start, end = selected
        assert 0 <= start <= end < size


@FAST
@given(st.integers(0, 2**63), st.integers(0, 2**63), st.sampled_from(["{a}-{b}", "bytes={a}-{b}", "bytes {a}-{b}/*"]))
def test_content_range_round_trips(a: int, b: int, form: str) -> None:
    parsed = parse_content_range(form.format(a=a, b=b))
    assert parsed == ((a, b) if b >= a else None)


@FAST
@given(st.text(max_size=60))
@example("0-")
@example("-1-5")
@example("0-" + "9" * 5000)
def test_any_content_range_parses_or_is_none(header: str) -> None:
    parsed = parse_content_range(header)
    if parsed is not None:
        start, end = parsed
        assert 0 <= start <= end


# --- pagination ---------------------------------------------------------------------------------------


class FakeRequest:
    def __init__(self, n: str | None) -> None:
        self.query_params = {} if n is None else {"n": n}


@FAST
@given(st.one_of(st.none(), st.integers(-10, 10**9).map(str), st.text(max_size=20)))
@example("1" * 5000)
@example("-0")
@example("\u0661")  # an Arabic-Indic digit: int() takes it
def test_page_size_is_bounded_or_pagination_number_invalid(n: str | None) -> None:
    try:
        size = page_size(FakeRequest(n), 100)  # type: ignore[arg-type]
    except RegistryError as e:
        assert e.code == "PAGINATION_NUMBER_INVALID" and e.status == 400
        return
    assert size is not None and 0 <= size <= MAX_PAGE


# --- manifests and descriptors ------------------------------------------------------------------------


@FAST
@given(manifests())
def test_valid_manifests_parse_and_keep_their_descriptors(doc: dict[str, Any]) -> None:
    parsed = parse(json.dumps(doc).encode(), OCI_MANIFEST)
    assert [str(d.digest) for d in parsed.blobs] == [doc["config"]["digest"]] + [x["digest"] for x in doc["layers"]]
    assert [d.size for d in parsed.blobs] == [doc["config"]["size"]] + [x["size"] for x in doc["layers"]]


@FAST
@given(st.one_of(mutated(), json_values), st.sampled_from([OCI_MANIFEST, OCI_INDEX, "application/json", None,
                                                            "application/vnd.docker.distribution.manifest.v2+json"]))
def test_any_document_parses_or_is_manifest_invalid(doc: Any, content_type: str | None) -> None:
    try:
        parsed = parse(json.dumps(doc).encode(), content_type)
    except InvalidManifest as e:
        assert e.message  # the API answers it with MANIFEST_INVALID
        return
    for descriptor in [*parsed.blobs, *parsed.children]:
        assert 0 <= descriptor.size <= MAX_SIZE


@FAST
@given(st.binary(max_size=300))
@example(b"[" * 100_000 + b"]" * 100_000)
@example(b'{"a":' * 50_000 + b"1" + b"}" * 50_000)
@example(b"\xff\xfe{}")
def test_any_bytes_parse_or_are_manifest_invalid(content: bytes) -> None:
    try:
        parse(content, OCI_MANIFEST)
    except InvalidManifest as e:
        assert e.message


@FAST
@given(st.integers(0, 200), st.sampled_from(["[", '{"k":']), st.text(alphabet='[]{}"\\ab', max_size=30))
def test_nesting_check_agrees_with_the_depth(depth: int, opening: str, noise: str) -> None:
    closing = "]" if opening == "[" else "}"
    doc = opening * depth + json.dumps(noise) + closing * depth
    assert json.loads(doc) is not None
    assert nesting_within(doc.encode(), MAX_DEPTH) == (depth <= MAX_DEPTH)


tricky_text = st.text(alphabet='[]{}"\\ab,:', max_size=8)  # brackets, quotes and escapes inside strings
nested_json = st.recursive(
    st.none() | st.integers() | tricky_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky_text, inner, max_size=3),
    max_leaves=40,
)


def json_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(json_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(json_depth, value.values()), default=0)
    return 0


@FAST
@given(nested_json, st.integers(0, 6), st.booleans())
def test_nesting_check_is_exact_on_any_json(doc: Any, limit: int, spaced: bool) -> None:
    text = json.dumps(doc, indent=1 if spaced else None, ensure_ascii=False)
    assert nesting_within(text.encode(), limit) == (json_depth(doc) <= limit)


# --- image configs as the web UI reads them -----------------------------------------------------------

CONFIG_KEYS = ["Entrypoint", "Cmd", "Env", "Labels", "WorkingDir", "User", "ExposedPorts"]
strings = st.text(max_size=12)
string_lists = st.lists(strings, max_size=4)


@st.composite
def image_configs(draw: st.DrawFn) -> tuple[Any, bool]:
    """An image config and whether it is well-formed: each field of the right type, or of any type."""
    well_formed = draw(st.booleans())

    def value(right: st.SearchStrategy[Any]) -> Any:
        return draw(right if well_formed else st.one_of(right, json_values))

    inner = {key: value({"Entrypoint": string_lists, "Cmd": string_lists, "Env": string_lists,
                         "Labels": st.dictionaries(strings, strings, max_size=3), "WorkingDir": strings,
                         "User": strings, "ExposedPorts": st.dictionaries(strings, st.just({}), max_size=3)}[key])
             for key in draw(st.lists(st.sampled_from(CONFIG_KEYS), unique=True))}
    history = st.lists(st.fixed_dictionaries({"created": strings, "created_by": strings,
                                              "empty_layer": st.booleans()}), max_size=3)
    doc = {"architecture": value(strings), "os": value(strings), "created": value(strings),
           "config": value(st.just(inner)), "history": value(history)}
    return (doc if well_formed else draw(st.one_of(st.just(doc), json_values))), well_formed


def is_text_tuple(value: Any) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, str) for v in value)


@FAST
@given(image_configs())
@example((["x"], False))
@example(({"config": ["x"]}, False))
@example(({"config": {"Labels": ["a=b"], "Env": 5, "Entrypoint": {"x": 1}}, "history": "no"}, False))
def test_any_image_config_reads_into_what_the_pages_show(case: tuple[Any, bool]) -> None:
    doc, well_formed = case
    config = read_config(doc)
    assert all(isinstance(v, str) for v in (config.os, config.architecture, config.variant, config.working_dir,
                                            config.user, config.platform))
    assert config.created is None or isinstance(config.created, str)
    assert all(is_text_tuple(v) for v in (config.entrypoint, config.cmd, config.env, config.exposed_ports,
                                          config.problems))
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in config.labels.items())
    assert all(isinstance(h.created, str) and isinstance(h.command, str) and isinstance(h.empty_layer, bool)
               for h in config.history)
    if well_formed:
        assert config.problems == ()
        assert config.os == doc["os"] and config.labels == doc["config"].get("Labels", {})
        assert config.env == tuple(doc["config"].get("Env", ()))
        assert [h.command for h in config.history] == [h["created_by"] for h in doc["history"]]


# --- token scopes and Basic credentials ---------------------------------------------------------------


@FAST
@given(st.sampled_from(["repository", "registry"]), st.one_of(names, st.just("host:5000/app")),
       st.lists(st.sampled_from(["pull", "push", "delete", "*"]), min_size=1, max_size=3, unique=True))
def test_scopes_round_trip(type_: str, name: str, actions: list[str]) -> None:
    from auth.base import Access

    text = format_scopes([Access(type_, name, a) for a in actions])
    assert parse_scope(text) == (type_, name, actions)


@FAST
@given(st.text(max_size=120))
@example("repository::pull")
@example(":::")
def test_any_scope_parses_or_is_none(scope: str) -> None:
    parsed = parse_scope(scope)
    if parsed is not None:
        type_, name, actions = parsed
        assert type_ and name and all(actions) and f"{type_}:{name}:" in scope


@FAST
@given(st.one_of(st.text(max_size=100), st.binary(max_size=60).map(lambda b: "Basic " + __import__("base64").b64encode(b).decode())))
@example("Basic Og==")
@example("Basic !!!")
def test_basic_credentials_parse_or_are_none(value: str) -> None:
    parsed = basic_credentials(value)
    if parsed is not None:
        user, _password = parsed
        assert user and ":" not in user


# --- the config loader --------------------------------------------------------------------------------

config_leaves = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.text(max_size=12),
                          st.sampled_from(["5s", "1h30m", "tcp", "uvicorn", "granian", "debug", "0.0.0.0:5000", ""]))
config_values = st.recursive(config_leaves, lambda inner: st.lists(inner, max_size=3)
                             | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
SECTIONS = {
    "http": ["addr", "host", "prefix", "relativeurls", "draintimeout", "tls", "debug", "headers", "trustedproxies",
             "workers", "server", "maxheadersize", "maxheaders", "headertimeout", "net"],
    "storage": ["filesystem", "delete", "maintenance", "redirect", "s3", "cache"],
    "log": ["level", "accesslog", "formatter"],
    "validation": ["disabled", "enabled", "manifests"],
    "auth": ["htpasswd", "token", "access", "tokenserver", "brake"],
}


@st.composite
def raw_configs(draw: st.DrawFn) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for section in draw(st.lists(st.sampled_from(sorted(SECTIONS)), max_size=3, unique=True)):
        keys = draw(st.lists(st.sampled_from(SECTIONS[section]), max_size=3, unique=True))
        raw[section] = {key: draw(config_values) for key in keys}
    if draw(st.booleans()):
        raw[draw(st.text(max_size=8))] = draw(config_values)
    return raw


@FAST
@given(raw_configs())
@example({"http": {"addr": None}})
@example({"storage": {"filesystem": "x"}})
@example({"http": {"maxheadersize": "lots"}})
def test_config_loads_or_names_what_is_wrong(raw: dict[str, Any]) -> None:
    try:
        config_module.parse(raw)
    except ConfigError as e:
        assert str(e)


@FAST
@given(st.dictionaries(st.sampled_from(["bucket", "region", "regionendpoint", "chunksize", "secure", "readtimeout",
                                        "connecttimeout", "maxattempts", "breakerthreshold", "breakercooldown",
                                        "probeafter", "probetimeout", "storageclass", "accesskey", "secretkey", "maxthreads"]),
                       config_leaves, max_size=6))
@example({"bucket": "b", "region": "r", "readtimeout": "5x"})
def test_s3_parameters_load_or_name_the_key(raw: dict[str, Any]) -> None:
    try:
        S3Parameters.parse(raw)
    except ValueError as e:
        assert str(e).startswith("storage.s3.")
