"""The web UI at ``/ui/``: server-rendered pages over the registry's own stores.

Pages work without JavaScript (a little script adds copy buttons); nothing is loaded from outside
the registry. Who sees and may delete what comes from the access controller, exactly as on /v2.

    /ui/                         repositories (filter, paged through the catalog)
    /ui/search?q=                repositories by name, tag or label
    /ui/r/NAME                   a repository's tags
    /ui/r/NAME:TAG, NAME@DIGEST  a manifest or index
    /ui/delete/NAME:TAG|@DIGEST  confirm (GET) and delete (POST)
    /ui/usage                    storage per namespace and repository (storage/accounting.py)
    /ui/replication              replication rules and their latest executions (admins)
    /ui/replication/RULE         a rule's executions, and running it now (POST .../run)
    /ui/replication/RULE/ID      an execution and its failed items
    /ui/login, /ui/logout
    /ui/oidc/login, /ui/oidc/callback   single sign-on (registry/ui/oidc.py)
    /ui/tokens                   the user's access tokens (registry/ui/tokens.py)
    /ui/machines                 robots and every token (admins, namespace owners: registry/ui/machines.py)
    /ui/namespaces, /ui/users, /ui/teams, /ui/changes, /ui/account   with auth.database: managing
                                 namespaces, users and teams (registry/ui/namespaces.py, admin.py, ...)
"""

from __future__ import annotations

import datetime
import functools
import math
import time
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from auth.base import Access, Grant
from auth.brake import TooManyAttempts
from auth.credentials import CredentialRefused, SourceUnavailable
from registry import offload
from registry.api.replication import safe_id
from registry.api.search import scan
from registry.errors import RegistryError
from registry.events.observe import request_info
from registry.http.urls import client_address, origin
from registry.instance import Registry
from registry.names import NAME_RE, TAG_RE
from registry.replication.rules import Rule
from registry.ui.account import AccountPages
from registry.ui.admin import AdminPages
from registry.ui.changes import ChangePages
from registry.ui.content import Inspector, digest_or_none, resolve
from registry.ui.forms import Pages
from registry.ui.namespaces import NamespacePages
from registry.ui.session import Forbidden, Session, Sessions, csrf_ok, read_fields, safe_next
from registry.writes.actor import Actor, from_grant
from storage.accounting import UsageIndex
from storage.driver import StorageUnavailable
from storage.manifests import repository_exists

if TYPE_CHECKING:
    from registry.replication.worker import Replication
    from registry.ui.machines import MachinePages
    from registry.ui.oidc import SingleSignOn
    from registry.ui.tokens import TokenPages

HERE = Path(__file__).parent
PAGE = 50
MAX_PAGE = 200
SCAN_BUDGET = 5000  # catalog names one list request looks at (a filter matching little continues on a link)
SEARCH_BUDGET = 500  # repositories one search request reads tags and labels of
SEARCH_TAGS = 5000  # tags one search request reads (a repository's first, in lexical order, if it has more)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
SORTS = ("tag", "pushed", "size")

View = Callable[["WebUI", Request, Session], Awaitable[Response]]


