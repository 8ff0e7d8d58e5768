"""Fills the disk: /tmp (a 64 MiB tmpfs in the sandbox), then large files in the working folder (capped
at 32 MiB there). Writing twice those amounts proves an escape; it is bounded so a control run stays quick."""
import os

print("STARTED", flush=True)
block = b"\0" * (1024 * 1024)
stopped = []
in_tmp = 0
try:
    with open("/tmp/fill", "wb") as handle:
        for in_tmp in range(1, 129):
            handle.write(block)
            handle.flush()
except OSError as exc:
    stopped.append(f"/tmp: {exc.strerror}")
finally:
    os.unlink("/tmp/fill")
if in_tmp >= 128:
    print("ESCAPED /tmp took 128 MiB of disk", flush=True)
written = 0
for index in range(4):
    try:
        with open(f"fill-{index}.bin", "wb") as handle:
            for _ in range(50):
                handle.write(block)
                handle.flush()
                written += 1
    except OSError as exc:
        stopped.append(f"work file {index}: {exc.strerror}")
print(f"wrote {in_tmp} MiB in /tmp, {written} MiB in the working folder; stopped: {stopped}", flush=True)
if written >= 200:
    print("ESCAPED the working folder took 200 MiB of disk", flush=True)
elif in_tmp < 128:
    print(f"CONTAINED after {in_tmp} + {written} MiB", flush=True)
