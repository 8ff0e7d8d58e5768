"""A real private Tor network on 127.0.0.1, for the tests, the bench and ``make demo TRANSPORT=tor``.

One directory authority and N relays (default 5: onion-service paths need 4, and one spare lets a
test kill a relay mid-transfer), then clients on demand. Every process is a :class:`TorProcess` we own
(it dies with us), all data lives in one temporary directory, and every port is chosen at run time.

Usage::

    with PrivateTorNetwork() as net:        # ~20-30 s: keys, votes, first consensus
        client = net.add_client("alice")    # bootstrapped tor with a SOCKS port
        ...

The options that mattered: ``TestingTorNetwork``, ``AssumeReachable`` on relays *and*
the authority, 10/2/2 s voting, ``DirAuthority`` built from tor-gencert's v3ident and
``tor --list-fingerprint``, and clients started only once every relay holds the consensus.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import stem

from ichain.net import free_port
from ichain.tor.errors import TorConfigError, TorNotFound, TorStartError
from ichain.tor.process import TorProcess, find_tor

_VOTING = {
    "TestingTorNetwork": 1,
    # Relays otherwise linger 30 s after being told to exit (teardown and relay restarts wait on it).
    "ShutdownWaitLength": 0,
    "TestingV3AuthInitialVotingInterval": 10,
    "TestingV3AuthInitialVoteDelay": 2,
    "TestingV3AuthInitialDistDelay": 2,
    "V3AuthVotingInterval": 10,
    "V3AuthVoteDelay": 2,
    "V3AuthDistDelay": 2,
}


class PrivateTorNetwork:
    """Directory authority + relays + clients on 127.0.0.1, all owned and always torn down.

    Args:
        root: directory for every tor's data (a fresh temp dir when None; removed on stop if so).
        relays: number of relays besides the authority (>= 3).
        tor_cmd: the tor executable.
    """

    def __init__(self, root: Path | str | None = None, *, relays: int = 5, tor_cmd: str = "tor"):
        if relays < 3:
            raise ValueError("a private Tor network needs at least 3 relays for onion services")
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="ichain-tornet-")).absolute()
        self._authority_dir = self.root / "auth"
        self.n_relays = relays
        self.tor_cmd = find_tor(tor_cmd)
        self.authority: TorProcess | None = None
        self.relays: list[TorProcess] = []
        self.clients: dict[str, TorProcess] = {}
        self.dir_authority_line = ""
        self.bootstrap_seconds = 0.0
        self._relay_ports: dict[int, int] = {}
        self._rejected: set[str] = set()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> "PrivateTorNetwork":
        """Create keys, start the authority and relays, and wait for a consensus every relay holds.

        Raises:
            TorNotFound: tor or tor-gencert missing.
            TorStartError: the network did not form within ``timeout`` seconds (everything is stopped).
        """
        t0 = time.monotonic()
        deadline = t0 + timeout
        try:
            self._start_authority()
            with concurrent.futures.ThreadPoolExecutor(self.n_relays) as pool:
                self.relays = list(pool.map(self._start_relay, range(self.n_relays)))
            self._wait_consensus(deadline)
        except BaseException:
            self.stop()
            raise
        self.bootstrap_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Stop every tor (clients, relays, authority) and remove the temp dir we created."""
        for proc in [*self.clients.values(), *self.relays, *( [self.authority] if self.authority else [])]:
            proc.stop()
        self.clients.clear()
        self.relays = []
        self.authority = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "PrivateTorNetwork":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def pids(self) -> list[int]:
        """PIDs of every tor process this network launched (alive or not)."""
        procs = [*( [self.authority] if self.authority else []), *self.relays, *self.clients.values()]
        return [p.pid for p in procs if p.pid is not None]

    # -- sharing with other processes (the demo's daemons) -------------------------------------

    def save(self, path: Path | str) -> Path:
        """Write what another process needs to join this network (JSON), e.g. for ``make demo TRANSPORT=tor``."""
        path = Path(path)
        tmp = path.with_name(path.name + ".part")
        tmp.write_text(json.dumps({"dir_authority": self.dir_authority_line, "relays": self.n_relays}))
        os.replace(tmp, path)
        return path

    @staticmethod
    def client_config_from_file(path: Path | str) -> dict:
        """torrc options to join the network described by a file written by :meth:`save`.

        Raises:
            TorConfigError: the file is missing or malformed.
        """
        try:
            info = json.loads(Path(path).read_text())
            line = str(info["dir_authority"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TorConfigError(f"private Tor network file {path} unreadable: {exc}") from None
        return _client_config(line)

    # -- clients ------------------------------------------------------------------------------

    def client_config(self) -> dict:
        """torrc options a tor needs to join this network (as a client or onion-service host)."""
        return _client_config(self.dir_authority_line)

    def add_client(self, name: str, *, timeout: float = 60.0) -> TorProcess:
        """Launch a bootstrapped client tor (with a SOCKS port) on this network."""
        if name in self.clients:
            raise ValueError(f"client {name!r} exists")
        client = self.launch_client(name, timeout=timeout)
        self.clients[name] = client
        return client

    def launch_client(self, name: str, *, timeout: float = 60.0) -> TorProcess:
        """Launch a bootstrapped client tor that the caller owns (and must stop)."""
        client = TorProcess.launch(self.root / f"client-{name}-{time.monotonic_ns()}", self.client_config(),
                                   name=f"client {name}", tor_cmd=self.tor_cmd)
        try:
            client.wait_bootstrapped(timeout)
        except BaseException:
            client.stop()
            raise
        return client

    def remove_client(self, name: str) -> None:
        """Stop and forget one client."""
        self.clients.pop(name).stop()

    # -- internals ----------------------------------------------------------------------------

    def _start_authority(self) -> None:
        gencert = shutil.which("tor-gencert")
        if gencert is None:
            raise TorNotFound("tor-gencert not found — install Debian's tor package (make setup, step tor)")
        data = self._authority_dir
        keys = data / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        data.chmod(0o700)
        or_port, dir_port = free_port(), free_port()
        gen = subprocess.run(
            [gencert, "--create-identity-key", "--passphrase-fd", "0", "-m", "12",
             "-a", f"127.0.0.1:{dir_port}", "-i", str(keys / "authority_identity_key"),
             "-s", str(keys / "authority_signing_key"), "-c", str(keys / "authority_certificate")],
            input=b"ichain-test\n", capture_output=True, timeout=60)
        if gen.returncode != 0:
            raise TorStartError(f"tor-gencert failed: {gen.stderr.decode(errors='replace').strip()[-200:]}")
        v3ident = next(l.split()[1] for l in (keys / "authority_certificate").read_text().splitlines()
                       if l.startswith("fingerprint "))
        fp = subprocess.run(
            [self.tor_cmd, "--list-fingerprint", "--quiet", "--ignore-missing-torrc", "-f", str(data / "none"),
             "--DataDirectory", str(data), "--ORPort", str(or_port)],
            capture_output=True, timeout=60)
        try:
            rsa_fp = (data / "fingerprint").read_text().split()[1]
        except (OSError, IndexError):
            raise TorStartError(f"tor --list-fingerprint failed: {fp.stdout.decode(errors='replace')[-200:]}") from None
        self.dir_authority_line = (f"auth orport={or_port} no-v2 v3ident={v3ident} "
                                   f"127.0.0.1:{dir_port} {rsa_fp}")
        self.authority = TorProcess.launch(data, {
            **_VOTING,
            "Nickname": "auth",
            "Address": "127.0.0.1",
            "ORPort": f"127.0.0.1:{or_port}",
            "DirPort": f"127.0.0.1:{dir_port}",
            "AuthoritativeDirectory": 1,
            "V3AuthoritativeDirectory": 1,
            "ContactInfo": "auth@ichain.test",
            "ExitPolicy": "reject *:*",
            "AssumeReachable": 1,
            "DirAuthority": self.dir_authority_line,
            # Every relay gets the flags onion services need, at once.
            "TestingDirAuthVoteHSDir": "*",
            "TestingDirAuthVoteGuard": "*",
            "TestingDirAuthVoteExit": "*",
        }, name="authority", tor_cmd=self.tor_cmd, socks=False)

    def kill_relay(self, i: int, *, delist: bool = True) -> int | None:
        """SIGKILL relay ``i`` (fault injection); returns its PID. :meth:`restart_relay` brings it back.

        With ``delist`` the authority is told to drop it (``!reject`` in approved-routers + reload), as the
        real authorities' reachability tests would: here AssumeReachable keeps a dead relay "Running"
        forever, and every tor would keep building circuits (and placing intro points) through it.
        The next consensus (about 10-20 s) no longer lists it.
        """
        relay = self.relays[i]
        fingerprint = relay.controller.get_info("fingerprint", "") if relay.alive() else ""
        relay.kill()
        if delist and fingerprint:
            self._rejected.add(fingerprint)
            self._write_approved_routers()
        return relay.pid

    def restart_relay(self, i: int) -> TorProcess:
        """Relaunch relay ``i`` with its keys and ORPort (same identity), and let the authority list it again."""
        self.relays[i].stop()
        self.relays[i] = self._start_relay(i)
        fingerprint = self.relays[i].controller.get_info("fingerprint", "")
        if fingerprint in self._rejected:
            self._rejected.discard(fingerprint)
            self._write_approved_routers()
        return self.relays[i]

    def _write_approved_routers(self) -> None:
        path = self._authority_dir / "approved-routers"
        tmp = path.with_name(path.name + ".part")
        tmp.write_text("".join(f"!reject {fp}\n" for fp in sorted(self._rejected)))
        os.replace(tmp, path)
        self._running_authority().controller.signal(stem.Signal.RELOAD)

    def _running_authority(self) -> TorProcess:
        if self.authority is None:
            raise TorStartError("the private Tor network is not started (no directory authority)")
        return self.authority

    def relay_index(self, fingerprint: str) -> int | None:
        """Index of the relay with this RSA fingerprint (None for the authority or unknown)."""
        for i, relay in enumerate(self.relays):
            try:
                if relay.alive() and relay.controller.get_info("fingerprint", "") == fingerprint.lstrip("$"):
                    return i
            except Exception:  # noqa: BLE001 - a dying relay is simply not a match
                continue
        return None

    def _start_relay(self, i: int) -> TorProcess:
        self._relay_ports.setdefault(i, free_port())
        or_port = self._relay_ports[i]
        return TorProcess.launch(self.root / f"relay{i}", {
            **_VOTING,
            "Nickname": f"relay{i}",
            "Address": "127.0.0.1",
            "ORPort": f"127.0.0.1:{or_port}",
            "ContactInfo": f"relay{i}@ichain.test",
            # Exits to 127.0.0.1 only: clients need an exit circuit to finish bootstrapping.
            "ExitRelay": 1,
            "ExitPolicyRejectPrivate": 0,
            "ExitPolicy": ["accept 127.0.0.0/8:*", "reject *:*"],
            "AssumeReachable": 1,
            "DirAuthority": self.dir_authority_line,
        }, name=f"relay{i}", tor_cmd=self.tor_cmd, socks=False)

    def _wait_consensus(self, deadline: float) -> None:
        """Wait until the authority and every relay hold a consensus listing all routers + their microdescs."""
        want = self.n_relays + 1
        procs = [self._running_authority(), *self.relays]
        while True:
            counts = [self._router_count(p) for p in procs]
            if all(c >= want for c in counts):
                return
            for p in procs:
                if not p.alive():
                    raise TorStartError(f"private Tor network: {p.name} exited: see {p.data_dir}/notice.log")
            if time.monotonic() > deadline:
                raise TorStartError(f"private Tor network did not form in time (routers known: {counts}, want {want})")
            time.sleep(0.5)

    @staticmethod
    def _router_count(proc: TorProcess) -> int:
        """Routers with a microdescriptor in the consensus this tor holds (0 if none yet)."""
        try:
            entries = proc.controller.get_info("ns/all", "")
            fps = [l.split()[2] for l in entries.splitlines() if l.startswith("r ")]
            mds = 0
            for fp in fps:
                try:
                    if proc.controller.get_info(f"md/id/{_b64_to_hex(fp)}", ""):
                        mds += 1
                except stem.ControllerError:
                    pass
            return mds
        except stem.ControllerError:
            return 0


def _client_config(dir_authority_line: str) -> dict:
    return {
        **_VOTING,
        "DirAuthority": dir_authority_line,
        "ClientUseIPv6": 0,
        # Loopback circuits build in milliseconds: don't learn a timeout from the first slow ones.
        "LearnCircuitBuildTimeout": 0,
        "CircuitBuildTimeout": 10,
        # Test network only: with 6 relays the vanguards-lite layer-2 set covers most of the network, and a
        # killed relay never leaves the consensus (AssumeReachable on the authority keeps it "Running"),
        # so pinned vanguards would route every new circuit through the dead relay. On the real network
        # (thousands of relays, dead ones dropped from the consensus) the default stays on.
        "VanguardsLiteEnabled": 0,
    }


def _b64_to_hex(b64_id: str) -> str:
    import base64

    return base64.b64decode(b64_id + "=" * (-len(b64_id) % 4)).hex().upper()


def main(argv: list[str] | None = None) -> None:
    """``python -m ichain.tor --info net.json``: run a private network until SIGINT/SIGTERM.

    Other processes join it with ``transport_from_options("tor", tor_network="net.json")``.
    """
    import argparse
    import signal

    parser = argparse.ArgumentParser(description="Run a private Tor network on 127.0.0.1 until interrupted.")
    parser.add_argument("--info", required=True, help="where to write the network's JSON description")
    parser.add_argument("--relays", type=int, default=5)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    net = PrivateTorNetwork(relays=args.relays)
    try:
        net.start()
        net.save(args.info)
        print(f"private Tor network up in {net.bootstrap_seconds:.1f}s; joined via {args.info}", flush=True)
        signal.pause()
    except KeyboardInterrupt:
        pass
    except TorStartError as exc:
        raise SystemExit(f"error: {exc}") from None
    finally:
        net.stop()


if __name__ == "__main__":
    main()
