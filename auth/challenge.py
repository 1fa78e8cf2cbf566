"""``WWW-Authenticate`` values and the refusals that carry them."""

from __future__ import annotations

from auth.base import Access, AuthFailure


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def header(scheme: str, **params: str | None) -> str:
    return scheme + " " + ",".join(f"{k}={quote(v)}" for k, v in params.items() if v is not None)


def access_detail(accesses: list[Access]) -> list[dict[str, str]]:
    """Distribution's error detail for auth failures: the accesses that were needed."""
    return [{"Type": a.type, "Name": a.name, "Action": a.action} for a in accesses]


def unauthorized(
    challenge: str, accesses: list[Access], message: str = "authentication required"
) -> AuthFailure:
    detail = access_detail(accesses) or None
    return AuthFailure(401, "UNAUTHORIZED", message, challenge=challenge, detail=detail)


def denied(accesses: list[Access]) -> AuthFailure:
    return AuthFailure(403, "DENIED", "requested access to the resource is denied",
                       detail=access_detail(accesses) or None)
