"""The web page's guard (ichain.web.security) over real HTTP: the per-launch secret, the Host allow-list,
the Origin/Referer check and the custom header of every action, in front of a small app that records what
reaches it, and in front of the real page's app (every route guarded)."""

from __future__ import annotations

import http.client
import json
import re

import pytest
from fastapi import FastAPI, Request

from ichain.config import IChainConfig
from ichain.web import WebService, create_app
from ichain.web.errors import WebError
from ichain.web.security import GuardMiddleware, PageGuard
from ichain.web.server import BackgroundServer


class Reply:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = {k.lower(): v for k, v in response.getheaders()}
        self.cookies = response.headers.get_all("set-cookie") or []
        self.body = response.read().decode()

    @property
    def error(self) -> str:
        return json.loads(self.body)["error"]


def send(server: BackgroundServer, method: str, path: str, headers: dict[str, str] | None = None,
         body: bytes | None = None) -> Reply:
    """One raw request: the Host header is exactly the one given (127.0.0.1:PORT unless told)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        given = {"Host": f"127.0.0.1:{server.port}", **(headers or {})}
        for name, value in given.items():
            if value is not None:
                conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        return Reply(conn.getresponse())
    finally:
        conn.close()


@pytest.fixture
def served():
    """A small app behind the guard, recording each request that reaches it."""
    reached: list[str] = []
    app = FastAPI()
    guard = PageGuard()
    app.state.guard = guard
    app.add_middleware(GuardMiddleware, guard=guard)

    @app.get("/")
    def index(request: Request):
        reached.append(f"GET {request.url.path}?{request.url.query}")
        return {"ok": True}

    @app.get("/static/app.css")
    def css():
        reached.append("GET /static/app.css")
        return {"css": True}

    @app.post("/api/act")
    def act():
        reached.append("POST /api/act")
        return {"message": "done"}

    with BackgroundServer(app) as server:
        yield server, guard, reached


def session(server: BackgroundServer) -> dict[str, str]:
    return {"Cookie": f"{server.guard.cookie_name}={server.guard.token}"}


def honest(server: BackgroundServer, **overrides: str | None) -> dict[str, str]:
    """The headers the page's own script sends with an action (each one replaceable)."""
    headers = {**session(server), "Origin": server.url, "X-IChain-Token": server.guard.token,
               "Content-Type": "application/x-www-form-urlencoded"}
    headers.update(overrides)  # type: ignore[arg-type]
    return {k: v for k, v in headers.items() if v is not None}


def test_guard__fresh_launch__a_new_long_secret_each_time():
    one, two = PageGuard(), PageGuard()
    assert one.token != two.token and len(one.token) >= 40


def test_page__no_cookie__401_one_line_naming_the_printed_url(served):
    server, guard, reached = served
    reply = send(server, "GET", "/")
    assert reply.status == 401
    assert reply.body.count("\n") == 1 and "open the URL `ape ichain web` printed" in reply.body
    api = send(server, "GET", "/api/overview")
    assert api.status == 401 and "open the URL" in api.error
    wrong = send(server, "GET", "/", {"Cookie": f"{guard.cookie_name}=not-the-secret"})
    assert wrong.status == 401
    other_port = send(server, "GET", "/", {"Cookie": f"ichain_session_1={guard.token}"})
    assert other_port.status == 401
    assert reached == []
    assert [r.reason for r in guard.refusals] == ["session"] * 4


def test_token_url__right_secret__cookie_set_and_redirect_without_it(served):
    server, guard, reached = served
    reply = send(server, "GET", f"/?task=3&token={guard.token}")
    assert reply.status == 303
    assert reply.headers["location"] == "/?task=3"
    assert guard.token not in reply.headers["location"]
    (cookie,) = reply.cookies
    assert cookie.startswith(f"{guard.cookie_name}={guard.token};")
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= {part.strip() for part in cookie.split(";")}
    assert reply.headers["referrer-policy"] == "no-referrer" and reached == []

    page = send(server, "GET", "/?task=3", session(server))
    assert page.status == 200 and reached == ["GET /?task=3"]
    assert page.headers["x-frame-options"] == "DENY"


