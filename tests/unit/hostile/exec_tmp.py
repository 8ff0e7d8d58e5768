"""Drop an executable in /tmp and run it (noexec tmpfs)."""
import os
import shutil
import subprocess

print("STARTED", flush=True)
ran = []
for folder in ["/tmp", "/dev/shm"]:
    target = os.path.join(folder, "dropped")
    try:
        shutil.copy("/bin/true", target)
        os.chmod(target, 0o755)
        subprocess.run([target], check=True, timeout=5)
        ran.append(target)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"blocked {target}: {exc}", flush=True)
print(f"ESCAPED executed {ran}" if ran else "CONTAINED exec from tmp refused", flush=True)
