"""Read secrets: a provider-only (0600) file in the mount, password hashes, and the host beyond the mount."""
import os

print("STARTED", flush=True)
read = []
paths = ["/task/provider-only.key", "provider-only.key", "/etc/shadow", "/root/.bash_history", "/task/../../etc/shadow"]
for path in paths:
    try:
        with open(path) as handle:
            print(f"read {path}: {handle.read()[:8]}...", flush=True)  # only a prefix: the proof
        read.append(path)
    except OSError as exc:
        print(f"blocked {path}: {exc.strerror}", flush=True)
# The host folder that holds the task (and the host's secret file next to it) must be out of reach.
for root, _dirs, files in os.walk("/"):
    if root.startswith(("/proc", "/sys")):
        continue
    if "host-secret.txt" in files:
        read.append(os.path.join(root, "host-secret.txt"))
        print(open(os.path.join(root, "host-secret.txt")).read(), flush=True)
        break
print(f"ESCAPED read {read}" if read else "CONTAINED no secret readable", flush=True)
