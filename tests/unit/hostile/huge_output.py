"""Floods stdout and stderr (the host caps what it reads and stores nothing on disk)."""
import sys

print("STARTED", flush=True)
line = "x" * 1023 + "\n"
for i in range(200_000):  # ~200 MiB, bounded
    sys.stdout.write(line)
    sys.stderr.write(line)
print("ESCAPED wrote 400 MiB unhindered", flush=True)