def human_size(value: int | None) -> str:
    if value is None:
        return ""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def when(stamp: float | None) -> str:
    if stamp is None:
        return ""
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def ago(stamp: float | None) -> str:
    if stamp is None:
        return "—"
    seconds = max(0, time.time() - stamp)
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= length:
            count = int(seconds // length)
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    return "just now"


def short(digest: str) -> str:
    algorithm, _, hex_ = digest.partition(":")
    return f"{algorithm}:{hex_[:12]}" if hex_ else digest


def split_reference(text: str) -> tuple[str, str | None, str | None]:
    """``name``, ``name:tag`` or ``name@digest`` as docker writes references."""
    if "@" in text:
        name, _, digest = text.partition("@")
        return name, None, digest
    head, _, last = text.rpartition("/")
    if ":" in last:
        component, _, tag = last.partition(":")
        return f"{head}/{component}" if head else component, tag, None
    return text, None, None


def environment(base: str) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update(size=human_size, when=when, ago=ago, short=short,
                       url=lambda value: quote(str(value), safe="/:@"),
                       date=lambda value: value.strftime("%Y-%m-%d %H:%M UTC"))
    env.globals["base"] = base
    return env


class WebUI:
    def __init__(self, registry: Registry, inspector: Inspector, usage: UsageIndex,
                 replication: Replication | None = None) -> None:
        self.registry = registry
        self.replication = replication
        self.config = registry.config
        self.base = f"{self.config.http.prefix}ui"
        self.inspector = inspector
        self.sessions = Sessions(self.config.ui.secret, self.config.ui.sessionttl, registry.login, self.base,
                                 registry.sessions,
                                 registry.policy.refresh if registry.policy is not None else None)
        self.env = environment(self.base)
        self.token_pages: TokenPages | None = None
        self.machine_pages: MachinePages | None = None
        if registry.tokens is not None:
            from registry.ui.machines import MachinePages
            from registry.ui.tokens import TokenPages

            self.token_pages = TokenPages(self, registry.tokens)
            self.machine_pages = MachinePages(self.token_pages, registry.tokens)
        self.sso: SingleSignOn | None = None
        if registry.login.oidc is not None:
            from registry.ui.oidc import SingleSignOn  # Authlib and joserfc load only with auth.oidc

            self.sso = SingleSignOn(self, registry.login.oidc)
        self.usage_index = usage
        management = registry.management
        self.pages: list[Pages] = [] if management is None else [
            pages(self, management) for pages in (NamespacePages, AdminPages, ChangePages, AccountPages)]
        self.env.globals["menu"] = self.menu

    def routes(self) -> list[BaseRoute]:
        view = self.view
        prefix = self.config.http.prefix
        return [
            Route(prefix, self.home, methods=["GET", "HEAD"]),
            Mount(self.base, routes=[
                Route("/", view(WebUI.repositories), methods=["GET", "HEAD"]),
                Route("/search", view(WebUI.search), methods=["GET", "HEAD"]),
                Route("/usage", view(WebUI.usage), methods=["GET", "HEAD"]),
                Route("/replication", view(WebUI.replication_rules), methods=["GET", "HEAD"]),
                Route("/replication/{rule}", view(WebUI.replication_rule), methods=["GET", "HEAD"]),
                Route("/replication/{rule}/run", view(WebUI.replication_run), methods=["POST"]),
                Route("/replication/{rule}/{execution}", view(WebUI.replication_execution), methods=["GET", "HEAD"]),
                Route("/login", view(WebUI.login), methods=["GET", "HEAD", "POST"]),
                Route("/logout", view(WebUI.logout), methods=["POST"]),
                *(self.sso.routes() if self.sso else []),
                *(self.token_pages.routes() if self.token_pages else []),
                *(self.machine_pages.routes() if self.machine_pages else []),
                *(route for pages in self.pages for route in pages.routes()),
                Route("/r/{reference:path}", view(WebUI.reference), methods=["GET", "HEAD"]),
                Route("/delete/{reference:path}", view(WebUI.delete), methods=["GET", "HEAD", "POST"]),
                Mount("/static", app=Static(directory=HERE / "static"), name="static"),
            ]),
        ]

    async def home(self, request: Request) -> Response:
        return RedirectResponse(f"{self.base}/", status_code=302)

    def view(self, handler: View) -> Callable[[Request], Awaitable[Response]]:
        """Session in, cookie and security headers out; errors as pages."""

        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            try:
                session = await self.sessions.load(request)
            except StorageUnavailable as e:  # the session records cannot be read: no page can be trusted
                response = await self.render(request, Session(None, ""), "error.html", status=503,
                                             title="Unavailable", message=f"{e}: try again shortly.")
                response.headers.update(SECURITY_HEADERS)
                return response
            try:
                await self.registry.login.refresh()
                if session.user is not None and await self.registry.login.current(session.user) is None:
                    await self.sessions.log_out(session)  # removed from their directory (or file) since login
                response = await handler(self, request, session)
            except RegistryError as e:
                response = await self.render(request, session, "error.html", status=e.status,
                                       title="Not found" if e.status == 404 else "Error",
                                       message=e.message or e.code)
            except Forbidden as e:
                response = await self.render(request, session, "error.html", status=403, title="Not allowed",
                                       message=str(e))
            except (SourceUnavailable, StorageUnavailable) as e:
                response = await self.render(request, session, "error.html", status=503, title="Unavailable",
                                             message=f"{e}: try again shortly.")
            self.sessions.save(session, response, self.origin(request).startswith("https:"))
            response.headers.update(SECURITY_HEADERS)
            return response

        return endpoint

    def menu(self, user: str | None) -> list[tuple[str, str]]:
        """The navigation's further entries for ``user`` (label, path), from the pages that have them."""
        return [entry for pages in self.pages for entry in pages.menu(user)]

    def origin(self, request: Request) -> str:
        return origin(request, self.config.http)

    async def render(self, request: Request, session: Session, template: str, status: int = 200,
                     **context: Any) -> Response:
        """The page, rendered off the event loop (a repository with thousands of tags, a 4 MiB manifest)."""
        host = self.origin(request).partition("://")[2]
        context.setdefault("search_term", "")
        page = await offload.run(functools.partial(
            self.env.get_template(template).render,
            session=session, login_enabled=self.registry.login.enabled, host=host,
            sso_label=self.sso.oidc.settings.label if self.sso else None,
            tokens_enabled=self.token_pages is not None, path=request.url.path, query=request.url.query,
            replication_nav=self.replication is not None and self.may_administer(session), **context))
        return HTMLResponse(page, status_code=status)

    def may(self, session: Session, name: str, action: str) -> bool:
        return action in self.registry.login.actions(session.user, name)

    def actor(self, request: Request, session: Session, name: str) -> Actor:
        """The visitor as the write path's actor, granted what the access rules let them do in ``name``."""
        actions = self.registry.login.actions(session.user, name)
        grant = Grant(session.user, frozenset(Access("repository", name, action) for action in actions))
        return from_grant(grant, request_info(request.scope))

    def may_administer(self, session: Session) -> bool:
        return self.registry.login.is_admin(session.user)

    def may_delete(self, session: Session, name: str) -> bool:
        storage = self.config.storage
        return storage.delete_enabled and not storage.readonly and self.may(session, name, "delete")

    # --- pages -----------------------------------------------------------------------------------------

    async def repositories(self, request: Request, session: Session) -> Response:
        params = request.query_params
        term = params.get("q", "").strip().lower()
        size = page_size(params.get("n"))
        last = params.get("last") or None

        async def match(name: str) -> bool:
            return term in name

        names, cursor = await scan(self.registry, Grant(subject=session.user), match, last, size, SCAN_BUDGET)
        rows = await self.inspector.repository_rows(names)
        following = f"?{urlencode({'q': term, 'last': cursor, 'n': size})}" if cursor else None
        return await self.render(request, session, "repositories.html", title="Repositories", rows=rows, term=term,
                           following=following, first=bool(last), size=size, partial=len(names) < size and cursor)

    async def search(self, request: Request, session: Session) -> Response:
        term = request.query_params.get("q", "").strip()
        last = request.query_params.get("last") or None
        hits: dict[str, list[str]] = {}
        cursor = None
        if term:
            lowered = term.lower()
            tags_left = SEARCH_TAGS

            async def match(name: str) -> bool | None:
                nonlocal tags_left
                if tags_left <= 0:
                    return None  # the following page goes on from here
                rows = await self.inspector.tag_rows(name, tags_left)
                tags_left -= max(1, len(rows))
                reasons = ["name"] if lowered in name else []
                for row in rows:
                    if lowered in row.tag.lower():
                        reasons.append(f"tag {row.tag}")
                    reasons += [f"label {k}={v} ({row.tag})" for k, v in row.summary.labels.items()
                                if lowered in k.lower() or lowered in v.lower()]
                if reasons:
                    hits[name] = reasons[:5]
                return bool(reasons)

            _, cursor = await scan(self.registry, Grant(subject=session.user), match, last, PAGE, SEARCH_BUDGET)
        following = f"?{urlencode({'q': term, 'last': cursor})}" if cursor else None
        return await self.render(request, session, "search.html", title=f"Search: {term}" if term else "Search",
                           term=term, search_term=term, hits=hits, following=following)

    async def usage(self, request: Request, session: Session) -> Response:
        """Bytes per namespace and repository over what this visitor may pull, shared blobs counted once
        (from the server's last walk of the tree: ``storage.accounting.UsageIndex``)."""
        async def visible(names: Collection[str]) -> list[str]:
            return [name async for name in offload.paced(names) if self.may(session, name, "pull")]

        report = await self.usage_index.report(("ui", session.user), visible)
        return await self.render(request, session, "usage.html", title="Storage usage", report=report,
                                 age=int(max(0.0, time.time() - report.taken_at)))

    async def reference(self, request: Request, session: Session) -> Response:
        name, tag, digest_text = split_reference(request.path_params["reference"])
        self.check_visible(session, name, tag, digest_text)
        if tag is None and digest_text is None:
            return await self.repository(request, session, name)
        digest = await resolve(self.registry, name, tag) if tag is not None else digest_or_none(digest_text or "")
        if digest is None:
            raise RegistryError("MANIFEST_UNKNOWN", "no such manifest", status=404)
        detail = await self.inspector.detail(name, digest)
        return await self.render(request, session, "manifest.html", title=f"{name}{':' + tag if tag else ''}",
                           name=name, tag=tag, detail=detail, may_delete=self.may_delete(session, name))

    async def repository(self, request: Request, session: Session, name: str) -> Response:
        params = request.query_params
        rows = await self.inspector.tag_rows(name)
        if not rows and not await self.exists(name):
            raise RegistryError("NAME_UNKNOWN", "no such repository", status=404)
        term = params.get("q", "").strip()
        if term:
            rows = [r for r in rows if term.lower() in r.tag.lower()]
        sort = params.get("sort", "pushed")
        sort = sort if sort in SORTS else "pushed"
        descending = params.get("order", "desc" if sort != "tag" else "asc") == "desc"
        keys: dict[str, Callable[[Any], Any]] = {
            "tag": lambda r: r.tag, "pushed": lambda r: r.pushed or 0.0, "size": lambda r: r.summary.size,
        }
        rows.sort(key=keys[sort], reverse=descending)
        images = [r.tag for r in rows if r.summary.artifact_type is None]
        pull_tag = "latest" if "latest" in images else (images or [r.tag for r in rows] or ["TAG"])[0]
        return await self.render(request, session, "repository.html", title=name, name=name, rows=rows, term=term,
                           pull_tag=pull_tag,
                           sort=sort, descending=descending, may_delete=self.may_delete(session, name),
                           deleted=params.get("deleted"), holders=self.registry.login.holders(name, "push"))

    async def delete(self, request: Request, session: Session) -> Response:
        name, tag, digest_text = split_reference(request.path_params["reference"])
        self.check_visible(session, name, tag, digest_text)
        if tag is None and digest_text is None:
            raise RegistryError("UNSUPPORTED", "name a tag or a digest to delete", status=404)
        if not self.may_delete(session, name):
            raise Forbidden("you may not delete in this repository" if self.config.storage.delete_enabled
                            and not self.config.storage.readonly else "deleting is disabled on this registry")
        reference = tag if tag is not None else digest_text or ""
        shown = f"{name}:{tag}" if tag is not None else f"{name}@{digest_text}"
        if request.method == "POST":
            form = await read_fields(request)
            if not csrf_ok(session, form.get("csrf"), request, self.origin(request)):
                raise Forbidden("the form expired or came from another site: reload the page and try again")
            await self.registry.writer.delete(name, reference, self.actor(request, session, name))
            target = f"{self.base}/r/{quote(name)}?{urlencode({'deleted': shown})}"
            return RedirectResponse(target, status_code=303)
        digest = await resolve(self.registry, name, reference) if tag is not None else digest_or_none(reference)
        if digest is None:
            raise RegistryError("MANIFEST_UNKNOWN", "no such manifest", status=404)
        detail = await self.inspector.detail(name, digest)
        return await self.render(request, session, "delete.html", title=f"Delete {shown}", name=name, tag=tag,
                           shown=shown, detail=detail)

    # --- replication ---------------------------------------------------------------------------------

    def replication_rule_of(self, request: Request, session: Session) -> Rule:
        """The rule the path names, for admins; not found alike for everyone else."""
        if self.replication is None or not self.may_administer(session):
            raise RegistryError("NAME_UNKNOWN", "replication is not configured or not yours to see", status=404)
        name = request.path_params.get("rule", "")
        rule = self.replication.rules.get(name)
        if rule is None:
            raise RegistryError("NAME_UNKNOWN", f"no replication rule {name!r}", status=404)
        return rule

    async def replication_rules(self, request: Request, session: Session) -> Response:
        if self.replication is None or not self.may_administer(session):
            raise RegistryError("NAME_UNKNOWN", "replication is not configured or not yours to see", status=404)
        rows = []
        for rule in self.replication.rules.values():
            latest = await self.replication.store.recent(rule.name, 1)
            rows.append((rule, latest[0] if latest else None))
        return await self.render(request, session, "replication.html", title="Replication", rows=rows,
                           started=request.query_params.get("started"))

    async def replication_rule(self, request: Request, session: Session) -> Response:
        rule = self.replication_rule_of(request, session)
        assert self.replication is not None
        executions = await self.replication.store.recent(rule.name, PAGE)
        return await self.render(request, session, "replication_rule.html", title=f"Replication {rule.name}", rule=rule,
                           executions=executions, started=request.query_params.get("started"))

    async def replication_run(self, request: Request, session: Session) -> Response:
        rule = self.replication_rule_of(request, session)
        assert self.replication is not None
        form = await read_fields(request)
        if not csrf_ok(session, form.get("csrf"), request, self.origin(request)):
            raise Forbidden("the form expired or came from another site: reload the page and try again")
        if self.config.storage.readonly:
            raise Forbidden("the registry is in read-only mode: replication does not run")
        execution = await self.replication.trigger(rule.name)
        target = f"{self.base}/replication/{quote(rule.name)}?{urlencode({'started': execution.id})}"
        return RedirectResponse(target, status_code=303)

    async def replication_execution(self, request: Request, session: Session) -> Response:
        rule = self.replication_rule_of(request, session)
        assert self.replication is not None
        execution_id = request.path_params["execution"]
        execution = await self.replication.store.load(rule.name, execution_id) if safe_id(execution_id) else None
        if execution is None:
            raise RegistryError("NAME_UNKNOWN", f"no execution {execution_id!r}", status=404)
        failed = await self.replication.store.failed_items(execution)
        return await self.render(request, session, "replication_execution.html", title=f"Execution {execution.id}",
                           rule=rule, execution=execution, failed=failed[:MAX_PAGE], more=len(failed) > MAX_PAGE)

    async def login(self, request: Request, session: Session) -> Response:
        target = safe_next(request.query_params.get("next"), self.base)
        if not self.registry.login.enabled:
            raise RegistryError("UNSUPPORTED", "this registry has no users to log in as", status=404)
        error = None
        status = 200
        if request.method == "POST":
            form = await read_fields(request)
            target = safe_next(form.get("next"), self.base)
            user, password = form.get("username", ""), form.get("password", "")
            if not csrf_ok(session, form.get("csrf"), request, self.origin(request)):
                error, status = "The form expired: please try again.", 403
            else:
                try:
                    address = client_address(request, self.registry.config.http)
                    identity = await self.registry.login.check(user, password, address)
                    if identity is None:
                        error, status = "Wrong user name or password.", 401
                    elif identity.scope is not None:
                        error, status = "Access tokens work with docker and the API: log in with your password.", 401
                    else:
                        await self.sessions.log_in(session, identity.name)
                        return RedirectResponse(target, status_code=303)
                except TooManyAttempts as e:
                    error, status = f"Too many failed logins: try again in {math.ceil(e.retry_after)} s.", 429
                except SourceUnavailable as e:
                    error, status = f"Logging in is unavailable right now ({e}): try again shortly.", 503
                except CredentialRefused as e:
                    error, status = f"{str(e).capitalize()}.", 401
        return await self.render(request, session, "login.html", title="Log in", error=error, target=target,
                           status=status)

    async def logout(self, request: Request, session: Session) -> Response:
        form = await read_fields(request)
        if not csrf_ok(session, form.get("csrf"), request, self.origin(request)):
            raise Forbidden("the form expired: reload the page and try again")
        await self.sessions.log_out(session)
        return RedirectResponse(f"{self.base}/", status_code=303)

    # --- helpers ---------------------------------------------------------------------------------------

    def check_visible(self, session: Session, name: str, tag: str | None, digest: str | None) -> None:
        """Not found, alike for what does not exist and what this visitor may not pull."""
        if not NAME_RE.fullmatch(name) or (tag is not None and not TAG_RE.fullmatch(tag)):
            raise RegistryError("NAME_INVALID", "no such repository", status=404)
        if not self.may(session, name, "pull"):
            raise RegistryError("NAME_UNKNOWN", "no such repository", status=404)

    async def exists(self, name: str) -> bool:
        return await repository_exists(self.registry.driver, name)


class Static(StaticFiles):
    """The UI's own files; one that is not there is a plain 404 (Starlette's raises, which outside a
    Starlette application became a 500 with a traceback in the log)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            return await super().get_response(path, scope)
        except HTTPException as e:
            return PlainTextResponse(e.detail, status_code=e.status_code, headers=e.headers)


def page_size(raw: str | None) -> int:
    try:
        value = int(raw) if raw else PAGE
    except ValueError:
        return PAGE
    return max(1, min(value, MAX_PAGE))
