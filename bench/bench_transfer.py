"""Transfer benchmark on loopback -> bench/results/transfer.json.

One run, separate processes (so neither side's CPU or memory is counted for the other):

- a **sender** process: a ChunkHost that encrypts and hosts a 1 GiB file (``offer``), and, beside it,
  a plain aiohttp file server (sendfile) serving the same plaintext bytes unencrypted;
- **receiver** processes, one per download, alternating (plain, encrypted, plain, encrypted...) so that
  load from other work on the machine hits both alike:
  - ``plain``: one unencrypted HTTP GET streamed to a file (what a plain download does);
  - ``encrypted``: ``ichain.transfer.fetch`` (parallel streams, per-chunk hash + AES-GCM check,
    in-order SHA-256 of the plaintext, resume state, ``.part`` then rename).
  Both are measured without fsync (``durable=False``) and with an fsync before completion.

Reported: throughput of each (best and median of the repeats), the ratio encrypted / plain (goal
>= 0.5; the paper's system moved about 1.25 MB/s), the offer (encrypt + write) rate, and the peak RSS
(VmHWM) of the sender and of each receiver, which must stay far below the file size.

Run: ``.venv/bin/python bench/bench_transfer.py`` (env ``ICHAIN_BENCH_TRANSFER_MIB`` sets the size,
``ICHAIN_BENCH_TRANSFER_REPEATS`` the repeats). Big temporary files are deleted at the end.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "transfer.json"
MIB = 1024 * 1024
GIB = 1024 * MIB
SIZE = int(os.environ.get("ICHAIN_BENCH_TRANSFER_MIB", "1024")) * MIB
REPEATS = int(os.environ.get("ICHAIN_BENCH_TRANSFER_REPEATS", "2"))
MARKET = "0x" + "be" * 20


def _peak_rss_mib() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: the latter keeps the forking parent's peak across exec."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _context():
    from ichain.transfer import TransferContext

    return TransferContext(31337, MARKET, 1, "result-requester", "0x" + "7e" * 20, bytes(range(32)))


# --- roles (each runs in its own process) -------------------------------------------------------
def role_sender(workdir: Path, recipient_hex: str) -> None:
    """Encrypt + host the source, serve the plaintext plainly; report on stdout; exit on stdin EOF."""
    from aiohttp import web

    from ichain.transfer import ChunkHost

    source = workdir / "source.bin"
    host = ChunkHost(workdir / "host")
    host.start()
    started = time.perf_counter()
    sealed = host.offer(source, bytes.fromhex(recipient_hex), _context())
    offer_seconds = time.perf_counter() - started

    ready, box = threading.Event(), {}

    def serve_plain() -> None:
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_get("/source", lambda request: web.FileResponse(source))
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        box["url"] = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/source"
        ready.set()
        loop.run_forever()

    threading.Thread(target=serve_plain, daemon=True).start()
    ready.wait(30)
    print(json.dumps({"sealed": bytes(sealed).hex(), "plain_url": box["url"], "offer_seconds": offer_seconds,
                      "rss_after_offer_mib": _peak_rss_mib()}), flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    host.stop()
    print(json.dumps({"peak_rss_mib": _peak_rss_mib()}), flush=True)


def role_plain(url: str, dest: Path, durable: bool) -> None:
    """A plain HTTP download streamed to ``dest``."""
    import aiohttp

    async def download() -> int:
        got = 0
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            with open(dest, "wb") as out:
                async for block in response.content.iter_chunked(MIB):
                    out.write(block)
                    got += len(block)
                if durable:
                    out.flush()
                    os.fsync(out.fileno())
        return got

    started, cpu = time.perf_counter(), _cpu_seconds()
    got = asyncio.run(download())
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "cpu_seconds": _cpu_seconds() - cpu, "bytes": got,
                      "peak_rss_mib": _peak_rss_mib()}), flush=True)


def role_fetch(sealed_hex: str, key_path: Path, dest: Path, durable: bool) -> None:
    """An encrypted fetch with the library defaults (concurrency, chunk size from the sender)."""
    from ichain.transfer import KeyPair, fetch

    keypair = KeyPair.load(key_path)
    started, cpu = time.perf_counter(), _cpu_seconds()
    result = fetch(bytes.fromhex(sealed_hex), keypair, _context(), dest, durable=durable)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "cpu_seconds": _cpu_seconds() - cpu, "bytes": result.size, "sha256": result.sha256.hex(),
                      "chunks": result.chunks, "peak_rss_mib": _peak_rss_mib()}), flush=True)


# --- the orchestrator ---------------------------------------------------------------------------
def _run(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=1800, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"bench_transfer: {args[0]} failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _make_source(path: Path, size: int) -> str:
    """Incompressible bytes (AES-CTR keystream), written in 16 MiB blocks; returns their sha256."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    encryptor = Cipher(algorithms.AES(os.urandom(32)), modes.CTR(os.urandom(16))).encryptor()
    digest = hashlib.sha256()
    zeros = bytes(16 * MIB)
    with open(path, "wb") as out:
        left = size
        while left:
            block = encryptor.update(zeros[: min(left, len(zeros))])
            digest.update(block)
            out.write(block)
            left -= len(block)
    return digest.hexdigest()


