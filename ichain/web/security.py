"""Who may drive the local web page: a per-launch secret, a Host allow-list and an Origin check.

The page signs with the user's account without asking (every click is a transaction), so any request
that reaches :class:`~ichain.web.service.WebService` spends the user's money. Three kinds of stranger
can send the local server a request from the user's own browser:

- **another site** the user visits: a cross-site form (urlencoded, multipart, text/plain) or a fetch;
- **DNS rebinding**: a name the attacker controls re-pointed at 127.0.0.1, so the attacker's page
  becomes "same-origin" with the local port in the browser's eyes;
- **another local page or process** that does not know the secret.

:class:`PageGuard` answers all three in one ASGI middleware (:class:`GuardMiddleware`), before any
route runs:

1. The ``Host`` header must name the loopback address and the bound port (``127.0.0.1:PORT``,
   ``localhost:PORT``, ``[::1]:PORT``): a rebound name (``evil.example:PORT``) is refused (403).
2. Every request except ``/static/`` needs the session cookie, whose value is the per-launch secret
   (``secrets.token_urlsafe(32)``; compared in constant time). The command prints
   ``http://127.0.0.1:PORT/?token=SECRET``; a GET carrying the right ``token`` sets the cookie
   (HttpOnly, SameSite=Strict) and redirects (303) to the same URL without it, so the secret is not
   left in the address bar or sent on as a Referer. Without the cookie: 401.
3. A state-changing request (any method but GET, HEAD, OPTIONS) must also come from the page itself:
   its ``Origin`` (or, when a browser sends none, its ``Referer``) must be this server's origin, and
   it must carry the ``X-IChain-Token: SECRET`` header, which the page's script reads from a
   ``<meta name="ichain-token">`` in the served HTML. A custom header cannot be sent cross-origin
   without a CORS preflight, and the app never answers one with CORS headers. Else: 403.

A refusal is one line (``{"error": ...}`` for the API and every state-changing request, a plain
text line for a page), logged at WARNING and kept in :attr:`PageGuard.refusals` (the tests read it).
Nothing refused reaches the app.
"""

from __future__ import annotations

import collections
import json
import logging
import secrets
import threading
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any, Awaitable, Callable, MutableMapping
from urllib.parse import parse_qsl, urlencode

