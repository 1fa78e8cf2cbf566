"""``/api/v1/namespaces``: a namespace, its settings and its members, managed as auth/manage.py allows.

A namespace's path has slashes (``payments/api``) and is written as it is; what follows it in a URL
starts with ``_`` (``/_members``, ``/_changes``), which no path component can (the repository names'
grammar), so the two never mix: Distribution's ``/v2/_catalog`` is the precedent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from auth.terms import UNSET, Caller, NamespaceView
from registry.api.management import body, listing, page, paged, time
from registry.errors import RegistryError
from storage.database.records import ChangeRecord, MemberRecord

if TYPE_CHECKING:
    from auth.manage import Management

CREATE = {"path": str, "public": bool}
UPDATE = {"public": bool, "quota": int, "retention": dict, "immutable_tags": list}
KINDS = {"users": "user", "teams": "team"}


def shown(view: NamespaceView) -> dict[str, Any]:
    ns = view.record
    return {"path": ns.path, "public": ns.public, "personal": ns.personal, "quota": ns.quota,
            "retention": ns.retention, "immutable_tags": list(ns.immutable_tags), "created": time(ns.created),
            "role": view.role}


def member(record: MemberRecord) -> dict[str, str]:
    return {"kind": record.kind, "name": record.name, "role": record.role}


def change(record: ChangeRecord) -> dict[str, Any]:
    return {"id": record.id, "at": time(record.at), "actor": record.actor, "address": record.address,
            "action": record.action, "target": record.target, "namespace": record.namespace,
            "before": record.before, "after": record.after}


async def list_namespaces(request: Request, caller: Caller, management: Management) -> Response:
    return await paged(request, "namespaces", lambda last, limit: management.list_namespaces(caller, last, limit),
                       lambda v: v.record.path, shown)


async def create_namespace(request: Request, caller: Caller, management: Management) -> Response:
    fields = await body(request, CREATE, required=("path",))
    ns = await management.create_namespace(caller, fields["path"], bool(fields.get("public")))
    return JSONResponse(shown(await management.get_namespace(caller, ns.path)), status_code=201)


async def get_namespace(request: Request, caller: Caller, management: Management) -> Response:
    view = await management.get_namespace(caller, request.path_params["path"])
    return JSONResponse(shown(view) | {"members": [member(m) for m in view.members]})


async def update_namespace(request: Request, caller: Caller, management: Management) -> Response:
    fields = await body(request, UPDATE)
    if "public" in fields and fields["public"] is None:
        fields.pop("public")
    if fields.get("immutable_tags", 0) is None:
        fields["immutable_tags"] = []
    ns = await management.update_namespace(caller, request.path_params["path"],
                                           **{key: fields.get(key, UNSET) for key in UPDATE})
    return JSONResponse(shown(await management.get_namespace(caller, ns.path)))


async def remove_namespace(request: Request, caller: Caller, management: Management) -> Response:
    await management.remove_namespace(caller, request.path_params["path"])
    return Response(status_code=204)


async def list_members(request: Request, caller: Caller, management: Management) -> Response:
    view = await management.get_namespace(caller, request.path_params["path"])
    return JSONResponse({"members": [member(m) for m in view.members]})


async def set_member(request: Request, caller: Caller, management: Management) -> Response:
    fields = await body(request, {"role": str}, required=("role",))
    params = request.path_params
    record = await management.set_member(caller, params["path"], KINDS[params["kind"]], params["name"],
                                         fields["role"])
    return JSONResponse(member(record))


async def remove_member(request: Request, caller: Caller, management: Management) -> Response:
    params = request.path_params
    await management.remove_member(caller, params["path"], KINDS[params["kind"]], params["name"])
    return Response(status_code=204)


async def list_changes(request: Request, caller: Caller, management: Management) -> Response:
    """The change log, newest first: every change for admins, their namespaces' for owners; ``last`` is
    the id to continue below."""
    last, n = page(request)
    try:
        before = int(last) if last is not None else None
    except ValueError:
        raise RegistryError("INVALID_REQUEST", "last must be a change id") from None
    changes = await management.list_changes(caller, before, n + 1, request.path_params.get("path"))
    return listing(request, "changes", changes, n, lambda c: str(c.id), change)