def main() -> None:
    from ichain.transfer import KeyPair, default_concurrency

    workdir = Path(tempfile.mkdtemp(prefix="ichain-bench-transfer-"))
    sender = None
    try:
        free = shutil.disk_usage(workdir).free
        if free < 4 * SIZE + 256 * MIB:
            raise SystemExit(f"bench_transfer: needs {4 * SIZE // MIB} MiB free in {workdir.parent}, has {free // MIB}")
        source_sha = _make_source(workdir / "source.bin", SIZE)
        keypair = KeyPair.load_or_create(workdir / "recipient.key")
        sender = subprocess.Popen(
            [sys.executable, __file__, "sender", str(workdir), keypair.public_bytes.hex()],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )
        offered = json.loads(sender.stdout.readline())
        runs: dict[str, list[dict]] = {"plain": [], "encrypted": [], "plain_fsync": [], "encrypted_fsync": []}
        for _ in range(REPEATS):
            for name in runs:
                dest = workdir / f"{name}.bin"
                durable = "1" if name.endswith("fsync") else "0"
                if name.startswith("plain"):
                    run = _run("plain", offered["plain_url"], str(dest), durable)
                else:
                    run = _run("fetch", offered["sealed"], str(workdir / "recipient.key"), str(dest), durable)
                    if run["sha256"] != source_sha:
                        raise SystemExit("bench_transfer: the encrypted transfer did not reproduce the source")
                if run["bytes"] != SIZE:
                    raise SystemExit(f"bench_transfer: {name} moved {run['bytes']} bytes, expected {SIZE}")
                run["mib_per_s"] = SIZE / MIB / run["seconds"]
                runs[name].append(run)
                dest.unlink()
                print(f"{name:16s} {run['mib_per_s']:8.1f} MiB/s  cpu {run['cpu_seconds']:.2f} s  "
                      f"peak RSS {run['peak_rss_mib']:.0f} MiB  load {os.getloadavg()[0]:.1f}", flush=True)
        sender.stdin.close()
        sender_final = json.loads(sender.stdout.readline())
        sender.wait(60)

        def summary(name: str) -> dict:
            rates = [r["mib_per_s"] for r in runs[name]]
            return {"best_mib_per_s": round(max(rates), 1), "median_mib_per_s": round(statistics.median(rates), 1),
                    "runs_mib_per_s": [round(r, 1) for r in rates],
                    "cpu_seconds_per_gib": round(statistics.median(r["cpu_seconds"] for r in runs[name]) * GIB / SIZE, 2),
                    "peak_rss_mib": round(max(r["peak_rss_mib"] for r in runs[name]), 1)}

        result = {
            "bytes": SIZE,
            "chunk_size": 4 * MIB,
            "concurrency": default_concurrency(),
            "repeats": REPEATS,
            "plain_http": summary("plain"),
            "encrypted_fetch": summary("encrypted"),
            "plain_http_fsync": summary("plain_fsync"),
            "encrypted_fetch_fsync": summary("encrypted_fsync"),
            "ratio_encrypted_vs_plain": round(summary("encrypted")["median_mib_per_s"] / summary("plain")["median_mib_per_s"], 3),
            "ratio_encrypted_vs_plain_fsync": round(
                summary("encrypted_fsync")["median_mib_per_s"] / summary("plain_fsync")["median_mib_per_s"], 3),
            "ratio_goal": 0.5,
            "offer_mib_per_s": round(SIZE / MIB / offered["offer_seconds"], 1),
            "sender_peak_rss_mib": round(sender_final["peak_rss_mib"], 1),
            "receiver_peak_rss_mib": summary("encrypted")["peak_rss_mib"],
            "plain_receiver_peak_rss_mib": summary("plain")["peak_rss_mib"],
            "paper_mb_per_s": 1.25,
            "speedup_vs_paper": round(summary("encrypted")["median_mib_per_s"] * MIB / 1e6 / 1.25, 1),
            "machine": {"cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg(), "python": platform.python_version()},
            "notes": ("ratios use the median of alternating runs (same machine, same moment); RSS is VmHWM (peak resident set) of each process; "
                      "cpu_seconds_per_gib is user+sys CPU of the receiver process, robust to machine load"),
        }
        result["goal_met"] = result["ratio_encrypted_vs_plain"] >= 0.5
        result["memory_bounded"] = max(result["sender_peak_rss_mib"], result["receiver_peak_rss_mib"]) < SIZE / MIB / 4
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        tmp = RESULTS.with_name(RESULTS.name + ".part")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, RESULTS)
        print(json.dumps(result, indent=2))
    finally:
        if sender is not None and sender.poll() is None:
            sender.kill()
            sender.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "sender":
        role_sender(Path(sys.argv[2]), sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "plain":
        role_plain(sys.argv[2], Path(sys.argv[3]), sys.argv[4] == "1")
    elif len(sys.argv) > 1 and sys.argv[1] == "fetch":
        role_fetch(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5] == "1")
    else:
        main()
