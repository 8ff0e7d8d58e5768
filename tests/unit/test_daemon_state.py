"""The daemon's SQLite state, locator envelopes and settings (real SQLite files, no chain)."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from ichain.config import ConfigError, IChainConfig, load_config
from ichain.transfer.envelope import Envelope, EnvelopeError
from ichain.daemon.state import DaemonState, StateError


@pytest.fixture
def state(tmp_path):
    st = DaemonState(tmp_path / "d.sqlite")
    yield st
    st.close()


def test_bind__other_chain__raises_state_error(tmp_path):
    st = DaemonState(tmp_path / "d.sqlite")
    st.bind(31337, "0x" + "ab" * 20)
    st.bind(31337, "0x" + "AB" * 20)  # same market, other case: fine
    with pytest.raises(StateError, match="belongs to chain 31337"):
        st.bind(1, "0x" + "ab" * 20)
    st.close()


def test_transaction__exception_inside__rolls_back_checkpoint_and_tasks(state):
    state.advance(10, "0xaa")
    with pytest.raises(RuntimeError):
        with state.transaction():
            state.upsert_task(1, "provider", locator="00")
            state.advance(20, "0xbb")
            raise RuntimeError("killed mid-ingest")
    assert state.checkpoint == 10
    assert state.task(1, "provider") is None


def test_upsert_task__replayed_event_after_done__stays_done(state):
    state.upsert_task(5, "provider", locator="01", task_hash="ff")
    state.set_stage(5, "provider", "done")
    rec = state.upsert_task(5, "provider", stage="new", locator="01")
    assert rec.stage == "done"
    assert rec.data == {"locator": "01", "task_hash": "ff"}
    assert state.tasks(active_only=True) == []


def test_rewind__after_reorg__forgets_later_blocks(state):
    for n in range(1, 6):
        state.advance(n, f"0x{n:02x}")
    state.rewind(2)
    assert state.checkpoint == 2
    assert state.block_hash(2) == "0x02"
    assert state.block_hash(3) is None


def test_journal__intent_then_result__recorded_in_nonce_order(state):
    state.journal_intent("submitResult:2", 7)
    state.journal_intent("register", 6)
    state.journal_result("register", "mined", "0x01")
    entries = state.journal_all()
    assert [e["action"] for e in entries] == ["register", "submitResult:2"]
    assert entries[0]["status"] == "mined" and entries[1]["status"] == "sending"


def test_state__process_killed_mid_transaction__file_still_consistent(tmp_path):
    # A real SIGKILL between BEGIN and COMMIT: the restarted reader sees the last committed checkpoint.
    path = tmp_path / "d.sqlite"
    code = textwrap.dedent(f"""
        import os, signal
        from ichain.daemon.state import DaemonState
        st = DaemonState({str(path)!r})
        st.advance(41, "0x29")
        with st.transaction():
            st.upsert_task(9, "provider", locator="aa")
            st.advance(42, "0x2a")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    st = DaemonState(path)
    assert st.checkpoint == 41
    assert st.task(9, "provider") is None
    st.close()


def test_envelope__round_trip__keeps_key_and_locators():
    env = Envelope(b"k" * 32, (b"one", b"", b"x" * 300))
    assert Envelope.decode(env.encode()) == env


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "not an iChain envelope"),
        (b"XX" + bytes(40), "not an iChain envelope"),
        (b"IC\x02" + bytes(41), "unsupported envelope version"),  # v2 carried a context id: gone
        (b"IC\x03" + bytes(20), "truncated"),
        (b"IC\x03" + bytes(32) + b"\x01\x00\x05abc", "truncated"),
        (b"IC\x03" + bytes(32) + b"\x00junk", "trailing bytes"),
    ],
)
def test_envelope_decode__malformed__raises_one_line_error(data, message):
    with pytest.raises(EnvelopeError, match=message) as info:
        Envelope.decode(data)
    assert "\n" not in str(info.value)


def test_config__overrides__win_over_defaults(tmp_path):
    cfg = load_config(transport="direct", port=0, state_dir=tmp_path, concurrency=3)
    assert cfg.concurrency == 3 and cfg.state_dir == tmp_path
    assert cfg.account_dir("0xABC").name == "0xabc"


@pytest.mark.parametrize("kwargs, message", [
    ({"transport": "carrier-pigeon"}, "transport must be one of"),
    ({"port": 70000}, "port must be between"),
    ({"concurrency": 0}, "concurrency must be at least 1"),
    ({"poll_interval": 0}, "poll_interval must be positive"),
    ({"trusted_validators": ["0x1234"]}, "trusted_validators: not an address"),
    ({"min_validator_fee": -1}, "min_validator_fee must be >= 0"),
    ({"deadline_margin": -1}, "deadline_margin must be >= 0"),
    ({"max_fetch_bytes": 0}, "max_fetch_bytes must be positive"),
])
def test_config__invalid_setting__raises_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        IChainConfig(**kwargs)


def test_config__trusted_validators__deduplicated_in_order_and_lowercased():
    a, b = "0x" + "Ab" * 20, "0x" + "cd" * 20
    cfg = IChainConfig(trusted_validators=[a, b, a.lower()])
    assert cfg.trusted_validators == (a.lower(), b)


def test_config__tor_network_env__reaches_tor_options(tmp_path, monkeypatch):
    monkeypatch.setenv("ICHAIN_TOR_NETWORK", str(tmp_path / "net.json"))
    assert load_config(transport="tor").tor["tor_network"] == str(tmp_path / "net.json")


def test_load_config__ichain_section_in_ape_config__read_then_overridden(tmp_path):
    (tmp_path / "ape-config.yaml").write_text("name: t\nichain:\n  transport: tor\n  concurrency: 5\n")
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from ichain.config import load_config\n"
            "a = load_config(); b = load_config(concurrency=1, transport='direct')\n"
            "print(a.transport, a.concurrency, b.transport, b.concurrency)") % str(os.getcwd())
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.stdout.split()[-4:] == ["tor", "5", "direct", "1"], out.stderr[-2000:]
