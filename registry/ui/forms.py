"""What the management pages share (users, teams, namespaces, the account, the change log): the caller
as the service sees them, CSRF-checked form posts, paging, and the service's refusals as pages.

The pages stay thin: every decision is the service's (auth/manage.py), the one the REST API and the CLI
call, so a refusal reads the same everywhere; here it becomes a page with the service's status and
message.  A form the service refused is shown again, its message on top, with that status.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import ClientDisconnect, Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute

from auth.policy import PolicySnapshot
from auth.terms import Caller, Refused, invalid
from registry.http.urls import client_address
from registry.ui.session import Session, csrf_ok
from storage.database import DatabaseUnavailable

if TYPE_CHECKING:
    from auth.manage import Management
    from registry.ui.app import WebUI

MAX_FORM = 64 * 1024  # bytes of a urlencoded form (a hundred tag patterns fit many times over)
MAX_FIELDS = 50
PAGE = 50
TITLES = {400: "Invalid request", 403: "Not allowed", 404: "Not found", 409: "Conflict",
          413: "Too large", 429: "Too many attempts", 503: "Unavailable"}

Handler = Callable[[Request, Session], Awaitable[Response]]


class Pages:
    """A group of management pages: the web UI they belong to and the service they call."""

    def __init__(self, ui: WebUI, management: Management) -> None:
        self.ui = ui
        self.management = management

    def routes(self) -> list[BaseRoute]:
        raise NotImplementedError

    def menu(self, user: str | None) -> list[tuple[str, str]]:
        """The navigation entries these pages offer ``user`` (label, path below the UI)."""
        return []

    def is_admin(self, user: str | None) -> bool:
        """Whether ``user`` is an admin by the policy as last loaded (for what a page offers, never for
        what it allows: the service decides that)."""
        if user is None:
            return False
        snapshot = self.management.cache.peek() if self.management.cache is not None else None
        return self.management.file_admin(user) or (snapshot is not None and snapshot.is_admin(user))

    def view(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """The web UI's view (session, headers, its errors) around ``handler``, whose refusals by the
        service (and an unreachable database) become pages with their status."""

        async def run(ui: WebUI, request: Request, session: Session) -> Response:
            try:
                return await handler(request, session)
            except Refused as e:
                return await self.refused(request, session, e)
            except DatabaseUnavailable as e:
                return await self.ui.render(request, session, "error.html", status=503, title=TITLES[503],
                                            message=f"{e}: try again shortly.")

        return self.ui.view(run)

    async def refused(self, request: Request, session: Session, error: Refused) -> Response:
        return await self.ui.render(request, session, "error.html", status=error.status,
                                    title=TITLES.get(error.status, "Error"), message=sentence(error.message))

    def caller(self, request: Request, session: Session) -> Caller:
        """Who asks, from where, with the teams a directory last reported for them."""
        name = session.user
        teams = self.ui.registry.login.teams(name) if name else frozenset()
        return Caller(name, client_address(request, self.ui.config.http), teams=teams)

    async def snapshot(self) -> PolicySnapshot:
        return await self.management.snapshot()

    async def form(self, request: Request, session: Session) -> dict[str, str]:
        """The posted form (first value of each field), its CSRF token checked; raises Refused (403 on a
        bad token, 413 past MAX_FORM, 400 for what is not a small urlencoded form)."""
        fields = await read_form(request)
        if not csrf_ok(session, fields.get("csrf"), request, self.ui.origin(request)):
            raise Refused(403, "DENIED", "The form expired or came from another site: reload the page and try again.")
        return fields

    async def render(self, request: Request, session: Session, template: str, status: int = 200,
                     **context: Any) -> Response:
        return await self.ui.render(request, session, template, status=status, **context)

    async def changed(self, path: str, **query: str) -> Response:
        """After a change: back to a page (``path`` below the UI's base) that says what was done, drawn
        from a policy that includes the change (this replica's snapshot reloaded now, not at its next poll)."""
        if self.management.cache is not None:
            await self.management.cache.refresh()
        target = f"{self.ui.base}/{urllib.parse.quote(path, safe='/')}"
        if query:
            target += "?" + urlencode(query)
        return RedirectResponse(target, status_code=303)


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form of at most MAX_FORM bytes and MAX_FIELDS fields, first value of each."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise invalid("Send the page's form (application/x-www-form-urlencoded).")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM:
        raise Refused(413, "INVALID_REQUEST", f"The form is larger than {MAX_FORM // 1024} KiB.")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM:
                raise Refused(413, "INVALID_REQUEST", f"The form is larger than {MAX_FORM // 1024} KiB.")
    except ClientDisconnect:
        raise invalid("The browser went away while sending the form.") from None
    try:
        pairs = urllib.parse.parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError:
        raise invalid("The form is not UTF-8 text.") from None
    except ValueError:
        raise invalid(f"The form has more than {MAX_FIELDS} fields.") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


def sentence(message: str) -> str:
    """The service's terse messages as the page's sentences."""
    message = message.strip()
    if not message:
        return message
    return message[0].upper() + message[1:] + ("" if message.endswith((".", "?", "!")) else ".")


def confirming(request: Request) -> bool:
    """The page was asked to confirm a removal first (its Remove button links here; the confirmation
    posts the removal, which the service decides)."""
    return request.query_params.get("confirm") == "remove"


def page_after(request: Request) -> str | None:
    """The ``last`` name of the page before (keyset paging, as the catalog's)."""
    return request.query_params.get("last") or None


def split_list(text: str) -> list[str]:
    """Patterns or names typed one per line, or separated by commas or spaces."""
    return [item for item in text.replace(",", " ").split() if item]
