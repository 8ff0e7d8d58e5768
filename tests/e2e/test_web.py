"""The web page in a real browser (Debian's Chromium via Playwright) on a real anvil with real daemons.

The requester submits examples/digits from the page, picks a provider and a validator from the
ranked lists, watches the per-chunk progress, downloads the result and rates it, while a second tab
on the pool viewer records every pool the task passes through. Two provider daemons run as
subprocesses (``ape ichain provide``) and execute / validate the task in the Docker sandbox.
Screenshots of each main screen go to tests/artifacts/web/.
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


# ---- chain, daemons, page ---------------------------------------------------------------------------
@pytest.fixture
def two_workers(web_market, tmp_path):
    """Provider daemons (``ape ichain provide`` subprocesses) for test accounts 1 (asks 0.01 ETH) and
    2 (asks 0.02 ETH) on the test anvil; returns {address: daemon state file} for the provider page."""
    from ichain._cli.demo import DaemonProcess, provide_argv, wait_registered

    uri = getattr(chain.provider, "http_uri", None) or chain.provider.uri
    procs, states = {}, {}
    try:
        for index, price in ((1, "0.01 ether"), (2, "0.02 ether")):
            address = str(accounts.test_accounts[index].address)
            state = tmp_path / f"daemon-{index}"
            argv = provide_argv(uri, f"TEST::{index}", str(web_market.address), state, price=price,
                                extra=("--poll-interval", "0.1"))
            procs[address] = DaemonProcess(f"daemon-{index}", argv, tmp_path / f"daemon-{index}.log")
            states[address] = state / address.lower() / f"daemon-{chain.chain_id}.sqlite"
        wait_registered(web_market, procs, timeout=120)
        yield states
    finally:
        for proc in procs.values():
            proc.stop()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)  # keep the logs next to the screenshots
            shutil.copy(proc.log_path, ARTIFACTS / proc.log_path.name)


def wait_status(page, *statuses: str, timeout: int = STEP_MS) -> str:
    """Wait until the task panel shows one of the statuses (it updates live, no reload)."""
    wanted = "|".join(statuses)
    page.wait_for_selector("#task-status[data-status]", timeout=timeout)
    page.wait_for_function(
        "re => new RegExp('^(' + re + ')$').test(document.querySelector('#task-status').dataset.status)",
        arg=wanted, timeout=timeout)
    return page.get_attribute("#task-status", "data-status")


def submit_folder(page, label: str) -> int:
    """Post the task folder ``label`` from the page (0.02 ETH + 0.005 ETH fee); its id once it shows Pending."""
    page.select_option("#folder", label=label)
    page.fill("#price", "0.02")
    page.fill("#validator_fee", "0.005")
    page.click("#submit-form button[type=submit]")
    page.wait_for_url(re.compile(r"/\?task=\d+$"), timeout=60_000)
    assert wait_status(page, "Pending") == "Pending"
    return int(page.url.rsplit("=", 1)[1])


def choose(page, role: str, address: str) -> None:
    """Pick ``address`` in the page's provider or validator list and send the choice."""
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
def test_requester_page__digits_task_end_to_end__result_downloaded_and_rated(open_page, web, web_market,
                                                                            two_workers):
    requester = accounts.test_accounts[3]
    provider, validator = (str(accounts.test_accounts[i].address) for i in (1, 2))
    server = web(requester, lambda: web_market, daemon_states=two_workers)

    page = open_page(server.url + "/")
    page.wait_for_selector("body[data-live=on]")
    assert page.text_content("#account-address") == str(requester.address)
    assert "ETH" in page.text_content("#account-balance")
    assert_accessible_basics(page)
    shot(page, "01-requester-start")

    # Submit the example task from a folder on the server.
    task_id = submit_folder(page, "digits")

    # A second tab on the pool viewer records every pool the task appears in.
    pools = open_page(server.url + "/pools")
    pools.wait_for_selector(f'[data-pool="pending"] [data-item="task-{task_id}"]')
    pools.evaluate(RECORD_POOLS, task_id)
    shot(pools, "02-pools-pending")

    # The provider list shows address, average rating, number of ratings and price.
    expect(page.locator("#provider-choice tbody tr")).to_have_count(2, timeout=STEP_MS)
    assert "0.01 ETH" in page.text_content("#provider-choice") and "0.02 ETH" in page.text_content("#provider-choice")
    shot(page, "03-requester-choose-provider")  # the paper's Figure 7, done again

    # Choose the provider with the keyboard only.
    page.focus(f'input[name=provider][value="{provider}"]')
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    wait_status(page, "Executing", "AwaitingValidator")
    # The panel names the provider in its Provider field, and again in "Last step: provider 0x… named"
    # until the next step's note: what the test means is the field.
    expect(page.locator("#task-status dt:text-is('Provider') + dd")).to_have_text(provider, timeout=STEP_MS)

    # Per-chunk progress: the provider fetched every chunk of the task the page hosts.
    page.wait_for_function("() => /100%/.test((document.querySelector('[data-transfer=upload-task-provider] h3')"
                           " || {}).textContent)", timeout=STEP_MS)

    # The result comes in: downloaded over the per-chunk transfer and verified.
    wait_status(page, "AwaitingValidator")
    page.wait_for_selector('[data-transfer="download"]', timeout=STEP_MS)
    page.wait_for_function("() => /100%/.test(document.querySelector('[data-transfer=download] h3').textContent)",
                           timeout=STEP_MS)
    shot(page, "04-requester-result-in")
    # the choice is its own live part, updated after the status: never the provider nor the requester
    expect(page.locator("#validator-choice tbody tr")).to_have_count(1, timeout=STEP_MS)
    choose(page, "validator", validator)
    wait_status(page, "Validating", "Accepted")
    shot(pools, "05-pools-moving")
    assert wait_status(page, "Accepted", "Rejected") == "Accepted"
    for upload in ("upload-task-validator", "upload-result-validator"):  # what the validator fetched
        expect(page.locator(f'[data-transfer="{upload}"] h3')).to_contain_text("100%", timeout=STEP_MS)

    # Download the result: the bytes the provider committed on chain.
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
    shot(page, "06-requester-accepted")

    # Rate it (4 stars) and pay.
    page.check("#rating-4")
    page.click("#finalize-form button[type=submit]")
    assert wait_status(page, "Completed") == "Completed"
    shot(page, "07-requester-completed")

    seen = pools.evaluate("() => window.__seen")
    assert seen[0] == "pending" and "executing" in seen and "validating" in seen, seen
    try:
        pools.wait_for_function(f"() => !document.querySelector('[data-item=\"task-{task_id}\"]')", timeout=STEP_MS)
    except Exception:
        shot(pools, "08-pools-after-FAILED")
        raise
    shot(pools, "08-pools-after")

    # The provider's dashboard: rating, tasks run, earnings, its daemon.
    prov = open_page(f"{server.url}/provider?address={provider}")
    prov.wait_for_selector("#provider-view")
    assert "4.00" in prov.text_content("#prov-rating") and "(1 rating)" in prov.text_content("#prov-rating")
    assert prov.text_content("#prov-run").strip() == "1"
    assert "0.02 ETH" in prov.text_content("#prov-earned")
    assert "running" in prov.text_content("#daemon-state")
    assert_accessible_basics(prov)
    shot(prov, "09-provider")
    val = open_page(f"{server.url}/provider?address={validator}")
    assert val.text_content("#prov-validated").strip() == "1"
    assert "0.005 ETH" in val.text_content("#prov-earned")

    # At phone width: same content, no sideways scrolling, still usable.
    for name, url in (("10-phone-requester", f"/?task={task_id}"), ("11-phone-pools", "/pools"),
                      ("12-phone-provider", f"/provider?address={provider}")):
        phone = open_page(server.url + url, viewport=PHONE)
        phone.wait_for_selector("body[data-live=on]")
        assert_accessible_basics(phone)
        shot(phone, name)


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
    from ichain.transfer import KeyPair

    requester, silent = accounts.test_accounts[6], accounts.test_accounts[5]
    web_market.register(KeyPair.generate().public_bytes, 10**16, sender=silent)  # no daemon behind it
    server = web(requester, lambda: web_market)
    page = open_page(server.url + "/")
    page.on("dialog", lambda dialog: dialog.accept())  # the "Stop task #N?" confirmation

    def post(upload: bytes | None = None) -> int:
        if upload is None:
            page.select_option("#folder", label="digits")
        else:
            page.set_input_files("#upload", files=[{"name": "my-digits.zip", "mimeType": "application/zip",
                                                    "buffer": upload}])
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
    assert credit == 2 * (10**16 + 10**15)
    page.wait_for_selector("#account-credit")
    before = requester.balance
    page.click("#account-credit button")
    page.wait_for_selector("#account-credit", state="detached")
    assert web_market.credit(requester.address) == 0
    assert requester.balance > before + credit - 10**15  # minus gas
    assert "Withdrew 0.022 ETH" in page.text_content("#page-alert")
    shot(page, "15-requester-withdrawn")


