"""Descriptor exhaustion: open files until refused (bounded at 5000)."""
import os

print("STARTED", flush=True)
fds = []
try:
    for _ in range(5000):
        fds.append(os.open("/dev/null", os.O_RDONLY))
except OSError as exc:
    print(f"CONTAINED open failed after {len(fds)} descriptors: {exc.strerror}", flush=True)
    raise SystemExit(0)
print(f"ESCAPED holding {len(fds)} descriptors", flush=True)
