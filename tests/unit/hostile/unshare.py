"""New namespaces: unshare(2) a user namespace (root inside it), a mount and a network namespace."""
import ctypes
import ctypes.util
import os

print("STARTED", flush=True)
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
made = []
for name, flag in [("user", 0x10000000), ("mount", 0x00020000), ("net", 0x40000000), ("pid", 0x20000000)]:
    if os.fork() == 0:  # each attempt in a child, so one success does not change the next
        os._exit(0 if libc.unshare(flag) == 0 else ctypes.get_errno())
    _pid, status = os.wait()
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        made.append(name)
    else:
        print(f"blocked unshare {name}: {os.strerror(code)}", flush=True)
print(f"ESCAPED unshared {made}" if made else "CONTAINED unshare refused", flush=True)
