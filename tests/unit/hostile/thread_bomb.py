"""Thread bomb: start sleeping threads until refused (bounded at 300)."""
import os
import threading
import time

print("STARTED", flush=True)
started = 0
try:
    for started in range(1, 301):
        threading.Thread(target=time.sleep, args=(20,), daemon=True).start()
except RuntimeError as exc:
    print(f"CONTAINED thread start failed after {started - 1} threads: {exc}", flush=True)
    os._exit(0)
print(f"ESCAPED started {started} threads", flush=True)
os._exit(0)
