"""Fork bomb: fork until the kernel refuses (bounded at 300 so a control run cannot hurt the host)."""
import os
import time

print("STARTED", flush=True)
count = 0
try:
    for count in range(1, 301):
        if os.fork() == 0:
            time.sleep(20)
            os._exit(0)
except OSError as exc:
    print(f"CONTAINED fork failed after {count - 1} children: {exc.strerror}", flush=True)
    os._exit(0)
print(f"ESCAPED forked {count} children", flush=True)
os._exit(0)