log = logging.getLogger("ichain.web.security")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Methods that only read (CORS' "safe" methods): every other one must pass the Origin + header check.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The header the page's script sends with every action.
TOKEN_HEADER = "x-ichain-token"
#: The query parameter of the URL the command prints.
TOKEN_PARAM = "token"
#: Paths served without the session cookie (the page's CSS and script: nothing secret, nothing to do).
PUBLIC_PREFIXES = ("/static/",)
#: The loopback names the page answers to (it only ever listens on 127.0.0.1).
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
#: Refusals kept for inspection (the oldest are dropped).
KEEP_REFUSALS = 1000


@dataclass(frozen=True)
class Refusal:
    """One refused request, as logged.

    Attributes:
        method: The HTTP method.
        path: The request path (never the query: it may hold a wrong guess of the secret).
        status: The status answered (401, 403).
        reason: A short code: ``host``, ``unbound``, ``token``, ``session``, ``origin`` or ``header``.
        origin: The request's ``Origin`` header (``""`` when none).
        message: The one line answered.
    """

    method: str
    path: str
    status: int
    reason: str
    origin: str
    message: str


class PageGuard:
    """The per-launch secret and the names of the one port the page is served on.

    Create it with the app (:func:`ichain.web.create_app` makes one); call :meth:`bind` once the
    server's socket is bound. Until then every request is refused: the allowed Host names and origins
    depend on the port.

    Args:
        token: The secret; a fresh ``secrets.token_urlsafe(32)`` when not given.
    """

    def __init__(self, token: str | None = None) -> None:
        self.token = token or secrets.token_urlsafe(32)
        self.port: int | None = None
        self.allowed_hosts: frozenset[str] = frozenset()
        self.allowed_origins: frozenset[str] = frozenset()
        self.refusals: collections.deque[Refusal] = collections.deque(maxlen=KEEP_REFUSALS)
        #: State-changing requests let through to the app (the tests check that an attack moved none).
        self.allowed_actions = 0
        self._lock = threading.Lock()

    # ---- setup -------------------------------------------------------------------------------------
    def bind(self, port: int) -> None:
        """Accept requests addressed to ``port`` on the loopback names (call once the socket is bound).

        Args:
            port: The port the server listens on.
        """
        hosts = {f"{name}:{port}" for name in LOOPBACK_NAMES}
        if port == 80:  # a browser leaves the default port out of Host and Origin
            hosts |= set(LOOPBACK_NAMES)
        self.port = port
        self.allowed_hosts = frozenset(hosts)
        self.allowed_origins = frozenset(f"http://{host}" for host in hosts)

    @property
    def cookie_name(self) -> str:
        """The session cookie's name: one per port, since browsers share cookies across a host's ports
        (two pages on two ports, e.g. two accounts, keep their own sessions)."""
        return f"ichain_session_{self.port}"

    def url(self, path: str = "/") -> str:
        """The URL to open: ``http://127.0.0.1:PORT{path}`` with the secret as ``?token=``.

        Args:
            path: A path on the page, with or without its own query (``/provider?address=0x..``).
        """
        if self.port is None:
            raise RuntimeError("the page's port is not bound yet")
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}{path}{sep}{TOKEN_PARAM}={self.token}"

    # ---- the checks (pure: headers in, a refusal or None out) -------------------------------------
    def check(self, method: str, path: str, headers: dict[str, str]) -> Refusal | None:
        """Whether a request with a session may go on; ``None`` when it may.

        Args:
            method: The HTTP method.
            path: The request path.
            headers: Its headers, names lower-cased (the last value of a repeated one).

        Returns:
            The refusal to answer, or ``None``.
        """
        origin = headers.get("origin", "")

        def refuse(status: int, reason: str, message: str) -> Refusal:
            return Refusal(method, path, status, reason, origin, message)

        refusal = self.check_host(method, path, headers)
        if refusal is not None or path.startswith(PUBLIC_PREFIXES):
            return refusal
        if not self.has_session(headers.get("cookie", "")):
            return refuse(401, "session", "Not signed in: open the URL `ape ichain web` printed "
                                          f"(http://127.0.0.1:{self.port}/?token=...)")
        if method.upper() in SAFE_METHODS:
            return None
        if not self.same_origin(origin, headers.get("referer", "")):
            seen = origin[:100] or (f"none, Referer {headers['referer'][:100]!r}" if headers.get("referer")
                                    else "none, no Referer")
            return refuse(403, "origin", f"Refused: an action must come from this page itself (Origin {seen})")
        if not self.token_matches(headers.get(TOKEN_HEADER, "")):
            return refuse(403, "header", "Refused: the request lacks this page's X-IChain-Token header "
                                         "(reload the page)")
        return None

    def check_host(self, method: str, path: str, headers: dict[str, str]) -> Refusal | None:
        """The Host allow-list alone (see :meth:`check`): a DNS-rebound name is refused."""
        origin = headers.get("origin", "")
        if self.port is None:
            return Refusal(method, path, 403, "unbound", origin, "The iChain page is not serving yet")
        host = headers.get("host", "")
        if host.lower() not in self.allowed_hosts:
            return Refusal(method, path, 403, "host", origin,
                           "Refused: this page answers only to 127.0.0.1:%d (Host %r: a DNS-rebound name?)"
                           % (self.port, host[:100]))
        return None

    def has_session(self, cookie_header: str) -> bool:
        """Whether a ``Cookie`` header holds this launch's session cookie."""
        if not cookie_header:
            return False
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(cookie_header)
        except CookieError:
            return False
        morsel = jar.get(self.cookie_name)
        return morsel is not None and self.token_matches(morsel.value)

    def same_origin(self, origin: str, referer: str) -> bool:
        """Whether ``Origin`` (or, without one, ``Referer``) names this server.

        An ``Origin: null`` (a sandboxed frame, a redirect across origins) is refused, as is a request
        with neither header: every browser that runs the page sends ``Origin`` with its POSTs.
        """
        if origin:
            return origin.lower() in self.allowed_origins
        if referer:
            return any(referer.lower().startswith(allowed + "/") for allowed in self.allowed_origins)
        return False

    def token_matches(self, value: str) -> bool:
        """Whether a value (``?token=``, the cookie, the header) is this launch's secret (constant-time)."""
        return secrets.compare_digest(value.encode(), self.token.encode())

    def note(self, refusal: Refusal) -> None:
        """Log and keep one refusal."""
        log.warning("refused %s %s (%s, Origin %r): %s", refusal.method, refusal.path, refusal.reason,
                    refusal.origin, refusal.message)
        with self._lock:
            self.refusals.append(refusal)

    def count_action(self) -> None:
        with self._lock:
            self.allowed_actions += 1


