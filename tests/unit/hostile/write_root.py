"""Write to the root filesystem (system folders and binaries)."""
print("STARTED", flush=True)
written = []
for path in ["/etc/ichain-pwned", "/usr/bin/ichain-pwned", "/ichain-pwned", "/var/ichain-pwned"]:
    try:
        with open(path, "w") as handle:
            handle.write("pwned")
        written.append(path)
    except OSError as exc:
        print(f"blocked {path}: {exc.strerror}", flush=True)
print(f"ESCAPED wrote {written}" if written else "CONTAINED root is read-only", flush=True)