def test_requester_page__result_rejected__refund_shown_and_provider_rated(open_page, web, web_market, two_workers,
                                                                         overclaim_task):
    """A result its validator rejects (the task overclaims its accuracy): the page shows the verdict, offers
    the rating without payment, and the chain has refunded the price to the requester, paid the validator's
    fee, paid the provider nothing and recorded the rating."""
    requester = accounts.test_accounts[4]
    provider, validator = (str(accounts.test_accounts[i].address) for i in (1, 2))
    price, fee = 2 * 10**16, 5 * 10**15
    start = chain.blocks.head.number + 1

    def earned(who: str) -> int:
        """Credited since the test began: what is still credited plus what the daemons withdrew."""
        withdrawn = [e.amount for e in web_market.events(start) if e.name == "Withdrawn" and e.account == who]
        return web_market.credit(who) + sum(withdrawn)

    earned_before = {who: web_market.credit(who) for who in (provider, validator, str(requester.address))}
    server = web(requester, lambda: web_market, tasks_root=overclaim_task.parent, daemon_states=two_workers)

    page = open_page(server.url + "/")
    page.wait_for_selector("body[data-live=on]")
    submit_folder(page, overclaim_task.name)
    choose(page, "provider", provider)
    wait_status(page, "AwaitingValidator")
    choose(page, "validator", validator)
    assert wait_status(page, "Rejected", "Accepted") == "Rejected"
    assert "refunded" in page.text_content("#finalize-form legend")
    shot(page, "16-requester-rejected")

    page.check("#rating-1")
    page.click("#finalize-form button[type=submit]")
    assert wait_status(page, "Closed") == "Closed"
    shot(page, "17-requester-rejected-rated")
    assert earned(str(requester.address)) == earned_before[str(requester.address)] + price
    assert earned(validator) == earned_before[validator] + fee
    assert earned(provider) == earned_before[provider]
    rated = web_market.worker(provider)
    assert (rated.rating_count, rated.rating_sum) == (1, 1)