def test_token_url__scheme_relative_path__redirect_stays_on_this_server(served):
    server, guard, _reached = served
    reply = send(server, "GET", f"//evil.example/x?token={guard.token}")
    assert reply.status == 303 and reply.headers["location"] == "/evil.example/x"


def test_token_url__wrong_secret__401_and_no_cookie(served):
    server, guard, reached = served
    reply = send(server, "GET", "/?token=guessed")
    assert reply.status == 401 and not reply.cookies and "Wrong token" in reply.body
    assert reached == [] and guard.refusals[-1].reason == "token"


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "rebind.test:{port}", "127.0.0.1",
                                  "127.0.0.1:1", "127.0.0.2:{port}", "localhost.evil.example:{port}", ""])
def test_foreign_host__even_with_the_secret__refused_403(served, host):
    server, guard, reached = served
    headers = {**session(server), "Host": host.format(port=server.port)}
    for path in ("/", "/static/app.css", f"/?token={guard.token}"):
        reply = send(server, "GET", path, headers)
        assert reply.status == 403 and "answers only to 127.0.0.1" in reply.body, (path, reply.body)
        assert not reply.cookies
    action = send(server, "POST", "/api/act", {**honest(server), "Host": host.format(port=server.port)}, b"a=1")
    assert action.status == 403 and "DNS-rebound" in action.error
    assert reached == [] and guard.allowed_actions == 0


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "[::1]:{port}"])
def test_loopback_hosts__with_the_session__served(served, host):
    server, _guard, reached = served
    reply = send(server, "GET", "/", {**session(server), "Host": host.format(port=server.port)})
    assert reply.status == 200 and len(reached) == 1


def test_static__no_session_needed(served):
    server, _guard, reached = served
    assert send(server, "GET", "/static/app.css").status == 200
    assert reached == ["GET /static/app.css"]


def test_action__from_the_page__allowed(served):
    server, guard, reached = served
    reply = send(server, "POST", "/api/act", honest(server), b"a=1")
    assert reply.status == 200 and reply.body == '{"message":"done"}'
    by_referer = send(server, "POST", "/api/act", honest(server, Origin=None, Referer=server.url + "/?task=1"),
                      b"a=1")
    assert by_referer.status == 200
    assert send(server, "POST", "/api/act", honest(server, Origin=f"http://localhost:{server.port}"), b"").status == 200
    assert reached == ["POST /api/act"] * 3 and guard.allowed_actions == 3 and not guard.refusals


@pytest.mark.parametrize(
    "case, overrides, reason",
    [
        ("foreign origin", {"Origin": "http://evil.example"}, "origin"),
        ("same host, other port", {"Origin": "http://127.0.0.1:1"}, "origin"),
        ("rebound origin", {"Origin": "http://rebind.test:{port}"}, "origin"),
        ("null origin", {"Origin": "null"}, "origin"),
        ("no origin, foreign referer", {"Origin": None, "Referer": "http://evil.example/attack.html"}, "origin"),
        ("no origin, referer lookalike", {"Origin": None, "Referer": "http://127.0.0.1:{port}.evil.example/"},
         "origin"),
        ("neither origin nor referer", {"Origin": None}, "origin"),
        ("no header", {"X-IChain-Token": None}, "header"),
        ("wrong header", {"X-IChain-Token": "guessed"}, "header"),
        ("empty header", {"X-IChain-Token": ""}, "header"),
        ("no session", {"Cookie": None}, "session"),
        ("secret in the query only", {"Cookie": None, "X-IChain-Token": None}, "session"),
    ],
)
def test_action__not_from_the_page__403_json_and_nothing_reaches_the_app(served, case, overrides, reason):
    server, guard, reached = served
    given = {k: (v.format(port=server.port) if v else v) for k, v in overrides.items()}
    path = f"/api/act?token={guard.token}" if case == "secret in the query only" else "/api/act"
    reply = send(server, "POST", path, honest(server, **given), b"a=1")
    assert reply.status == (401 if reason == "session" else 403), case
    assert reply.headers["content-type"] == "application/json"
    assert reply.error and "\n" not in reply.error
    assert "access-control-allow-origin" not in reply.headers
    assert reached == [] and guard.allowed_actions == 0
    assert guard.refusals[-1].reason == reason and guard.refusals[-1].path == "/api/act"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_unsafe_methods__same_check(served, method):
    server, guard, reached = served
    assert send(server, method, "/api/act", honest(server, Origin="http://evil.example"), b"").status == 403
    assert reached == []


