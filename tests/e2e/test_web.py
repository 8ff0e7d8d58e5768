"""The web page in a real browser (Debian's Chromium via Playwright) on a real anvil with real daemons.

The requester submits examples/digits from the page with the provider and validator chosen in the form (the
best provider by score, the best validator that provider trusts), watches the per-chunk progress, downloads the
released result and rates it with no rating preselected, while a second tab on the pool viewer records every pool
the task passes through. Two provider daemons run as subprocesses (``ape ichain provide``), each trusting the
other, and execute / validate in the Docker sandbox. A raising script's failure report and a dispute (the
validator rejects) are shown on the page. Screenshots of each main screen go to tests/artifacts/web/.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import tarfile
import zipfile

import pytest
from ape import accounts, chain
from playwright.sync_api import expect

from web_helpers import (  # noqa: F401  (fixtures)
    ARTIFACTS,
    EXAMPLES,
    PHONE,
    STEP_MS,
    assert_accessible_basics,
    browser,
    open_page,
    shot,
    web,
    web_market,
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.docker]

#: The validator account the dispute test plays (no daemon): provider 1 trusts it too.
JUDGE = 7

# ---- chain, daemons, page ---------------------------------------------------------------------------
@pytest.fixture
def two_workers(web_market, tmp_path):
    """Provider daemons (``ape ichain provide``) for test accounts 1 (asks 0.01 ETH) and 2 (asks 0.004 ETH) on the
    test anvil, each trusting the other (and 1 also the JUDGE account, asking 0.005 ETH); returns {address: daemon
    state file}. With the page's 0.005 ETH fee, 2 cannot be the provider (1 asks more than the fee), so ``best``
    is 1, and ``auto`` its cheaper trusted validator, 2."""
    from ichain._cli.demo import DaemonProcess, provide_argv, wait_registered
    from ichain.transfer import KeyPair

    judge = accounts.test_accounts[JUDGE]
    if not web_market.worker(judge.address).registered:
        web_market.register(KeyPair.generate().public_bytes, 5 * 10**15, sender=judge)
    uri = getattr(chain.provider, "http_uri", None) or chain.provider.uri
    addr = {i: str(accounts.test_accounts[i].address) for i in (1, 2)}
    trust = {1: (addr[2], str(judge.address)), 2: (addr[1],)}
    procs, states = {}, {}
    try:
        for index, price in ((1, "0.01 ether"), (2, "0.004 ether")):
            address = addr[index]
            state = tmp_path / f"daemon-{index}"
            extra = ("--poll-interval", "0.1", *(x for t in trust[index] for x in ("--trust", t)))
            argv = provide_argv(uri, f"TEST::{index}", str(web_market.address), state, price=price, extra=extra)
            procs[address] = DaemonProcess(f"daemon-{index}", argv, tmp_path / f"daemon-{index}.log")
            states[address] = state / address.lower() / f"daemon-{chain.chain_id}.sqlite"
        wait_registered(web_market, procs, timeout=120)
        for index, trusted in trust.items():
            for t in trusted:
                _wait(lambda: web_market.trusts(addr[index], t), "the daemons' trust on chain")
        yield states
    finally:
        for proc in procs.values():
            proc.stop()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)  # keep the logs next to the screenshots
            shutil.copy(proc.log_path, ARTIFACTS / proc.log_path.name)


def _wait(predicate, what: str, timeout: float = 60.0) -> None:
    import time

    end = time.time() + timeout
    while not predicate():
        assert time.time() < end, f"timed out waiting for {what}"
        time.sleep(0.2)


def wait_status(page, *statuses: str, timeout: int = STEP_MS) -> str:
    """Wait until the task panel shows one of the statuses (it updates live, no reload)."""
    wanted = "|".join(statuses)
    page.wait_for_selector("#task-status[data-status]", timeout=timeout)
    page.wait_for_function(
        "re => new RegExp('^(' + re + ')$').test(document.querySelector('#task-status').dataset.status)",
        arg=wanted, timeout=timeout)
    return page.get_attribute("#task-status", "data-status")


def submit_folder(page, label: str, *, provider: str = "best", validator: str = "auto") -> int:
    """Post the task folder ``label`` from the page (0.02 ETH + 0.005 ETH fee) with the parties chosen in the
    form; its id once the page shows it."""
    page.select_option("#folder", label=label)
    page.fill("#price", "0.02")
    page.fill("#validator_fee", "0.005")
    page.select_option("#provider", value=provider)
    page.select_option("#validator", value=validator)
    page.click("#submit-form button[type=submit]")
    page.wait_for_url(re.compile(r"/\?task=\d+$"), timeout=60_000)
    page.wait_for_selector("#task-status[data-status]", timeout=STEP_MS)
    return int(page.url.rsplit("=", 1)[1])


def choose(page, role: str, address: str) -> None:
    """Pick ``address`` in the page's provider list and send the choice."""
    page.check(f'input[name={role}][value="{address}"]')
    page.click(f"#{role}-choice button[type=submit]")


