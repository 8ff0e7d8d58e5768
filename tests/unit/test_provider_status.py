"""``ape ichain provider status``: what tasks paid a worker (from the market's events on the session's anvil), the
daemon's pid file, and the command itself (a real subprocess) on a state file the daemon's own state class wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import readme_json_keys

from ichain._cli.provider import task_pay
from ichain.daemon.pidfile import pid_file, read_pid, remove_pid, running_daemon, write_pid
from ichain.daemon.state import DaemonState, state_file
from ichain.market.types import burn_of, collateral_for

APE = str(Path(sys.executable).with_name("ape"))


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([APE, "ichain", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


# ------------------------------------------------------------------ what a task paid
def test_task_pay__accepted__provider_earns_price_less_burn_validator_its_fee_less_burn(market, task_in, consts,
                                                                                       provider, validator):
    task, _ = task_in("Completed")
    events = market.task_events(task.task_id)
    collateral = collateral_for(consts.PRICE, consts.FEE)
    assert task_pay("provider", provider.address, events) == (
        consts.PRICE - burn_of(consts.PRICE) + collateral, consts.PRICE - burn_of(consts.PRICE))
    assert task_pay("validator", validator.address, events) == (consts.FEE - burn_of(consts.FEE),) * 2


def test_task_pay__rejected__provider_loses_its_collateral(market, task_in, consts, provider, validator):
    task, _ = task_in("Rejected")
    events = market.task_events(task.task_id)
    assert task_pay("provider", provider.address, events) == (0, -collateral_for(consts.PRICE, consts.FEE))
    assert task_pay("validator", validator.address, events) == (consts.FEE - burn_of(consts.FEE),) * 2


def test_task_pay__failure_reported__provider_keeps_the_failure_fee(market, task_in, provider, validator):
    task, _ = task_in("Failed")
    events = market.task_events(task.task_id)
    failed = next(e for e in events if e.name == "TaskFailed")
    assert failed.provider_paid > 0
    assert task_pay("provider", provider.address, events) == (failed.provider_paid,) * 2
    assert task_pay("validator", validator.address, events) == (0, 0)


def test_task_pay__silent_validator_expired__collateral_back_nothing_earned(market, task_in, consts, provider):
    task, _ = task_in("Expired", expire_from="Validating")
    events = market.task_events(task.task_id)
    assert task_pay("provider", provider.address, events) == (collateral_for(consts.PRICE, consts.FEE), 0)


def test_task_pay__someone_elses_task__nothing(market, task_in, outsider):
    task, _ = task_in("Completed")
    events = market.task_events(task.task_id)
    assert task_pay("provider", outsider.address, events) == (0, 0)
    assert task_pay("validator", outsider.address, events) == (0, 0)


# ------------------------------------------------------------------ the pid file
def test_pid_file__written_then_removed__running_then_not(tmp_path):
    path = pid_file(tmp_path, 31337)
    assert running_daemon(path) is None
    write_pid(path)
    assert running_daemon(path)["pid"] == os.getpid()
    remove_pid(path)
    assert not path.exists() and running_daemon(path) is None


def test_pid_file__left_by_a_dead_process__reported_stale(tmp_path):
    path = pid_file(tmp_path, 31337)
    code = f"from ichain.daemon.pidfile import write_pid; from pathlib import Path; write_pid(Path({str(path)!r}))"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert read_pid(path) is not None  # the file is there (an exit without cleanup, like SIGKILL)...
    assert running_daemon(path) is None  # ...but its process is gone


def test_pid_file__pid_reused_by_another_process__reported_stale(tmp_path):
    path = pid_file(tmp_path, 31337)
    write_pid(path)
    record = read_pid(path)
    if record["start_ticks"] is None:
        pytest.skip("no /proc: process start times unknown")
    path.write_text(json.dumps({**record, "start_ticks": record["start_ticks"] - 1}))
    assert running_daemon(path) is None


def test_pid_file__another_processes_file__not_removed(tmp_path):
    path = pid_file(tmp_path, 31337)
    path.write_text(json.dumps({"pid": 1, "start_ticks": None, "started": 0}))
    remove_pid(path)
    assert path.exists()


# ------------------------------------------------------------------ the command
def test_provider_status__no_state__one_line_error(node, tmp_path, provider):
    proc = run("provider", "status", "--network", node, "--account", provider.address, "--state-dir",
               str(tmp_path / "empty"))
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: no daemon state for"), proc.stderr


def test_provider_status__unknown_alias__usage_error(node, tmp_path):
    proc = run("provider", "status", "--network", node, "--account", "nosuchalias", "--state-dir", str(tmp_path))
    assert proc.returncode == 2
    assert "no account 'nosuchalias'" in proc.stderr and "Traceback" not in proc.stderr


def test_provider_status__state_of_a_stopped_daemon__tasks_earnings_and_last_block(node, market, task_in, consts,
                                                                                  provider, chain, tmp_path):
    done, _ = task_in("Completed")
    failed, _ = task_in("Failed")
    chain_id = int(chain.chain_id)
    head = chain.blocks.head
    state = DaemonState(state_file(tmp_path / "state" / provider.address.lower(), chain_id))
    state.bind(chain_id, market.address)
    state.upsert_task(done.task_id, "provider", "done", accepted=True)
    state.upsert_task(failed.task_id, "provider", "done", exit_code=1)
    state.advance(int(head.number), str(head.hash.hex()))
    state.close()

    proc = run("provider", "status", "--network", node, "--account", provider.address, "--state-dir",
               str(tmp_path / "state"), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # one document: with --json, ape's own log lines go to stderr
    assert set(data) == readme_json_keys()["provider status"][0] | readme_json_keys()["provider status"][1]
    failure_fee = next(e for e in market.task_events(failed.task_id) if e.name == "TaskFailed").provider_paid
    assert data["address"] == provider.address and data["market"] == market.address  # the state's own market
    assert data["running"] is False and data["pid"] is None
    assert data["checkpoint"] == head.number and data["checkpoint_time"] == head.timestamp
    assert data["tasks_by_stage"] == {"provider": {"done": 2}}
    assert {t["task_id"]: t["status"] for t in data["tasks"]} == {done.task_id: "Completed",
                                                                   failed.task_id: "Failed"}
    assert data["earnings"] == {"provider": consts.PRICE - burn_of(consts.PRICE) + failure_fee, "validator": 0,
                                "total": consts.PRICE - burn_of(consts.PRICE) + failure_fee}
    assert data["credit"] == market.credit(provider.address)
    assert data["worker"]["registered"] is True and data["worker"]["price"] == consts.ASKING

    text = run("provider", "status", "--network", node, "--account", provider.address, "--state-dir",
               str(tmp_path / "state"))
    assert text.returncode == 0, text.stderr
    assert "daemon not running" in text.stdout and f"last block seen: {head.number}" in text.stdout
