"""Fixtures for end-to-end tests: real `moorage serve` processes, Distribution 2.8.2, real clients.

Reusable by every `tests/e2e/test_*.py`:

* `start_moorage(config=None, root=None, port=None, env=None, scheme=None, ca_file=None, start=True)`
  -> RegistryProcess: `moorage serve CONFIG` on 127.0.0.1 and a free port. `config` (a dict in
  Distribution's config.yml form) is merged over the defaults (`http.addr`, filesystem
  `rootdirectory` in the test's tmp dir, `delete.enabled: true`). Stopped at teardown; its log tail
  is printed when the test failed. `.host`, `.url`, `.root`, `.ref(repo, tag)`, `.http()`,
  `.stop()`, `.start()`, `.restart()`.
* `start_distribution(...)`: the same for Distribution 2.8.2 (Debian `docker-registry`).
* `start_registry(...)` / `registry`: the server under test: Moorage, or Distribution when
  MOORAGE_E2E_TARGET=distribution (to check a scenario against the reference implementation).
* `docker` (isolated DOCKER_CONFIG in `docker_config`), `skopeo`, `podman`, `ctr`, `oras`: real
  clients; `images`: an ImageFactory making unique images offline.
* `chromium`: Debian's chromium, headless, driven by Playwright (one per session); `artifacts`: where
  its screenshots go (helpers.shoot).

A test needing a client that is missing is skipped with a loud reason, or FAILS when CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from . import helpers
from .clients import Buildah, Ctr, Docker, Podman, Skopeo
from .helpers import IN_CI, missing_client, require_binary, run
from .images import ImageFactory
from .servers import (
    DISTRIBUTION,
    MOORAGE,
    RegistryProcess,
    ServerFactory,
    distribution_executable,
    make_server,
    moorage_executable,
)

E2E_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/e2e is marked `e2e` (select with -m e2e, skip with -m 'not e2e')."""
    for item in items:
        if E2E_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """Keep each phase's report on the item, so fixtures can tell whether the test failed."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Say loudly which e2e tests were skipped for a missing client."""
    if helpers.MISSING:
        tr = terminalreporter
        tr.section("E2E CLIENTS MISSING: these end-to-end tests did NOT run", sep="!", red=True, bold=True)
        for reason in dict.fromkeys(helpers.MISSING):
            tr.line(reason, red=True)
        tr.line("install them with `bash .ci/run` (as root); in CI (CI=true) they fail instead", red=True)


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(
        getattr(request.node, f"rep_{w}", None) is not None and getattr(request.node, f"rep_{w}").failed
        for w in ("setup", "call")
    )


# ----------------------------------------------------------------------------------------- servers


@pytest.fixture(scope="session")
def e2e_target() -> str:
    """The server the generic scenarios run against: `moorage` (default) or `distribution`."""
    target = os.environ.get("MOORAGE_E2E_TARGET", MOORAGE).strip().lower()
    if target not in (MOORAGE, DISTRIBUTION):
        raise pytest.UsageError(f"MOORAGE_E2E_TARGET must be {MOORAGE} or {DISTRIBUTION}, not {target!r}")
    return target


@pytest.fixture(scope="session")
def moorage_bin() -> str:
    """Path of the `moorage` console script."""
    exe = moorage_executable()
    if exe is None:
        missing_client("`moorage` console script not found", "run `pip install -e '.[test]'` first")
        raise AssertionError("unreachable")
    return exe


@pytest.fixture(scope="session")
def distribution_bin() -> str:
    """Path of Distribution 2.8.x (Debian package docker-registry)."""
    exe = distribution_executable()
    if exe is None:
        missing_client("`docker-registry` (Distribution 2.8.2) not on PATH", "apt-get install docker-registry")
        raise AssertionError("unreachable")
    return exe


