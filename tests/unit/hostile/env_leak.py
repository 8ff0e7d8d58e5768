"""Leak the host's environment: print every variable this process and PID 1 can see."""
print("STARTED", flush=True)
import os

for key, value in sorted(os.environ.items()):
    print(f"env {key}={value}", flush=True)
for pid in ["1", "self"]:
    try:
        print(f"pid {pid} environ:", open(f"/proc/{pid}/environ", "rb").read().replace(b"\0", b" "), flush=True)
    except OSError as exc:
        print(f"blocked /proc/{pid}/environ: {exc.strerror}", flush=True)
print("DONE", flush=True)
