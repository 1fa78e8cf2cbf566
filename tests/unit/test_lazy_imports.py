"""`moorage serve` imports what its config uses, and chooses the metrics' mode before any metric holds a value.

Each case runs in a fresh interpreter: the modules a process holds are memory that every worker shares
or copies (boto3 alone is ~9 MiB, httpx with its command-line extras ~6 MiB).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

PROBE = """
import json, sys
import registry.cli, registry.http.server
from registry import config
cfg = config.load(sys.argv[1])
before_app = sorted(m for m in sys.modules if m.split(".")[0] in {targets})
from registry.http.app import create_app
create_app(cfg)
with_app = sorted(m for m in sys.modules if m.split(".")[0] in {targets})
print(json.dumps({{"before_app": before_app, "with_app": with_app}}))
"""
TARGETS = {"prometheus_client", "httpx", "boto3", "botocore", "jinja2", "sqlalchemy", "jwt", "cryptography"}


def imported(tmp_path: Path, settings: dict) -> tuple[set[str], set[str]]:
    """Top-level packages of TARGETS imported once the config is read, and once the app is built."""
    cfg = tmp_path / "config.yml"
    cfg.write_text(yaml.safe_dump({"storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}},
                                   **settings}))
    out = subprocess.run([sys.executable, "-c", PROBE.format(targets=sorted(TARGETS)), str(cfg)],
                         capture_output=True, text=True, timeout=120, check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    return ({m.split(".")[0] for m in found["before_app"]}, {m.split(".")[0] for m in found["with_app"]})


def test_defaults_import_neither_s3_nor_http_clients(tmp_path: Path) -> None:
    before, with_app = imported(tmp_path, {})
    assert not before & {"httpx", "boto3", "botocore", "jinja2"}
    assert with_app == {"prometheus_client", "jinja2"}  # the UI is on by default


def test_logins_bring_the_database_and_tokens_bring_pyjwt(tmp_path: Path) -> None:
    """SQLAlchemy (~30 MiB) only where someone can log in (their tokens, UI sessions and shared brake
    counts live in the database); PyJWT and cryptography only with token auth.  Both are imported while
    the app is built, before the workers fork, so the workers share them."""
    from auth.htpasswd import set_password

    set_password(tmp_path / "htpasswd", "alice", "a password", 4)
    before, with_app = imported(tmp_path, {"auth": {"htpasswd": {"realm": "r", "path": str(tmp_path / "htpasswd")}}})
    assert not before & {"sqlalchemy", "jwt", "cryptography"}
    assert with_app == {"prometheus_client", "jinja2", "sqlalchemy"}
    from auth.keygen import write_keypair

    write_keypair(tmp_path / "token.key", tmp_path / "token.crt", "ES256", "signer", 30, False)
    token = {"realm": "https://auth.test/token", "service": "registry.test", "issuer": "auth.test",
             "rootcertbundle": str(tmp_path / "token.crt")}
    _, with_app = imported(tmp_path, {"auth": {"token": token}})
    assert {"jwt", "cryptography"} <= with_app and "sqlalchemy" not in with_app


def test_without_the_ui_no_jinja2(tmp_path: Path) -> None:
    _, with_app = imported(tmp_path, {"ui": {"enabled": False}})
    assert "jinja2" not in with_app


@pytest.mark.parametrize("settings", [
    {"notifications": {"endpoints": [{"name": "hook", "url": "http://127.0.0.1:9/events"}]}},
    {"proxy": {"remoteurl": "http://127.0.0.1:9"}},
    {"replication": {"remotes": [{"name": "there", "url": "http://127.0.0.1:9"}],
                     "rules": [{"name": "to-there", "remote": "there", "repositories": ["team/**"]}]}},
])
def test_notifications_a_mirror_and_replication_bring_their_http_client(tmp_path: Path, settings: dict) -> None:
    before, with_app = imported(tmp_path, settings)
    assert "httpx" not in before
    assert "httpx" in with_app


def test_metrics_imported_with_the_config_hold_no_value_yet() -> None:
    """prometheus-client may be imported with the config's modules (auth's, storage's metrics): the
    multiprocess mode chosen afterwards holds for them because every one of them has labels, so none
    holds a value before its first ``labels()`` (an unlabelled one would keep counting alone in each worker)."""
    probe = """
import sys
import registry.cli
from registry import config
config.load(None)
from prometheus_client import REGISTRY
names = [m for m in sys.modules if m.endswith(".metrics") and m.split(".")[0] in ("auth", "storage", "registry")]
assert "registry.events.metrics" not in names, names
holding = [s.name for family in REGISTRY.collect() for s in family.samples
           if family.name.startswith("moorage_")]
print("holding:", holding, names)
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.startswith("holding: []"), out.stdout + out.stderr


def test_a_late_http_metrics_import_is_refused() -> None:
    probe = """
import registry.events.metrics
from registry import config
from registry.http.server import multiprocess_metrics
cfg = config.parse({"http": {"workers": 2, "debug": {"addr": "127.0.0.1:0", "prometheus": {"enabled": True}}}})
try:
    multiprocess_metrics(cfg)
except RuntimeError as e:
    print("refused:", e)
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.startswith("refused: registry.events.metrics was imported"), out.stdout + out.stderr