def test_preflight__no_cors_headers_ever(served):
    """A cross-origin fetch with the custom header needs a preflight: the answer grants nothing."""
    server, _guard, reached = served
    headers = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "x-ichain-token"}
    reply = send(server, "OPTIONS", "/api/act", headers)
    assert reply.status == 401 and not any(h.startswith("access-control-") for h in reply.headers)
    with_session = send(server, "OPTIONS", "/api/act", {**headers, **session(server)})
    assert with_session.status >= 400 and not any(h.startswith("access-control-") for h in with_session.headers)
    assert reached == []


def test_unbound_guard__refuses_everything():
    guard = PageGuard()
    refusal = guard.check("GET", "/", {"host": "127.0.0.1:8000", "cookie": f"ichain_session_None={guard.token}"})
    assert refusal is not None and refusal.reason == "unbound"
    with pytest.raises(RuntimeError):
        guard.url()


def test_bind_port_80__bare_names_allowed_too():
    guard = PageGuard()
    guard.bind(80)
    assert guard.check_host("GET", "/", {"host": "127.0.0.1"}) is None
    assert guard.same_origin("http://localhost", "")
    assert guard.url("/pools") == f"http://127.0.0.1:80/pools?token={guard.token}"


# ---- the real page's app -----------------------------------------------------------------------------
@pytest.fixture
def page_server(tmp_path):
    """The page's app with no account and no market (the wrong-network banner): a request that got past the
    guard would fail there."""

    def no_market():
        raise WebError("no TaskMarket on this chain")

    service = WebService(account=None, market_factory=no_market,
                         config=IChainConfig(state_dir=tmp_path / "state"), tasks_root=tmp_path / "tasks")
    with BackgroundServer(create_app(service)) as server:
        yield server
    service.close()


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    found = []
    for route in app.routes:
        for method in sorted(getattr(route, "methods", None) or []):
            path = re.sub(r"\{task_id\}", "1", route.path)  # type: ignore[attr-defined]
            found.append((method, re.sub(r"\{address\}", "0x" + "11" * 20, path)))
    return found


def test_page_app__every_route_needs_the_session__and_every_action_the_origin_and_header(page_server):
    server, guard = page_server, page_server.guard
    routes = _routes(server.app)
    posts = sorted(p for m, p in routes if m == "POST")
    assert posts == ["/api/tasks", "/api/tasks/1/provider", "/api/tasks/1/rate", "/api/tasks/1/stop",
                     "/api/withdraw"]
    assert {m for m, _ in routes} <= {"GET", "HEAD", "POST"}
    for method, path in routes:
        reply = send(server, method, path, {"Origin": server.url})
        assert reply.status == 401, (method, path, reply.status)
    for path in posts:
        reply = send(server, "POST", path, honest(server, Origin="http://127.0.0.1:1"), b"provider=0x1")
        assert reply.status == 403 and "from this page" in reply.error, path
        reply = send(server, "POST", path, honest(server, **{"X-IChain-Token": None}), b"provider=0x1")
        assert reply.status == 403 and "X-IChain-Token" in reply.error, path
    assert guard.allowed_actions == 0


def test_page_app__static_served_without_session__page_carries_the_token_for_the_script(page_server):
    server = page_server
    script = send(server, "GET", "/static/app.js")
    assert script.status == 200 and "X-IChain-Token" in script.body
    page = send(server, "GET", "/pools", session(server))
    assert page.status == 200, page.body
    assert f'<meta name="ichain-token" content="{server.guard.token}">' in page.body
    assert page.headers["x-frame-options"] == "DENY"
