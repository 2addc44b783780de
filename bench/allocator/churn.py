#!/usr/bin/env python3
"""RSS over connection churn: CYCLES times, open CONNECTIONS connections to a running esdb,
send each an APPEND and a READ, read the replies, close them all; print the server's VmRSS
after each cycle. Usage: churn.py HOST:PORT PID [CYCLES] [CONNECTIONS]."""
import socket
import sys
import time

host, port = sys.argv[1].rsplit(":", 1)
pid = int(sys.argv[2])
cycles = int(sys.argv[3]) if len(sys.argv) > 3 else 8
connections = int(sys.argv[4]) if len(sys.argv) > 4 else 4000


def rss_mib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024


def read_line(sock, buffer):
    while b"\n" not in buffer[0]:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("closed")
        buffer[0] += chunk
    line, buffer[0] = buffer[0].split(b"\n", 1)
    return line


print(f"start rss {rss_mib():.1f} MiB")
for cycle in range(cycles):
    socks = []
    for i in range(connections):
        s = socket.create_connection((host, int(port)))
        socks.append((s, [b""]))
    for i, (s, buf) in enumerate(socks):
        read_line(s, buf)  # INFO
        s.sendall(b'APPEND churn-%d any {"event_type":"E","data":{"i":%d}}\r\nREAD churn-%d 0 10\r\n' % (i % 100, i, i % 100))
    for s, buf in socks:
        read_line(s, buf)  # APPENDED
        read_line(s, buf)  # EVENTS header
        read_line(s, buf)  # body
    for s, _ in socks:
        s.close()
    time.sleep(1.0)
    print(f"cycle {cycle + 1}: rss {rss_mib():.1f} MiB")
