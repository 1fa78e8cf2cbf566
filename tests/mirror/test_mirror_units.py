"""Config parsing, routing and upstream auth (anonymous, Basic, Docker token) without a network."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from registry.config import ConfigError, parse
from registry.errors import RegistryError
from registry.instance import Registry
from registry.mirror.config import DEFAULT_TTL, Upstream, parse_proxy
from registry.mirror.source import UpstreamSource
from registry.mirror.upstream import UpstreamClient, UpstreamError, UpstreamNotFound


def test_distribution_form() -> None:
    config = parse_proxy({"remoteurl": "https://registry-1.docker.io/", "username": "u", "password": "p",
                          "ttl": "10m"})
    assert config is not None
    (up,) = config.upstreams
    assert (up.prefix, up.url, up.username, up.password, up.ttl) == ("", "https://registry-1.docker.io", "u",
                                                                      "p", 600.0)
    assert up.ns == ("docker.io",) and up.docker_hub


def test_list_form() -> None:
    config = parse_proxy({"upstreams": [
        {"prefix": "dockerhub", "url": "https://registry-1.docker.io"},
        {"prefix": "ghcr", "remoteurl": "https://ghcr.io", "ttl": 30, "ns": ["ghcr.io", "ghcr"]},
        {"prefix": "local", "url": "http://127.0.0.1:15555"},
    ]})
    assert config is not None
    hub, ghcr, local = config.upstreams
    assert hub.ttl == DEFAULT_TTL and hub.ns == ("docker.io",)
    assert ghcr.ttl == 30.0 and ghcr.ns == ("ghcr.io", "ghcr")
    assert local.ns == ("127.0.0.1:15555",)
    assert parse_proxy({}) is None


@pytest.mark.parametrize(("raw", "key"), [
    ({"username": "u"}, "proxy.remoteurl"),
    ({"remoteurl": "ftp://x"}, "proxy.url"),
    ({"remoteurl": "https://x/v2"}, "proxy.url"),
    ({"remoteurl": "https://x", "username": "u"}, "proxy: username and password"),
    ({"remoteurl": "https://x", "prefix": "a"}, "proxy.prefix"),
    ({"remoteurl": "https://x", "ttl": "5 parsecs"}, "proxy.ttl"),
    ({"upstreams": []}, "proxy.upstreams"),
    ({"upstreams": [{"url": "https://x"}]}, "proxy.upstreams[0].prefix"),
    ({"upstreams": [{"prefix": "Bad", "url": "https://x"}]}, "proxy.upstreams[0].prefix"),
    ({"upstreams": [{"prefix": "a", "url": "https://x"}, {"prefix": "a", "url": "https://y"}]}, "twice"),
    ({"upstreams": [{"prefix": "a", "url": "https://x", "colour": 1}]}, "proxy.upstreams[0].colour"),
    ({"upstreams": [], "remoteurl": "https://x"}, "not both"),
])
def test_config_errors(raw: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_proxy(raw)


def make_mirror(tmp_path: Path, proxy: dict) -> UpstreamSource:
    mirror = Registry.build(parse({"storage": {"filesystem": {"rootdirectory": str(tmp_path)}}, "proxy": proxy})).mirror
    assert mirror is not None
    return mirror


def test_routing(tmp_path: Path) -> None:
    mirror = make_mirror(tmp_path, {"upstreams": [
        {"prefix": "hub", "url": "https://registry-1.docker.io"},
        {"prefix": "ghcr", "url": "https://ghcr.io"},
        {"prefix": "ghcr/team", "url": "https://team.example"},
    ]})

    def where(name: str, ns: str | None = None) -> tuple[str, str, str] | None:
        route = mirror.route(name, ns)
        return None if route is None else (route.upstream.url, route.local, route.remote)

    assert where("hub/library/nginx") == ("https://registry-1.docker.io", "hub/library/nginx", "library/nginx")
    assert where("hub/nginx") == ("https://registry-1.docker.io", "hub/nginx", "library/nginx")
    assert where("ghcr/org/tool") == ("https://ghcr.io", "ghcr/org/tool", "org/tool")
    assert where("ghcr/team/tool") == ("https://team.example", "ghcr/team/tool", "tool")  # longest prefix
    assert where("hub") is None and where("mine/app") is None and where("hubx/app") is None
    assert where("library/nginx", "docker.io") == ("https://registry-1.docker.io", "hub/library/nginx",
                                                   "library/nginx")
    assert where("org/tool", "ghcr.io") == ("https://ghcr.io", "ghcr/org/tool", "org/tool")
    assert where("org/tool", "quay.io") is None
    with pytest.raises(RegistryError):
        mirror.route("x" * 254, "ghcr.io")  # the local name would be too long


def test_root_upstream_maps_everything(tmp_path: Path) -> None:
    mirror = make_mirror(tmp_path, {"remoteurl": "https://registry-1.docker.io"})
    route = mirror.route("library/nginx", None)
    assert route is not None and (route.local, route.remote) == ("library/nginx", "library/nginx")
    route = mirror.route("nginx", "docker.io")
    assert route is not None and (route.local, route.remote) == ("nginx", "library/nginx")


# ------------------------------------------------------------------------------------ upstream auth

UP = Upstream(prefix="", url="https://up.test", username="alice", password="s3cret", ttl=60, ns=("up.test",))
BASIC = "Basic " + base64.b64encode(b"alice:s3cret").decode()


def client_for(handler: Callable[[httpx.Request], httpx.Response], upstream: Upstream = UP) -> UpstreamClient:
    return UpstreamClient(upstream, httpx.AsyncClient(transport=httpx.MockTransport(handler)))


async def fetch(client: UpstreamClient, name: str = "team/app") -> int:
    async with client.open("GET", name, "manifests", "v1") as response:
        return response.status_code


def test_anonymous() -> None:
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, content=b"{}")

    anonymous = Upstream("", "https://up.test", None, None, 60, ())
    assert asyncio.run(fetch(client_for(handler, anonymous))) == 200
    assert seen == [None]


def test_basic_challenge_then_preemptive() -> None:
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        if request.headers.get("authorization") != BASIC:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="up"'})
        return httpx.Response(200)

    client = client_for(handler)

    async def twice() -> None:
        assert await fetch(client) == 200
        assert await fetch(client) == 200

    asyncio.run(twice())
    assert seen == [None, BASIC, BASIC]


class TokenServer:
    """A registry behind a Docker token server: tokens are per scope and expire."""

    def __init__(self, expires_in: int = 300) -> None:
        self.expires_in = expires_in
        self.issued: list[tuple[str, str | None]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            self.issued.append((request.url.params["scope"], request.headers.get("authorization")))
            assert request.url.params["service"] == "up.test"
            token = f"tok-{len(self.issued)}-{request.url.params['scope']}"
            return httpx.Response(200, json={"token": token, "expires_in": self.expires_in})
        if request.url.path.startswith("/v2/missing/"):
            return httpx.Response(404)
        name = request.url.path.split("/")[2] + "/" + request.url.path.split("/")[3]
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer tok-") or not auth.endswith(f"repository:{name}:pull"):
            challenge = (f'Bearer realm="https://auth.test/token",service="up.test",'
                         f'scope="repository:{name}:pull"')
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        return httpx.Response(200)


def test_token_fetched_once_per_scope_with_credentials() -> None:
    server = TokenServer()
    client = client_for(server)

    async def scenario() -> None:
        await asyncio.gather(*(fetch(client) for _ in range(5)))
        await fetch(client, "team/other")
        await fetch(client)

    asyncio.run(scenario())
    assert [scope for scope, _ in server.issued] == ["repository:team/app:pull", "repository:team/other:pull"]
    assert all(auth == BASIC for _, auth in server.issued)
    assert client.requests["GET token"] == 2


def test_expired_token_is_renewed() -> None:
    server = TokenServer(expires_in=0)
    client = client_for(server)

    async def scenario() -> None:
        await fetch(client)
        await fetch(client)

    asyncio.run(scenario())
    assert len(server.issued) == 2


def test_auth_failures_and_404() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="x"'})

    anonymous = Upstream("", "https://up.test", None, None, 60, ())
    with pytest.raises(UpstreamError, match="username/password"):
        asyncio.run(fetch(client_for(refuse, anonymous)))
    with pytest.raises(UpstreamError) as e:
        asyncio.run(fetch(client_for(refuse)))
    assert e.value.status == 401
    with pytest.raises(UpstreamNotFound):
        asyncio.run(fetch(client_for(TokenServer()), "missing/app"))

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(UpstreamError):
        asyncio.run(fetch(client_for(down)))


def test_body_breaking_off_is_an_upstream_error() -> None:
    class Broken(httpx.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[no-untyped-def]
            yield b"{"
            raise httpx.ReadError("connection reset")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Broken())

    async def read() -> None:
        async with client_for(handler).open("GET", "team/app", "manifests", "v1") as response:
            await response.aread()

    with pytest.raises(UpstreamError, match="connection reset"):
        asyncio.run(read())