RECORD_POOLS = """tid => {
  window.__seen = [];
  const note = () => {
    const li = document.querySelector('[data-item="task-' + tid + '"]');
    const pool = li ? li.closest('[data-pool]').dataset.pool : null;
    if (pool && window.__seen[window.__seen.length - 1] !== pool) window.__seen.push(pool);
  };
  new MutationObserver(note).observe(document.querySelector('[data-live-part="pools"]'),
                                     {childList: true, subtree: true});
  note();
}"""


# ---- the tests -----------------------------------------------------------------------------------
def test_requester_page__digits_task_end_to_end__result_released_downloaded_and_rated(open_page, web, web_market,
                                                                                      two_workers):
    requester = accounts.test_accounts[3]
    provider, validator = (str(accounts.test_accounts[i].address) for i in (1, 2))
    server = web(requester, lambda: web_market, daemon_states=two_workers)

    page = open_page(server.page_url("/"))
    page.wait_for_selector("body[data-live=on]")
    assert page.text_content("#account-address") == str(requester.address)
    assert "ETH" in page.text_content("#account-balance")
    # Providers with their score and count; validators with their own record and who trusts them.
    expect(page.locator(f'#providers-table [data-worker="{provider}"]')).to_contain_text("3.00")
    expect(page.locator(f'#validators-table [data-validator="{validator}"]')).to_contain_text("0.004 ETH")
    assert_accessible_basics(page)
    shot(page, "01-requester-start")

    # Each provider's published hardware is in the choice; with a folder chosen, one that cannot run it (the
    # judge published no offer) is greyed out with the reason, and comes back when no folder is chosen.
    page.select_option("#folder", label="digits")
    judge = page.locator(f'#provider option[value="{accounts.test_accounts[JUDGE].address}"]')
    expect(judge).to_be_disabled()
    expect(judge).to_contain_text("cannot run it: it has published no hardware offer")
    fit = page.locator(f'#provider option[value="{provider}"]')
    expect(fit).to_be_enabled()
    expect(fit).to_contain_text("runtimes ichain-runtime, ichain-torch")
    page.select_option("#folder", value="")
    expect(judge).to_be_enabled()

    # A second tab on the pool viewer records every pool the task appears in.
    pools = open_page(server.page_url("/pools"))
    pools.wait_for_selector("body[data-live=on]")

    # Submit the example task: the best provider (the cheaper one at equal scores) and the validator it trusts.
    task_id = submit_folder(page, "digits")
    pools.evaluate(RECORD_POOLS, task_id)
    expect(page.locator("#task-status dt:text-is('Provider') + dd")).to_have_text(provider, timeout=STEP_MS)
    expect(page.locator("#task-status dt:text-is('Validator') + dd")).to_have_text(validator, timeout=STEP_MS)
    shot(page, "03-requester-posted")

    # Per-chunk progress: the provider fetched every chunk of the task the page hosts (for it only).
    page.wait_for_function("() => /100%/.test((document.querySelector('[data-transfer=upload-task-provider] h3')"
                           " || {}).textContent)", timeout=STEP_MS)
    assert page.locator('[data-transfer^="upload-task-validator"]').count() == 0
    wait_status(page, "Validating", "Completed")
    shot(pools, "05-pools-moving")

    # The accept releases the result: downloaded over the per-chunk transfer and verified.
    assert wait_status(page, "Completed", "Failed", "Rejected") == "Completed"
    page.wait_for_selector("#download-result", timeout=STEP_MS)
    with page.expect_download() as dl:
        page.click("#download-result")
    saved = ARTIFACTS / f"task-{task_id}-result.tar"
    dl.value.save_as(saved)
    committed = page.text_content("#task-status").split("0x")
    digest = hashlib.sha256(saved.read_bytes()).hexdigest()
    assert any(part.startswith(digest) for part in committed), "downloaded result differs from the commitment"
    with tarfile.open(saved) as tf:
        assert tf.getnames()
    shot(page, "06-requester-completed")

    # Rate it: nothing is preselected (the page never rates for the user); 4 stars, validator 5.
    assert page.locator("#rate-form input[type=radio]:checked").count() == 0
    page.check("#rating-4")
    page.check("#vrating-5")
    page.click("#rate-form button[type=submit]")
    assert wait_status(page, "Rated") == "Rated"
    shot(page, "07-requester-rated")

    seen = pools.evaluate("() => window.__seen")
    assert "executing" in seen or "validating" in seen, seen
    pools.wait_for_function(f"() => !document.querySelector('[data-item=\"task-{task_id}\"]')", timeout=STEP_MS)
    shot(pools, "08-pools-after")

    # The provider's dashboard: score, tasks run, earnings (the price less the 1% burn), its daemon.
    prov = open_page(server.page_url(f"/provider?address={provider}"))
    prov.wait_for_selector("#provider-view")
    assert "(1 rating" in prov.text_content("#prov-rating")
    assert prov.text_content("#prov-run").strip() == "1"
    assert "0.0198 ETH" in prov.text_content("#prov-earned")
    assert validator[:6] in prov.text_content("#prov-trusted")
    assert "running" in prov.text_content("#daemon-state")
    assert_accessible_basics(prov)
    shot(prov, "09-provider")
    val = open_page(server.page_url(f"/provider?address={validator}"))
    assert val.text_content("#prov-validated").strip() == "1"
    assert "0.00495 ETH" in val.text_content("#prov-earned")
    assert "(1 rating)" in val.text_content("#prov-validator-record")

    # At phone width: same content, no sideways scrolling, still usable.
    for name, url in (("10-phone-requester", f"/?task={task_id}"), ("11-phone-pools", "/pools"),
                      ("12-phone-provider", f"/provider?address={provider}")):
        phone = open_page(server.page_url(url), viewport=PHONE)
        phone.wait_for_selector("body[data-live=on]")
        assert_accessible_basics(phone)
        shot(phone, name)