def test_requester_page__silent_validator__replaced_from_the_page_then_accepted(open_page, web, web_market,
                                                                               two_workers):
    """The validator named from the page never answers: once its window has passed the page offers the choice
    again (the silent one left out), the new validator accepts, the requester pays; the silent one earns nothing."""
    from ichain.transfer import KeyPair

    requester, silent = accounts.test_accounts[6], accounts.test_accounts[5]
    provider, validator = (str(accounts.test_accounts[i].address) for i in (1, 2))
    web_market.register(KeyPair.generate().public_bytes, 10**15, sender=silent)  # no daemon behind it
    start = chain.blocks.head.number + 1
    server = web(requester, lambda: web_market, daemon_states=two_workers)

    page = open_page(server.url + "/")
    page.wait_for_selector("body[data-live=on]")
    submit_folder(page, "digits")
    choose(page, "provider", provider)
    wait_status(page, "AwaitingValidator")
    choose(page, "validator", silent.address)
    wait_status(page, "Validating")
    assert page.locator("#validator-choice").count() == 0  # a named validator keeps its whole window

    # Nobody answers: the validation window passes.
    chain.provider.make_request("evm_increaseTime", [web_market.windows["validation_window"] + 5])
    chain.provider.make_request("evm_mine", [])
    page.wait_for_selector("#validator-choice", timeout=STEP_MS)
    assert "silent" in page.text_content("#validator-choice legend")
    assert page.locator(f'input[name=validator][value="{silent.address}"]').count() == 0
    shot(page, "18-requester-silent-validator")
    choose(page, "validator", validator)
    assert wait_status(page, "Accepted", "Rejected") == "Accepted"

    page.check("#rating-5")
    page.click("#finalize-form button[type=submit]")
    assert wait_status(page, "Completed") == "Completed"
    verdicts = [e for e in web_market.events(start) if e.name == "VerdictSubmitted"]
    assert [(v.validator, v.accepted) for v in verdicts] == [(validator, True)]
    assert web_market.credit(silent.address) == 0
