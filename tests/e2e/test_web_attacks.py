"""Other sites cannot drive the web page, in a real browser (Debian's Chromium) on a real anvil.

The victim's browser is signed in first (it holds the page's session cookie: the strongest case), then visits an
attacker's page served from another origin (another port on 127.0.0.1, which is the same *site* so the cookie
goes along, and ``localhost``, another site) that auto-submits cross-site forms (urlencoded, multipart,
text/plain) to every state-changing endpoint and ``fetch``es each one (CORS with the custom header and a guessed
token, no-cors with a form body). A DNS-rebinding attempt (a second browser resolving ``rebind.test`` to
127.0.0.1) and a raw request with a foreign Host header follow. Every one is refused by the guard, nothing
reaches the page's service, and the account's nonce on the chain does not move; the honest page still acts.
"""

from __future__ import annotations

import http.client
import http.server
import json
import threading
import time

import pytest
from ape import accounts, chain

from web_helpers import (  # noqa: F401  (fixtures)
    CHROMIUM,
    CHROMIUM_ARGS,
    EXAMPLES,
    browser,
    open_page,
    session_cookie,
    shot,
    trusting_pair,
    web,
    web_market,
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ENCODINGS = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")

ATTACK_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>free kittens</title></head><body>
<script>
const targets = %(targets)s;
for (const t of targets) {
  for (const enc of %(encodings)s) {
    const frame = document.createElement("iframe");
    frame.name = "f" + Math.random().toString(36).slice(2);
    document.body.appendChild(frame);
    const form = document.createElement("form");
    form.method = "POST"; form.action = t.url; form.enctype = enc; form.target = frame.name;
    for (const [k, v] of Object.entries(t.fields)) {
      const input = document.createElement("input");
      input.type = "hidden"; input.name = k; input.value = v; form.appendChild(input);
    }
    document.body.appendChild(form);
    form.submit();
  }
  const body = new URLSearchParams(t.fields);
  fetch(t.url, {method: "POST", mode: "cors", credentials: "include", body,
                headers: {"X-IChain-Token": "guessed-" + Math.random()}}).catch(() => {});
  const form = new FormData();
  for (const [k, v] of Object.entries(t.fields)) form.append(k, v);
  fetch(t.url, {method: "POST", mode: "no-cors", credentials: "include", body: form}).catch(() => {});
}
</script></body></html>"""


class AttackerSite:
    """A tiny HTTP server on 127.0.0.1 (another port than the page's) serving one attack page."""

    def __init__(self, html: str) -> None:
        body = html.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802  (http.server's name)
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _wait(predicate, what: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def pending_task(web_market):
    """A validator (JUDGE) and a provider (THIEF, the attacker's, trusting JUDGE) registered, no daemons."""
    judge, thief = accounts.test_accounts[9], accounts.test_accounts[5]
    trusting_pair(web_market, thief, judge)
    return judge, thief


def test_other_sites__forms_and_fetches_to_every_action__all_refused_and_nonce_unmoved(open_page, web, web_market,
                                                                                        pending_task):
    judge, thief = pending_task
    victim = accounts.test_accounts[3]
    server = web(victim, lambda: web_market)
    service, guard = server.app.state.service, server.guard
    task_id = service.submit(folder=str(EXAMPLES / "digits"), price="0.01", validator_fee="0.001", provider="none",
                             validator=str(judge.address))
    assert web_market.task(task_id).status.name == "Pending"

    # The victim's browser holds the session: it opened the printed URL and sees its task.
    page = open_page(server.page_url(f"/?task={task_id}"))
    page.wait_for_selector("body[data-live=on]")
    assert page.get_attribute("#task-status", "data-status") == "Pending"
    cookies = page.context.cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [(guard.cookie_name, True, "Strict")]

    fields = {"folder": str(EXAMPLES / "digits"), "price": "0.01", "validator_fee": "0.001",
              "provider": str(thief.address), "validator": str(judge.address), "rating": "1",
              "validator_rating": "1"}
    paths = ["/api/tasks", f"/api/tasks/{task_id}/provider", f"/api/tasks/{task_id}/stop",
             f"/api/tasks/{task_id}/rate", "/api/withdraw"]
    targets = [{"url": server.url + path, "fields": fields} for path in paths]
    site = AttackerSite(ATTACK_PAGE % {"targets": json.dumps(targets), "encodings": json.dumps(ENCODINGS)})
    nonce, last_task, actions = chain.provider.get_nonce(victim.address), web_market.last_task_id(), \
        guard.allowed_actions
    try:
        origins = [f"http://127.0.0.1:{site.port}", f"http://localhost:{site.port}"]
        for origin in origins:
            attack = page.context.new_page()  # the same signed-in browser, another tab
            attack.goto(origin + "/attack.html")

            def all_refused() -> bool:
                seen = [r for r in list(guard.refusals) if r.origin == origin]
                return all(sum(r.method == "POST" and r.path == p for r in seen) >= len(ENCODINGS) + 1
                           and any(r.method == "OPTIONS" and r.path == p for r in seen) for p in paths)

            _wait(all_refused, f"every attack from {origin} to reach the guard")
            shot(attack, f"attack-{'same-site' if '127.0.0.1' in origin else 'cross-site'}")
            attack.close()
    finally:
        site.close()

    refused = list(guard.refusals)
    assert {r.status for r in refused} <= {401, 403}
    same_site = [r for r in refused if r.origin == origins[0] and r.method == "POST"]
    # Another port of 127.0.0.1 is the same site: the cookie went along, and the Origin check refused it.
    assert {r.reason for r in same_site} == {"origin"}, {r.reason for r in same_site}
    cross_site = [r for r in refused if r.origin == origins[1] and r.method == "POST"]
    assert {r.reason for r in cross_site} <= {"session", "origin"}
    assert {r.reason for r in refused if r.method == "OPTIONS"} == {"session"}  # preflights: no cookie, no CORS
    assert guard.allowed_actions == actions, "an attacker's request reached the page's service"
    assert chain.provider.get_nonce(victim.address) == nonce
    assert web_market.last_task_id() == last_task
    assert web_market.task(task_id).status.name == "Pending" and web_market.task(task_id).provider != thief.address

    # The honest page still acts, with the same browser: one click, one transaction.
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#stop-form button[type=submit]")
    page.wait_for_function("() => document.querySelector('#task-status').dataset.status === 'Cancelled'",
                           timeout=60_000)
    assert chain.provider.get_nonce(victim.address) == nonce + 1 and guard.allowed_actions == actions + 1


def test_dns_rebinding__rebound_name_with_the_secret__refused_by_the_host_check(browser, web, web_market):
    victim = accounts.test_accounts[3]
    server = web(victim, lambda: web_market)
    guard = server.guard
    nonce = chain.provider.get_nonce(victim.address)
    rebinding = browser.browser_type.launch(
        executable_path=CHROMIUM, headless=True,
        args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP rebind.test 127.0.0.1"])
    try:
        ctx = rebinding.new_context()
        page = ctx.new_page()
        rebound = f"http://rebind.test:{server.port}"
        # Even the full printed URL (a stolen one) under the rebound name: no cookie, no page.
        response = page.goto(rebound + f"/?token={guard.token}")
        assert response is not None and response.status == 403
        assert "answers only to 127.0.0.1" in page.text_content("body")
        assert ctx.cookies() == []
        # The attacker's script is now "same-origin" with the port: its reads and actions are refused too.
        statuses = page.evaluate("""async () => {
            const read = await fetch("/api/overview");
            const act = await fetch("/api/withdraw", {method: "POST", headers: {"X-IChain-Token": "guessed"}});
            return [read.status, act.status, (await act.json()).error];
        }""")
        assert statuses[:2] == [403, 403] and "DNS-rebound" in statuses[2], statuses
        ctx.close()
    finally:
        rebinding.close()
    hosts = [(r.method, r.path) for r in guard.refusals if r.reason == "host" and r.path != "/favicon.ico"]
    assert hosts == [("GET", "/"), ("GET", "/api/overview"), ("POST", "/api/withdraw")]  # (+ the tab's favicon)
    assert all(r.reason == "host" for r in guard.refusals)
    assert guard.allowed_actions == 0 and chain.provider.get_nonce(victim.address) == nonce


def test_foreign_host_header__raw_request_with_session_and_token__refused(web, web_market):
    victim = accounts.test_accounts[3]
    server = web(victim, lambda: web_market)
    nonce = chain.provider.get_nonce(victim.address)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest("POST", "/api/withdraw", skip_host=True)
        for name, value in (("Host", "evil.example"), ("Cookie", session_cookie(server)),
                            ("Origin", "http://evil.example"), ("X-IChain-Token", server.guard.token),
                            ("Content-Length", "0")):
            conn.putheader(name, value)
        conn.endheaders()
        reply = conn.getresponse()
        assert reply.status == 403
        assert "answers only to 127.0.0.1" in json.loads(reply.read())["error"]
    finally:
        conn.close()
    assert server.guard.refusals[-1].reason == "host" and server.guard.allowed_actions == 0
    assert chain.provider.get_nonce(victim.address) == nonce