def test_requester_page__script_raises__failure_report_shown_within_seconds_as_text(open_page, web, web_market,
                                                                                   two_workers, tmp_path):
    """The provider's daemon runs a script that raises, its stderr full of a stranger's escape sequences and
    markup: the page shows the exit code, the error line and the stderr tail within seconds, as text (no
    element injected, every control character a visible escape), and offers the rating without preselection."""
    import time

    from marketplace_helpers import raising_task

    requester = accounts.test_accounts[4]
    provider, validator = (str(accounts.test_accounts[i].address) for i in (1, 2))
    raising_task(tmp_path / "tasks")
    server = web(requester, lambda: web_market, tasks_root=tmp_path / "tasks", daemon_states=two_workers)
    page = open_page(server.page_url("/"))
    page.wait_for_selector("body[data-live=on]")
    submit_folder(page, "raising", provider=provider, validator=validator)
    started = time.time()
    assert wait_status(page, "Failed", "Completed", "Rejected") == "Failed"
    page.wait_for_selector("#task-failure", timeout=30_000)
    assert time.time() - started < 90  # the task's timeout is 10 minutes: this is the provider's report
    assert page.text_content("#failure-exit").strip() == "1"
    assert page.text_content("#failure-stage").strip() == "execute"
    line = page.text_content("#failure-line")
    assert line.startswith("ValueError: boom: <b>bold</b>"), line  # the markup arrives as text
    stderr = page.text_content("#failure-stderr")
    assert "<script>alert(1)</script>" in stderr and "\\x1b" in stderr and "\\u202e" in stderr
    assert "\x1b" not in stderr + line and "\u202e" not in stderr + line
    injected = page.evaluate("() => document.querySelectorAll('#task-failure script, #task-failure b').length")
    assert injected == 0
    shot(page, "16-requester-failed")

    assert page.locator("#rate-form input[type=radio]:checked").count() == 0
    assert page.locator("#vrating-1").count() == 0  # a failed task had no verdict: its validator is not rated
    page.check("#rating-2")
    page.click("#rate-form button[type=submit]")
    assert wait_status(page, "Rated") == "Rated"
    expect(page.locator("#task-failure")).to_be_visible()  # the report stays with the task


