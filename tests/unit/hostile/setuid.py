"""Become root: setuid/setgid/setgroups to 0, and a setuid-root binary."""
import os
import subprocess

print("STARTED", flush=True)
gained = []
if os.geteuid() == 0:
    gained.append("already root")
for name, call in [("setuid", lambda: os.setuid(0)), ("setgid", lambda: os.setgid(0)),
                   ("setgroups", lambda: os.setgroups([0]))]:
    try:
        call()
        gained.append(name)
    except OSError as exc:
        print(f"blocked {name}: {exc.strerror}", flush=True)
# A setuid-root binary (su, mount) must not raise privileges either (no-new-privileges).
for binary in ["/usr/bin/su", "/bin/su", "/usr/bin/mount"]:
    if os.path.exists(binary) and os.stat(binary).st_mode & 0o4000:
        out = subprocess.run([binary, "--version"], capture_output=True, timeout=5)
        print(f"{binary} ran (exit {out.returncode})", flush=True)
print(f"ESCAPED {gained}" if gained else "CONTAINED stayed unprivileged", flush=True)
