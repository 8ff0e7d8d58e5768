"""Memory bomb: touch 64 MiB blocks up to 1 GiB (each page written, so it is really resident)."""
import os

print("STARTED", flush=True)
blocks = []
try:
    for i in range(16):
        blocks.append(b"\x01" * (64 * 1024 * 1024))
        print(f"holding {(i + 1) * 64} MiB", flush=True)
except MemoryError:
    print(f"CONTAINED MemoryError after {len(blocks) * 64} MiB", flush=True)
    os._exit(0)
print("ESCAPED held 1024 MiB", flush=True)