def test_requester_page__validator_rejects__dispute_shown_and_refunded(open_page, web, web_market, two_workers):
    """A real provider commits its result; the validator it trusts (played here) rejects: the page shows the
    dispute, no result to download, price + fee refunded, and nothing to rate."""
    requester = accounts.test_accounts[0]
    provider, judge = str(accounts.test_accounts[1].address), accounts.test_accounts[JUDGE]
    price, fee = 2 * 10**16, 5 * 10**15
    credit_before = web_market.credit(requester.address)
    server = web(requester, lambda: web_market, daemon_states=two_workers)
    page = open_page(server.page_url("/"))
    page.wait_for_selector("body[data-live=on]")
    task_id = submit_folder(page, "digits", provider=provider, validator=str(judge.address))
    assert wait_status(page, "Validating", "Failed") == "Validating"
    web_market.submit_verdict(task_id, web_market.result_of(task_id), False, sender=judge)

    assert wait_status(page, "Rejected") == "Rejected"
    page.wait_for_selector("#task-dispute")
    text = page.text_content("#task-dispute")
    assert "rejected" in text and "No result was released" in text and "0.025 ETH" in text, text
    assert page.text_content("#task-verdict").strip() == "rejected"
    assert page.locator("#download-result").count() == 0 and page.locator("#rate-form").count() == 0
    assert web_market.credit(requester.address) == credit_before + price + fee
    shot(page, "17-requester-dispute")


def _zip_folder(folder) -> bytes:
    """A task folder as the .zip a user would upload (one top-level folder)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zf.write(path, f"{folder.name}/{path.relative_to(folder)}")
    return buf.getvalue()


def test_requester_page__stop_and_refund__deposit_back_then_withdrawn(open_page, web, web_market):
    """Stop a pending task; claim back an executing one whose provider stays silent (refused before the
    deadline with the SDK's own one-line reason, accepted after it); then withdraw the credit."""
    from offer_helpers import publish

    from ichain.requester.format import eth
    from ichain.transfer import KeyPair

    requester, silent, judge = accounts.test_accounts[6], accounts.test_accounts[5], accounts.test_accounts[9]
    for who in (silent, judge):  # no daemon behind them
        if not web_market.worker(who.address).registered:
            web_market.register(KeyPair.generate().public_bytes, 10**16 if who is silent else 10**15, sender=who)
        publish(web_market, who)  # they claim hardware that runs digits: the page offers them
    if not web_market.trusts(silent.address, judge.address):
        web_market.set_trust(judge.address, True, sender=silent)
    credit_before = web_market.credit(requester.address)
    server = web(requester, lambda: web_market)
    page = open_page(server.page_url("/"))
    page.on("dialog", lambda dialog: dialog.accept())  # the "Stop task #N?" confirmation

    def post(upload: bytes | None = None) -> int:
        if upload is None:
            page.select_option("#folder", label="digits")
        else:
            page.set_input_files("#upload", files=[{"name": "my-digits.zip", "mimeType": "application/zip",
                                                    "buffer": upload}])
        page.fill("#price", "0.01")
        page.fill("#validator_fee", "0.001")
        page.select_option("#provider", value="none")  # left pending: the provider is chosen below
        page.select_option("#validator", value=str(judge.address))
        with page.expect_navigation(timeout=60_000):  # to /?task=N once posted
            page.click("#submit-form button[type=submit]")
        wait_status(page, "Pending")
        return int(page.url.rsplit("=", 1)[1])

    first = post(upload=_zip_folder(EXAMPLES / "digits"))  # uploaded from the browser
    assert "my-digits" in page.text_content("#task-status")
    page.click("#stop-form button[type=submit]")
    assert wait_status(page, "Cancelled") == "Cancelled"
    shot(page, "13-requester-stopped")

    second = post()
    assert second == first + 1
    choose(page, "provider", silent.address)
    wait_status(page, "Executing")
    page.click("#stop-form button[type=submit]")
    alert = page.locator("#task-actions [data-form-alert]")
    alert.wait_for(state="visible")
    assert alert.text_content().startswith("Deadline not reached"), alert.text_content()
    shot(page, "14-requester-refund-too-early")

    chain.provider.make_request("evm_increaseTime", [web_market.default_timeout + 60])
    chain.provider.make_request("evm_mine", [])
    page.click("#stop-form button[type=submit]")
    assert wait_status(page, "Expired") == "Expired"

    # Both deposits are credited back; Withdraw pays them out.
    credit = web_market.credit(requester.address)
    assert credit == credit_before + 2 * (10**16 + 10**15)
    page.wait_for_selector("#account-credit")
    before = requester.balance
    page.click("#account-credit button")
    page.wait_for_selector("#account-credit", state="detached")
    assert web_market.credit(requester.address) == 0
    assert requester.balance > before + credit - 10**15  # minus gas
    assert f"Withdrew {eth(credit)}" in page.text_content("#page-alert")
    shot(page, "15-requester-withdrawn")
