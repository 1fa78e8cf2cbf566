"""``/api/v1/teams``: admins manage them; every user sees the names, a team's members see its members."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from auth.terms import Caller
from registry.api.management import body, paged, time
from registry.errors import RegistryError
from storage.database.records import TeamRecord

if TYPE_CHECKING:
    from auth.manage import Management

CREATE = {"name": str, "members": list}


def shown(team: TeamRecord) -> dict[str, Any]:
    return {"name": team.name, "created": time(team.created), "members": team.members}


async def list_teams(request: Request, caller: Caller, management: Management) -> Response:
    return await paged(request, "teams", lambda last, limit: management.list_teams(caller, last, limit),
                       lambda t: t.name, shown)


async def create_team(request: Request, caller: Caller, management: Management) -> Response:
    fields = await body(request, CREATE, required=("name",))
    members = fields.get("members") or []
    if not all(isinstance(m, str) for m in members):
        raise RegistryError("INVALID_REQUEST", "members must be a list of user names")
    team = await management.create_team(caller, fields["name"], members)
    return JSONResponse(shown(team), status_code=201)


async def get_team(request: Request, caller: Caller, management: Management) -> Response:
    team, _ = await management.get_team(caller, request.path_params["name"], limit=0)
    return JSONResponse(shown(team))


async def remove_team(request: Request, caller: Caller, management: Management) -> Response:
    await management.remove_team(caller, request.path_params["name"])
    return Response(status_code=204)


async def list_members(request: Request, caller: Caller, management: Management) -> Response:
    async def members(last: str | None, limit: int) -> list[str]:
        return (await management.get_team(caller, request.path_params["name"], last, limit))[1]

    return await paged(request, "members", members, lambda m: m, lambda m: {"name": m})


async def add_member(request: Request, caller: Caller, management: Management) -> Response:
    await management.add_team_member(caller, request.path_params["name"], request.path_params["user"])
    return Response(status_code=204)


async def remove_member(request: Request, caller: Caller, management: Management) -> Response:
    await management.remove_team_member(caller, request.path_params["name"], request.path_params["user"])
    return Response(status_code=204)
