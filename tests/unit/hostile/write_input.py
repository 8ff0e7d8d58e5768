"""Tamper with the input mount: overwrite the task's own files and add new ones."""
import os

print("STARTED", flush=True)
written = []
attempts = [("/task/task.py", "a"), ("/task/hostile.json", "w"), ("/task/new-file", "w")]
for path, mode in attempts:
    try:
        with open(path, mode) as handle:
            handle.write("# tampered\n")
        written.append(path)
    except OSError as exc:
        print(f"blocked {path}: {exc.strerror}", flush=True)
try:
    os.rename("/task/hostile.json", "/task/renamed.json")
    written.append("rename")
except OSError as exc:
    print(f"blocked rename: {exc.strerror}", flush=True)
print(f"ESCAPED modified {written}" if written else "CONTAINED input is read-only", flush=True)