class GuardMiddleware:
    """ASGI middleware applying a :class:`PageGuard` to every HTTP (and WebSocket) request.

    Args:
        app: The application behind it.
        guard: The guard (shared with whoever binds the port and prints the URL).
    """

    def __init__(self, app: ASGIApp, guard: PageGuard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET").upper()
        path = scope.get("path", "/")
        headers = _headers(scope)
        guard = self.guard
        if scope["type"] == "http" and method in ("GET", "HEAD"):
            query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            if any(name == TOKEN_PARAM for name, _ in query):
                await self._sign_in(scope, method, path, headers, query, send)
                return
        refusal = guard.check(method, path, headers)
        if refusal is None and scope["type"] == "websocket":
            # The page opens none; a WebSocket handshake is a GET that skips the Origin check, so refuse it.
            refusal = Refusal(method, path, 403, "origin", headers.get("origin", ""), "Refused: no WebSocket here")
        if refusal is not None:
            guard.note(refusal)
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await _answer(send, refusal.status, refusal.message, as_json=_wants_json(method, path))
            return
        if method not in SAFE_METHODS:
            guard.count_action()
        await self.app(scope, receive, _with_headers(send))

    async def _sign_in(self, scope: Scope, method: str, path: str, headers: dict[str, str],
                       query: list[tuple[str, str]], send: Send) -> None:
        """A GET of the printed URL: check Host and the secret, set the cookie, redirect without it."""
        guard = self.guard
        given = next(value for name, value in query if name == TOKEN_PARAM)
        refusal = guard.check_host(method, path, headers)
        if refusal is None and not guard.token_matches(given):
            refusal = Refusal(method, path, 401, "token", headers.get("origin", ""),
                              "Wrong token: open the URL the running `ape ichain web` printed "
                              "(each launch makes a new one)")
        if refusal is not None:
            guard.note(refusal)
            await _answer(send, refusal.status, refusal.message, as_json=_wants_json(method, path))
            return
        rest = urlencode([(name, value) for name, value in query if name != TOKEN_PARAM])
        # A relative redirect on this server only ("//host" would be another site's URL).
        location = "/" + path.lstrip("/") + ("?" + rest if rest else "")
        cookie = f"{guard.cookie_name}={guard.token}; HttpOnly; SameSite=Strict; Path=/"
        await send({"type": "http.response.start", "status": 303, "headers": [
            (b"location", location.encode("latin-1")), (b"set-cookie", cookie.encode("latin-1")),
            (b"cache-control", b"no-store"), (b"referrer-policy", b"no-referrer"),
            (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-cased name (a repeated header: its last value)."""
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}


def _wants_json(method: str, path: str) -> bool:
    return method not in ("GET", "HEAD") or path.startswith("/api/")


async def _answer(send: Send, status: int, message: str, *, as_json: bool) -> None:
    if as_json:
        body, kind = json.dumps({"error": message}).encode(), b"application/json"
    else:
        body, kind = (message + "\n").encode(), b"text/plain; charset=utf-8"
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", kind), (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff")]})
    await send({"type": "http.response.body", "body": body})


#: Added to every answer the app gives: no page of another origin may frame this one (a same-site page
#: on another port would get the session cookie, and the user's clicks), no Referer leaves it.
OWN_HEADERS = ((b"x-frame-options", b"DENY"), (b"content-security-policy", b"frame-ancestors 'none'"),
               (b"referrer-policy", b"same-origin"), (b"x-content-type-options", b"nosniff"))


def _with_headers(send: Send) -> Send:
    """Add :data:`OWN_HEADERS` to a response that does not set them itself."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            names = {name.lower() for name, _ in headers}
            for name, value in OWN_HEADERS:
                if name not in names:
                    headers.append((name, value))
            message = {**message, "headers": headers}
        await send(message)

    return wrapped
