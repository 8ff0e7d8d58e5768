"""Raw and packet sockets (spoofing, sniffing): need CAP_NET_RAW."""
import socket

print("STARTED", flush=True)
opened = []
for name, args in [("raw icmp", (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)),
                   ("raw tcp", (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)),
                   ("packet", (socket.AF_PACKET, socket.SOCK_RAW, 0x0300))]:
    try:
        socket.socket(*args).close()
        opened.append(name)
    except OSError as exc:
        print(f"blocked {name}: {exc.strerror}", flush=True)
print(f"ESCAPED opened {opened}" if opened else "CONTAINED raw sockets refused", flush=True)
