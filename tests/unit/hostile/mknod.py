"""Create device nodes (a disk, memory): need CAP_MKNOD; the working folder and /tmp are tried."""
import os
import stat

print("STARTED", flush=True)
made = []
for folder in ["/tmp", "."]:
    for name, major, minor in [("sda", 8, 0), ("mem", 1, 1)]:
        path = os.path.join(folder, f"ichain-{name}")
        try:
            os.mknod(path, stat.S_IFCHR | 0o600 if name == "mem" else stat.S_IFBLK | 0o600, os.makedev(major, minor))
            made.append(path)
            os.unlink(path)
        except OSError as exc:
            print(f"blocked {path}: {exc.strerror}", flush=True)
print(f"ESCAPED created {made}" if made else "CONTAINED mknod refused", flush=True)
