"""Memory bomb: touch 64 MiB blocks up to 512 MiB, twice the sandbox limit (each page written)."""
import os

print("STARTED", flush=True)
blocks = []
try:
    for i in range(8):
        blocks.append(b"\x01" * (64 * 1024 * 1024))
        print(f"holding {(i + 1) * 64} MiB", flush=True)
except MemoryError:
    print(f"CONTAINED MemoryError after {len(blocks) * 64} MiB", flush=True)
    os._exit(0)
print("ESCAPED held 512 MiB", flush=True)
