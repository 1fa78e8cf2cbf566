"""The web UI's machine identities (/ui/machines): a namespace's owner creates a robot, a robot token whose
secret is shown once and pushes, and removes the robot; an admin sees every token and robot with its
last use and revokes anyone's; others see none of it, and forged forms change nothing."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.auth.app_helpers import add_namespace_owner, push_blob
from tests.auth.conftest import bcrypt_line
from tests.auth.test_tokens_api import RULES, make_client, ui_login

ALICE, BOB, CAROL = ("alice", "alice-pw"), ("bob", "bob-pw"), ("carol", "carol-pw")


@pytest.fixture
def client(tmp_path: Path, htpasswd_file: Path) -> Iterator[TestClient]:
    """alice is the admin; bob owns namespace payments; carol owns nothing."""
    with htpasswd_file.open("a") as f:
        f.write(bcrypt_line(*CAROL) + "\n")
    auth = {"htpasswd": {"path": str(htpasswd_file)}, "access": RULES}
    with make_client(tmp_path, auth) as c:
        add_namespace_owner(c, ("bob", "bob-pw"), "payments")
        yield c


def text(page: str) -> str:
    return html.unescape(page)


def test_an_owner_makes_a_robot_and_its_token_and_removes_it(client: TestClient) -> None:
    csrf = ui_login(client, *BOB)
    assert 'data-testid="machines-link"' in client.get("/ui/tokens").text
    r = client.post("/ui/machines/robots", data={"csrf": csrf, "namespace": "payments", "name": "ci",
                                                 "actions": "pull,push", "description": "the pipeline"})
    assert r.status_code == 200 and "Created robot robot+payments+ci." in text(r.text)
    assert "the pipeline" in r.text and 'data-testid="robots"' in r.text
    r = client.post("/ui/machines/robots", data={"csrf": csrf, "namespace": "payments", "name": "ci",
                                                 "actions": "pull"})
    assert r.status_code == 409 and "robot+payments+ci exists" in text(r.text)

    r = client.post("/ui/machines/robots/robot+payments+ci/tokens",
                    data={"csrf": csrf, "namespace": "payments", "token": "pipeline", "scopes": "pull,push",
                          "expires": "2099-01-01"})
    assert r.status_code == 201, r.text
    secret = re.search(r'data-testid="secret">([^<]+)<', r.text)[1]
    assert secret.startswith("moorage_robot_")
    robot = ("robot+payments+ci", secret)
    assert push_blob(client, "payments/api", b"from the robot", auth=robot)[0].status_code == 201
    assert push_blob(client, "bob/app", b"outside", auth=robot)[0].status_code == 403
    page = client.get("/ui/machines", params={"namespace": "payments"}).text
    assert "pipeline" in page and "2099-01-01T23:59:59Z" in page and secret not in page
    assert re.search(r"from <span class=\"mono\">[^<]+</span>", page)  # its last use, with the address

    r = client.post("/ui/machines/robots/robot+payments+ci/tokens",
                    data={"csrf": csrf, "namespace": "payments", "token": "wide", "scopes": "pull,push,delete"})
    assert r.status_code == 403 and "may not delete" in text(r.text)
    r = client.post("/ui/machines/robots/robot+payments+ci/remove", data={"csrf": "forged", "namespace": "payments"})
    assert r.status_code == 403
    r = client.post("/ui/machines/robots/robot+payments+ci/remove", data={"csrf": csrf, "namespace": "payments"})
    assert r.status_code == 200 and "Removed robot robot+payments+ci." in text(r.text)
    assert client.get("/v2/", auth=robot).status_code == 401


def test_the_admin_sees_and_revokes_every_token(client: TestClient) -> None:
    bobs = client.post("/api/v1/tokens", json={"name": "laptop", "scopes": ["pull"]}, auth=BOB).json()
    assert client.get("/v2/", auth=("bob", bobs["secret"])).status_code == 200
    assert client.post("/api/v1/namespaces/payments/robots", json={"name": "ci"}, auth=BOB).status_code == 201
    robots = client.post("/api/v1/robots/robot+payments+ci/tokens", json={"name": "pipeline", "scopes": ["pull"]},
                         auth=BOB).json()

    csrf = ui_login(client, *ALICE)
    page = client.get("/ui/machines")
    assert page.status_code == 200
    assert "robot+payments+ci" in page.text and "laptop" in page.text and "pipeline" in page.text
    assert bobs["secret"] not in page.text and robots["secret"] not in page.text
    assert "from <span" in page.text  # bob's token was used: when and from where
    assert "laptop" in client.get("/ui/machines", params={"user": "bob"}).text
    r = client.post(f"/ui/machines/tokens/{bobs['id']}/revoke", data={"csrf": csrf, "user": "bob"})
    assert r.status_code == 200 and "Revoked bob's token laptop." in text(r.text)
    assert client.get("/v2/", auth=("bob", bobs["secret"])).status_code == 401
    r = client.post(f"/ui/machines/tokens/{robots['id']}/revoke", data={"csrf": csrf})
    assert r.status_code == 200 and "Revoked robot+payments+ci's token pipeline." in text(r.text)


def test_others_see_nothing_of_it(client: TestClient) -> None:
    bobs = client.post("/api/v1/tokens", json={"name": "laptop", "scopes": ["pull"]}, auth=BOB).json()
    assert client.get("/ui/machines", follow_redirects=False).status_code == 303  # log in first
    csrf = ui_login(client, *CAROL)
    page = client.get("/ui/machines")
    assert page.status_code == 200 and "laptop" not in page.text  # only the namespace picker
    for params in ({"namespace": "payments"}, {"user": "bob"}):
        r = client.get("/ui/machines", params=params)
        assert r.status_code == 403 and "laptop" not in r.text
    r = client.post("/ui/machines/robots", data={"csrf": csrf, "namespace": "payments", "name": "x", "actions": "pull"})
    assert r.status_code == 403 and "only owners of payments" in text(r.text)
    assert client.post(f"/ui/machines/tokens/{bobs['id']}/revoke", data={"csrf": csrf}).status_code == 403
    assert client.get("/v2/", auth=("bob", bobs["secret"])).status_code == 200
