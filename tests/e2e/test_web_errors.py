"""Bad input from the page gives one clear line on the page, and nothing is sent or lost.

No account, insufficient balance, a malformed task, a bad amount, the wrong network: each in a real
browser against the page served on a real anvil (the last one through `ape ichain web` itself).
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
from ape import accounts

from web_helpers import ARTIFACTS, browser, open_page, shot, trusting_pair, web, web_market  # noqa: F401  (fixtures)
from ichain.net import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture
def market(web_market):
    """No daemons here: every case is refused before anything is sent. A provider trusting a validator is
    registered, so ``best``/``auto`` find a pair and the refusal is the case's own."""
    trusting_pair(web_market, accounts.test_accounts[1], accounts.test_accounts[2])
    return web_market


def submit_alert(page) -> str:
    """Submit the task form and return the one-line message shown in it."""
    page.click("#submit-form button[type=submit]")
    alert = page.locator("#submit-form [data-form-alert]")
    alert.wait_for(state="visible")
    return alert.text_content().strip()


def last_task_id(market) -> int:
    return int(market.last_task_id())


def test_page__no_account__explains_and_refuses_to_sign(open_page, web, market):
    server = web(None, lambda: market)
    page = open_page(server.page_url("/"))
    assert "No account selected" in page.text_content("#no-account")
    before = last_task_id(market)
    page.select_option("#folder", label="digits")
    message = submit_alert(page)
    assert message.startswith("No account selected") and "--account" in message
    assert last_task_id(market) == before
    shot(page, "err-no-account")


def test_submit__insufficient_balance__message_and_no_deposit(open_page, web, market, tmp_path):
    poor = accounts.test_accounts.generate_test_account()
    accounts.test_accounts[0].transfer(poor, "0.001 ether")
    server = web(poor, lambda: market, state=tmp_path / "poor")
    page = open_page(server.page_url("/"))
    page.select_option("#folder", label="digits")
    page.fill("#price", "1")
    page.fill("#validator_fee", "0.1")
    before, balance = last_task_id(market), poor.balance
    message = submit_alert(page)
    assert re.search(r"insufficient|balance|deposit", message, re.I), message
    assert "\n" not in message and "Traceback" not in message
    assert last_task_id(market) == before and poor.balance == balance
    assert not list((tmp_path / "poor").rglob("task.tar")), "a refused task left its package behind"
    shot(page, "err-insufficient-balance")


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize(
    "name, payload, expected",
    [
        ("notes.zip", _zip({"notes/readme.txt": b"not a task"}), None),  # the task format's own one-line reason
        ("evil.zip", _zip({"../../escape.py": b"x"}), "unsafe path"),
        ("broken.tar.gz", b"\x1f\x8b not gzip", "not a readable archive"),
    ],
    ids=["no-task-inside", "path-traversal", "not-an-archive"],
)
def test_submit__malformed_task_upload__message_and_nothing_posted(open_page, web, market, name, payload, expected):
    server = web(accounts.test_accounts[4], lambda: market)
    page = open_page(server.page_url("/"))
    page.set_input_files("#upload", files=[{"name": name, "mimeType": "application/octet-stream", "buffer": payload}])
    before = last_task_id(market)
    message = submit_alert(page)
    assert message and "\n" not in message and "Traceback" not in message and "Internal error" not in message
    if expected:
        assert expected in message
    assert last_task_id(market) == before
    if name == "notes.zip":
        shot(page, "err-malformed-task")


def test_submit__bad_amount__names_the_field(open_page, web, market):
    server = web(accounts.test_accounts[4], lambda: market)
    page = open_page(server.page_url("/"))
    page.select_option("#folder", label="digits")
    page.fill("#price", "ten")
    assert submit_alert(page) == "Price: 'ten' is not a number of ether (e.g. 0.01)"


def test_ape_ichain_web__wrong_network__banner_on_page(open_page, tmp_path):
    """`ape ichain web` on a chain where iChain is not deployed: the page says so instead of failing."""
    port = free_port()
    anvil = subprocess.Popen(["anvil", "--port", str(port), "--silent"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    env = {**os.environ, "ICHAIN_DEPLOYMENTS": str(tmp_path / "deployments.json")}
    ape = str(Path(sys.executable).with_name("ape"))
    web_proc = None
    try:
        deadline = time.time() + 20
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.time() < deadline, "anvil did not start"
            time.sleep(0.1)
        web_proc = subprocess.Popen(
            [ape, "ichain", "web", "--network", f"http://127.0.0.1:{port}", "--port", "0", "--account", "TEST::5",
             "--state-dir", str(tmp_path / "state")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        url = None
        lines = []
        deadline = time.time() + 90
        while url is None and time.time() < deadline:
            line = web_proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            found = re.search(r"(http://127\.0\.0\.1:\d+/\?token=[\w-]{40,})", line)
            url = found.group(1) if found else None
        assert url, "ape ichain web did not print its URL:\n" + "".join(lines)
        with pytest.raises(urllib.error.HTTPError) as refused:  # the same page without the launch's secret
            urllib.request.urlopen(url.split("?")[0], timeout=30)
        assert refused.value.code == 401
        page = open_page(url)
        banner = page.text_content("#net-error")
        assert re.search(r"deploy", banner, re.I) and "31337" in banner, banner
        assert "\n" not in banner.strip()
        assert page.text_content("#account-address") == str(accounts.test_accounts[5].address)
        page.select_option("#folder", label="digits")
        message = submit_alert(page)
        assert re.search(r"no TaskMarket recorded for chain id 31337", message), message
        shot(page, "err-wrong-network")
    finally:
        for proc in (web_proc, anvil):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
