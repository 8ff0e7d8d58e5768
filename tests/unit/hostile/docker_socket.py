"""Reach the Docker engine: its unix socket (then the host is ours) or its TCP port."""
import socket

print("STARTED", flush=True)
reached = []
for path in ["/var/run/docker.sock", "/run/docker.sock", "/var/run/containerd/containerd.sock"]:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(path)
            reached.append(path)
    except OSError as exc:
        print(f"blocked {path}: {exc.strerror}", flush=True)
for host in ["172.17.0.1", "127.0.0.1"]:
    try:
        socket.create_connection((host, 2375), timeout=1).close()
        reached.append(f"{host}:2375")
    except OSError:
        pass
print(f"ESCAPED reached {reached}" if reached else "CONTAINED no engine socket", flush=True)
