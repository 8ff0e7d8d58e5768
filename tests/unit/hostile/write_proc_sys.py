"""Write to /proc and /sys: kernel settings, the OOM score, cgroup limits (each write is harmless)."""
print("STARTED", flush=True)
written = []


def current_thp() -> str:
    try:
        text = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
        return text[text.index("[") + 1 : text.index("]")]
    except (OSError, ValueError):
        return "madvise"


attempts = [
    ("/proc/sys/kernel/hostname", "pwned"),
    ("/proc/self/oom_score_adj", "-1000"),  # lowering it needs CAP_SYS_RESOURCE
    ("/sys/kernel/mm/transparent_hugepage/enabled", current_thp()),  # rewrite the same value
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "-1"),
    ("/sys/fs/cgroup/pids/pids.max", "max"),
]
for path, value in attempts:
    try:
        with open(path, "w") as handle:
            handle.write(value)
        written.append(path)
    except OSError as exc:
        print(f"blocked {path}: {exc.strerror}", flush=True)
print(f"ESCAPED wrote {written}" if written else "CONTAINED /proc and /sys are not writable", flush=True)
