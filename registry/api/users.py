"""``/api/v1/users`` (admins; a user sees and changes themselves) and ``/api/v1/account`` (the caller)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from auth.policy import namespaces_of
from auth.terms import UNSET, Caller
from registry.api.management import body, paged, time
from storage.database.records import UserRecord

if TYPE_CHECKING:
    from auth.manage import Management

CREATE = {"name": str, "password": str, "email": str, "admin": bool}
UPDATE = {"password": str, "email": str, "admin": bool, "disabled": bool}


def shown(user: UserRecord) -> dict[str, Any]:
    return {"name": user.name, "email": user.email, "admin": user.admin, "disabled": user.disabled,
            "created": time(user.created), "last_login": time(user.last_login)}


async def list_users(request: Request, caller: Caller, management: Management) -> Response:
    return await paged(request, "users", lambda last, limit: management.list_users(caller, last, limit),
                       lambda u: u.name, shown)


async def create_user(request: Request, caller: Caller, management: Management) -> Response:
    fields = await body(request, CREATE, required=("name",))
    user = await management.create_user(caller, fields["name"], fields.get("password"), fields.get("email"),
                                        bool(fields.get("admin")))
    return JSONResponse(shown(user), status_code=201)


async def get_user(request: Request, caller: Caller, management: Management) -> Response:
    user, teams = await management.get_user(caller, request.path_params["name"])
    return JSONResponse(shown(user) | {"teams": teams})


async def update_user(request: Request, caller: Caller, management: Management) -> Response:
    fields = await body(request, UPDATE)
    for flag in ("admin", "disabled"):
        if flag in fields and fields[flag] is None:
            fields.pop(flag)
    user = await management.update_user(caller, request.path_params["name"],
                                        **{key: fields.get(key, UNSET) for key in UPDATE})
    return JSONResponse(shown(user))


async def remove_user(request: Request, caller: Caller, management: Management) -> Response:
    await management.remove_user(caller, request.path_params["name"])
    return Response(status_code=204)


async def account(request: Request, caller: Caller, management: Management) -> Response:
    """Who the caller is and the namespaces where they hold a role (their personal one included)."""
    snapshot = await management.snapshot()
    assert caller.name is not None
    held = sorted(namespaces_of(snapshot, caller.name, caller.teams))
    record = snapshot.users.get(caller.name)
    return JSONResponse({
        "name": caller.name, "database_user": record is not None,
        "admin": management.file_admin(caller.name) or snapshot.is_admin(caller.name),
        "teams": sorted(snapshot.teams_of(caller.name, caller.teams)),
        "namespaces": [{"path": path, "role": role} for path, role in held],
    })
