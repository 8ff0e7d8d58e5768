"""Mount filesystems: a tmpfs, proc, and a bind of / (mount(2) through libc)."""
import ctypes
import ctypes.util
import os

print("STARTED", flush=True)
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
mounted = []
for source, target, fstype, flags in [(b"none", b"/tmp", b"tmpfs", 0), (b"proc", b"/tmp", b"proc", 0),
                                      (b"/", b"/tmp", None, 4096)]:  # 4096 = MS_BIND
    if libc.mount(source, target, fstype, flags, None) == 0:
        mounted.append(fstype or b"bind")
    else:
        print(f"blocked mount {fstype}: {os.strerror(ctypes.get_errno())}", flush=True)
print(f"ESCAPED mounted {mounted}" if mounted else "CONTAINED mount refused", flush=True)