def _server_factory(
    kind: str, executable: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[ServerFactory]:
    servers: list[RegistryProcess] = []

    def factory(
        config: Mapping[str, Any] | None = None,
        *,
        root: Path | None = None,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        scheme: str | None = None,
        ca_file: Path | None = None,
        start: bool = True,
    ) -> RegistryProcess:
        for attempt in range(3):
            workdir = tmp_path / f"{kind}-{len(servers) + 1}"
            server = make_server(
                kind, executable, workdir, config=config, root=root, port=port, env=env, scheme=scheme, ca_file=ca_file
            )
            servers.append(server)
            if not start:
                return server
            try:
                return server.start()
            except RuntimeError:
                # another process took the free port in between: try another one (unless it was given)
                if port is not None or attempt == 2 or "address already in use" not in server.log_tail().lower():
                    raise
        raise AssertionError("unreachable")

    yield factory
    failed = _failed(request)
    for server in servers:
        server.stop()
        if failed:
            print(f"\n----- {server.kind} on {server.host} (root {server.root}), last log lines -----")
            print(server.log_tail())


@pytest.fixture
def start_moorage(moorage_bin: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerFactory]:
    """Factory: start `moorage serve` with a config dict merged over the defaults."""
    yield from _server_factory(MOORAGE, moorage_bin, request, tmp_path)


@pytest.fixture
def start_distribution(
    distribution_bin: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[ServerFactory]:
    """Factory: start Distribution 2.8.2 with a config dict merged over the defaults."""
    yield from _server_factory(DISTRIBUTION, distribution_bin, request, tmp_path)


@pytest.fixture
def start_registry(e2e_target: str, request: pytest.FixtureRequest) -> ServerFactory:
    """Factory for the server under test (Moorage unless MOORAGE_E2E_TARGET=distribution)."""
    name = "start_distribution" if e2e_target == DISTRIBUTION else "start_moorage"
    factory: ServerFactory = request.getfixturevalue(name)
    return factory


@pytest.fixture
def registry(start_registry: ServerFactory) -> RegistryProcess:
    """A started server under test with default config and an empty data directory."""
    return start_registry()


@pytest.fixture
def moorage_only(registry: RegistryProcess) -> None:
    """Skip when the server under test is the Distribution stand-in (feature it lacks)."""
    if registry.kind != MOORAGE:
        pytest.skip("Distribution 2.8.2 (stand-in target) lacks this feature")


# ----------------------------------------------------------------------------------------- clients


@pytest.fixture(scope="session")
def docker_bin() -> str:
    """The docker CLI (Debian's /usr/bin/docker when present) with a daemon that answers."""
    exe = "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else shutil.which("docker")
    if exe is None:
        missing_client("docker CLI not installed", "apt-get install docker.io (see .ci/run)")
        raise AssertionError("unreachable")
    p = run([exe, "info", "--format", "{{.ServerVersion}}"], check=False, timeout=60)
    if p.returncode != 0:
        missing_client(
            "dockerd is not answering on /var/run/docker.sock",
            f"start containerd + dockerd as .ci/run does ({p.stderr.strip()[:200]})",
        )
    return exe


@pytest.fixture
def docker_config(tmp_path: Path) -> Path:
    """An empty, private DOCKER_CONFIG directory (no credentials or helpers from the machine)."""
    d = tmp_path / "docker-config"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"auths": {}}))
    return d


@pytest.fixture
def docker(docker_bin: str, docker_config: Path) -> Iterator[Docker]:
    """The docker CLI with an isolated DOCKER_CONFIG; removes what it loaded/tagged/pulled."""
    d = Docker(docker_bin, docker_config)
    yield d
    d.cleanup()


@pytest.fixture
def skopeo(tmp_path: Path) -> Skopeo:
    """skopeo with an isolated auth file."""
    return Skopeo(require_binary("skopeo", "apt-get install skopeo"), tmp_path / "skopeo")


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[Podman]:
    """podman with private vfs storage and auth file."""
    p = Podman(require_binary("podman", "apt-get install podman"), tmp_path / "podman")
    yield p
    p.cleanup()


@pytest.fixture
def buildah(tmp_path: Path) -> Iterator[Buildah]:
    """buildah with private vfs storage and auth file."""
    b = Buildah(require_binary("buildah", "apt-get install buildah"), tmp_path / "buildah")
    yield b
    b.cleanup()


@pytest.fixture
def ctr() -> Iterator[Ctr]:
    """containerd's ctr in a fresh namespace (needs containerd on its default socket)."""
    exe = require_binary("ctr", "apt-get install containerd")
    c = Ctr(exe)
    if run([exe, "version"], check=False, timeout=30).returncode != 0:
        missing_client(
            "containerd is not answering on /run/containerd/containerd.sock",
            "start containerd as .ci/run does",
        )
    yield c
    c.cleanup()


@pytest.fixture(scope="session")
def oras() -> ModuleType:
    """tests.e2e.oras_cli (oras-py as a library); needs the PyPI package `oras`."""
    try:
        from . import oras_cli
    except ImportError as e:
        missing_client(f"PyPI package `oras` not importable ({e})", "pip install -e '.[test]'")
        raise AssertionError("unreachable") from e
    return oras_cli


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's chromium through Playwright (`playwright install` cannot download browsers here).  One
    per module, not per session: Playwright's sync API keeps an event loop running in the main thread
    while it is open, and a later module's ``asyncio.run`` refuses to start under it."""
    executable = os.environ.get("MOORAGE_CHROMIUM", "/usr/bin/chromium")
    if not os.access(executable, os.X_OK):
        missing_client(f"chromium not found at {executable}", "bash .ci/setup.d/ui.sh (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        missing_client(f"PyPI package `playwright` not importable ({e})", "pip install -e '.[test]'")
        raise AssertionError("unreachable") from e
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable,
                                    args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where browser tests put screenshots: $MOORAGE_ARTIFACTS/ui, else the test's tmp dir."""
    base = os.environ.get("MOORAGE_ARTIFACTS")
    directory = Path(base) / "ui" if base else tmp_path / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def images(tmp_path: Path) -> ImageFactory:
    """Makes unique images offline under the test's tmp dir."""
    return ImageFactory(tmp_path / "images")


@pytest.fixture
def ci() -> bool:
    """True when running in CI (CI=true)."""
    return IN_CI
