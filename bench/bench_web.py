"""Web page benchmark -> bench/results/web.json.

On a local anvil (ape-foundry), with the page served in-process and Debian's Chromium:

- live latency: from a task's post being mined to its item appearing in the pool viewer of an open
  page (pushed over Server-Sent Events, no reload), reported with its ratio to the push interval;
- render cost of one live refresh of the pool viewer (``/api/fragments?view=pools``) with 1 and with
  60 open tasks, and their ratio (the viewer lists at most ``POOL_SHOWN`` items per pool, so the cost
  must stay bounded as the market fills up);
- first load of the requester page;
- the same refresh with the SDK's chain reads batched (the default) and made one call at a time, and
  their ratio.

Run: ``python bench/bench_web.py`` from the project root.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "web.json"


def _get(url: str, cookie: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Cookie": cookie}), timeout=30) as r:
        r.read()
    return time.perf_counter() - start


def _median_ms(url: str, runs: int, cookie: str, before=None) -> float:
    samples = []
    for _ in range(runs):
        if before:
            before()
        samples.append(_get(url, cookie))
    return round(statistics.median(samples) * 1000, 2)


def main() -> dict:
    """Run the benchmark and write bench/results/web.json."""
    os.chdir(ROOT)
    from ape import accounts, chain, networks
    from playwright.sync_api import sync_playwright

    from ichain.config import IChainConfig
    from ichain.market import Market
    from ichain.transfer import KeyPair
    from ichain.web import WebService, create_app
    from ichain.web.app import LIVE_INTERVAL
    from ichain.web.server import BackgroundServer
    from ichain.web.service import POOL_SHOWN

    sys.path.insert(0, str(ROOT / "tests" / "e2e"))  # the browser settings the web page's tests use
    from web_helpers import CHROMIUM, CHROMIUM_ARGS

    import tempfile

    results: dict = {"live_interval_s": LIVE_INTERVAL, "pool_items_shown": POOL_SHOWN}
    with networks.parse_network_choice("ethereum:local:foundry"):
        deployer, requester, worker = accounts.test_accounts[0], accounts.test_accounts[1], accounts.test_accounts[2]
        market = Market.deploy(deployer, save=False, validation_window=60, min_timeout=60,
                               max_timeout=3600)
        market.register(KeyPair.generate().public_bytes, 10**15, sender=worker)
        validator = accounts.test_accounts[3]
        market.register(KeyPair.generate().public_bytes, 10**14, sender=validator)  # every task names one
        state = Path(tempfile.mkdtemp(prefix="bench-web-"))
        # No read cache: each request below pays for a full refresh, as one live client would.
        service = WebService(account=requester, market_factory=lambda: market, config=IChainConfig(state_dir=state),
                             cache_seconds=0.0)
        counter = iter(range(10**6))

        def post() -> int:
            digest = hashlib.sha256(f"bench-{next(counter)}-{time.time()}".encode()).digest()
            return market.post(digest, validator=validator, price=10**15, validator_fee=10**14, sender=requester).task_id

        with BackgroundServer(create_app(service)) as server, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page()
            start = time.perf_counter()
            page.goto(server.page_url("/"))  # signs in (the per-launch secret), lands on /
            page.wait_for_selector("body[data-live=on]")
            results["requester_page_first_load_ms"] = round((time.perf_counter() - start) * 1000, 1)

            pools = browser.new_page()
            pools.goto(server.page_url("/pools"))
            pools.wait_for_selector("body[data-live=on]")
            pools.evaluate("""() => { window.__seen = {};
                new MutationObserver(() => document.querySelectorAll('[data-item^="task-"]').forEach(li => {
                    if (!(li.dataset.item in window.__seen)) window.__seen[li.dataset.item] = Date.now(); }))
                .observe(document.querySelector('[data-live-part="pools"]'), {childList: true, subtree: true}); }""")
            latencies = []
            for _ in range(10):
                tid = post()
                mined = time.time() * 1000
                pools.wait_for_function(f"() => 'task-{tid}' in window.__seen", timeout=10_000)
                latencies.append(pools.evaluate(f"() => window.__seen['task-{tid}']") - mined)
                time.sleep(0.2)
            results["live_latency_ms"] = {"median": round(statistics.median(latencies), 1),
                                          "max": round(max(latencies), 1), "samples": len(latencies)}
            results["live_latency_over_interval"] = round(statistics.median(latencies) / (LIVE_INTERVAL * 1000), 2)

            # Refresh cost with few and with many open tasks (same run, so the ratio is fair).
            browser.close()
            url = server.url + "/api/fragments?view=pools"
            cookie = f"{server.guard.cookie_name}={server.guard.token}"
            open_now = len(market.tasks_in(market.task(1).status))

            def new_block() -> None:
                chain.provider.make_request("evm_mine", [])

            refresh = {}
            for count in (open_now, 60):
                while len(market.tasks_in(market.task(1).status)) < count:
                    post()
                refresh[count] = {"same_block_ms": _median_ms(url, 15, cookie),
                                  "new_block_ms": _median_ms(url, 15, cookie, before=new_block)}
            results["pools_refresh"] = {f"{k}_open_tasks": v for k, v in refresh.items()}
            results["pools_refresh_new_block_ratio_60_vs_%d" % open_now] = round(
                refresh[60]["new_block_ms"] / refresh[open_now]["new_block_ms"], 2)
            results["pools_refresh_same_vs_new_block_ratio_at_60"] = round(
                refresh[60]["same_block_ms"] / refresh[60]["new_block_ms"], 3)

            # The same refresh with the SDK's reads one call at a time (what a node refusing JSON-RPC
            # batches gets, and what the SDK did before it batched them).
            def refuse_batches():
                raise ValueError("no batches")

            market._web3_contracts = refuse_batches
            one_by_one = _median_ms(url, 15, cookie, before=new_block)
            del market._web3_contracts
            results["pools_refresh_60_new_block_one_call_each_ms"] = one_by_one
            results["pools_refresh_batched_over_one_call_each"] = round(refresh[60]["new_block_ms"] / one_by_one, 3)
        service.close()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    part = OUT.with_name(OUT.name + ".part")
    part.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(part, OUT)
    return results


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
