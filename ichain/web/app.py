"""The FastAPI application behind `ape ichain web`.

Pages are rendered by Jinja templates; the parts that change (balance, task status and chunk
progress, pools, provider state) are template *fragments* that a small script swaps in place when
the server pushes a new version over Server-Sent Events, so one template renders each thing both on
first load and live (no second rendering in JavaScript). Every action is a JSON POST that goes through
:class:`~ichain.web.service.WebService`, i.e. through the same SDK pre-checks as the CLI; any
``IChainError`` comes back as ``{"error": "<one line>"}`` with status 400 and is shown on the page.
Nothing changes state through a GET. Every request passes :mod:`ichain.web.security` first.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from ichain.errors import IChainError
from ichain.web import format as fmt
from ichain.web.format import user_message
from ichain.web.security import GuardMiddleware, PageGuard
from ichain.web.service import POOLS, WebService

HERE = Path(__file__).parent
log = logging.getLogger("ichain.web")

#: Seconds between two checks for changes pushed to a live page.
LIVE_INTERVAL = 0.5

#: The live fragments (templates/fragments/NAME.html) of each page.
VIEWS = {
    "requester": ["account", "tasks", "task", "task_actions", "workers", "pools"],
    "provider": ["account", "provider"],
    "pools": ["pools"],
}


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.filters["eth"] = fmt.eth
    env.filters["short"] = fmt.short
    env.filters["stars"] = fmt.stars
    env.globals["pool_names"] = POOLS
    return templates


def _error(exc: Exception | str, status: int = 400) -> JSONResponse:
    message = user_message(exc) if isinstance(exc, BaseException) else exc
    return JSONResponse({"error": message}, status_code=status)


def create_app(service: WebService, *, guard: PageGuard | None = None) -> FastAPI:
    """Build the web application around one :class:`WebService`.

    Every request goes through a :class:`~ichain.web.security.PageGuard` first (the per-launch secret,
    the Host allow-list, the Origin check of every action): whoever serves the app must call
    ``app.state.guard.bind(port)`` once its socket is bound (``ape ichain web`` and
    :class:`~ichain.web.server.BackgroundServer` do), and give the user ``app.state.guard.url()``.

    Args:
        service: What the page reads and acts through (holds the account, the market and the
            requester sessions).
        guard: The secret and the allowed names; a fresh one (a new secret) when not given.

    Returns:
        The FastAPI app, ready for uvicorn.
    """
    app = FastAPI(title="iChain", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    app.state.guard = guard = guard or PageGuard()
    app.add_middleware(GuardMiddleware, guard=guard)
    app.state.closing = False  # set on shutdown: live streams end so the server can stop at once
    templates = _templates()
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.exception_handler(IChainError)
    async def _user_error(_request: Request, exc: IChainError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # Still one line on the page; the trace goes to the server log only.
        log.exception("unexpected error")
        return _error(f"Internal error: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}", 500)

    def fragment(name: str, **context: Any) -> str:
        return templates.get_template(f"fragments/{name}.html").render(**context)

    def fragments(view: str, task_id: int | None, provider: str | None) -> dict[str, str]:
        """Render every live part of one view (called for the first load and for each update)."""
        ctx = service.context(view=view, task_id=task_id, provider=provider)
        parts = {n: fragment(n, **ctx) for n in VIEWS[view]}
        parts["alert"] = ctx.get("alert") or ""
        return parts

    def page(request: Request, view: str, task_id: int | None = None, provider: str | None = None):
        ctx = service.context(view=view, task_id=task_id, provider=provider)
        parts = {n: fragment(n, **ctx) for n in VIEWS[view]}
        # The page's script sends the secret back in a header with each action (see ichain.web.security).
        context = {**ctx, "parts": parts, "view": view, "page_token": guard.token}
        return templates.TemplateResponse(request, f"{view}.html", context)

    # ---- pages -------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    def requester_page(request: Request, task: int | None = None):
        """The requester's page (the paper's Figure 7)."""
        return page(request, "requester", task_id=task)

    @app.get("/provider", response_class=HTMLResponse)
    def provider_page(request: Request, address: str | None = None):
        """A provider's dashboard (its daemon, tasks, earnings, rating)."""
        return page(request, "provider", provider=address)

    @app.get("/pools", response_class=HTMLResponse)
    def pools_page(request: Request):
        """The live pool viewer."""
        return page(request, "pools")

    # ---- live updates ------------------------------------------------------------------------
    @app.get("/api/live")
    async def live(request: Request, view: str = "requester", task: int | None = None,
                   provider: str | None = None) -> Response:
        """Server-Sent Events: each event is one changed fragment ``{"name", "html"}``."""
        if view not in VIEWS:
            return _error(f"Unknown view {view!r}")

        async def stream() -> AsyncIterator[str]:
            sent: dict[str, str] = {}
            yield "retry: 1000\n\n"
            while not app.state.closing and not await request.is_disconnected():
                try:
                    parts = await run_in_threadpool(fragments, view, task, provider)
                except Exception as exc:  # a node hiccup must not end the stream
                    log.warning("live update of %s failed: %s: %s", view, type(exc).__name__, exc)
                    parts = {"alert": user_message(exc) if isinstance(exc, IChainError) else
                             f"Live update failed: {type(exc).__name__}"}
                for name, html in parts.items():
                    if sent.get(name) != html:
                        sent[name] = html
                        yield f"data: {json.dumps({'name': name, 'html': html})}\n\n"
                await asyncio.sleep(LIVE_INTERVAL)

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    @app.get("/api/fragments")
    def get_fragments(view: str = "requester", task: int | None = None, provider: str | None = None):
        """The same fragments as the live stream, for short polling when SSE is unavailable."""
        if view not in VIEWS:
            return _error(f"Unknown view {view!r}")
        return fragments(view, task, provider)

    # ---- JSON reads --------------------------------------------------------------------------
    @app.get("/api/overview")
    def overview():
        """Network, account, balance and credit."""
        return service.overview()

    @app.get("/api/providers")
    def providers():
        """Workers ranked by provider score (count-aware) then price."""
        return service.providers()

    @app.get("/api/validators")
    def validators():
        """Workers ranked by their validator record, with the providers that trust each."""
        return service.validators()

    @app.get("/api/pools")
    def pools():
        """Pending tasks, available workers, executing and validating tasks."""
        return service.pools()

    @app.get("/api/tasks")
    def tasks():
        """The tasks submitted from this page."""
        return service.tasks()

    @app.get("/api/tasks/{task_id}")
    def task(task_id: int):
        """One task's status snapshot with per-chunk transfer progress."""
        return service.task(task_id)

    @app.get("/api/provider/{address}")
    def provider(address: str):
        """A provider's state: daemon, tasks run and validated, earnings, rating."""
        return service.provider_view(address)

    @app.get("/api/tasks/{task_id}/result")
    def result(task_id: int) -> FileResponse:
        """Download the decrypted, verified result archive."""
        path = service.result_file(task_id)
        return FileResponse(path, filename=f"task-{task_id}-{path.name}", media_type="application/x-tar")

    # ---- actions -----------------------------------------------------------------------------
    @app.post("/api/tasks")
    async def submit(
        folder: str = Form(""),
        upload: UploadFile | None = File(None),
        price: str = Form(""),
        validator_fee: str = Form(""),
        provider: str = Form(""),
        validator: str = Form(""),
    ):
        """Submit a task from a folder on the server or an uploaded zip/tar."""
        staged = None
        if upload is not None and upload.filename:
            staged = await run_in_threadpool(service.stage_upload, upload.filename, upload.file)
        task_id = await run_in_threadpool(
            service.submit, folder=folder, staged=staged, price=price, validator_fee=validator_fee,
            provider=provider, validator=validator)
        return {"task_id": task_id, "message": f"Task {task_id} posted"}

    @app.post("/api/tasks/{task_id}/provider")
    def choose_provider(task_id: int, provider: str = Form("")):
        """Name the provider of a pending task."""
        service.choose_provider(task_id, provider)
        return {"task_id": task_id, "message": "Provider assigned"}

    @app.post("/api/tasks/{task_id}/stop")
    def stop(task_id: int):
        """Stop the task and get the deposit back (cancel while pending, expire after a deadline)."""
        message = service.stop(task_id)
        return {"task_id": task_id, "message": message}

    @app.post("/api/tasks/{task_id}/rate")
    def rate(task_id: int, rating: str = Form(""), validator_rating: str = Form("")):
        """Rate a Completed or Failed task: the provider (1 to 5), optionally the validator."""
        service.rate(task_id, rating, validator_rating)
        return {"task_id": task_id, "message": "Thank you for rating"}

    @app.post("/api/withdraw")
    def withdraw():
        """Withdraw the selected account's credit (earnings, refunds)."""
        amount = service.withdraw()
        return {"message": f"Withdrew {fmt.eth(amount)}"}

    return app
