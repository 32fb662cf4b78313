#!/usr/bin/env python3
"""flood.py HOST PORT COUNT: keeps COUNT TCP connections to HOST:PORT open that never send a
byte; one that the other side closes is opened again 2 ms later. Prints "ready" on stdout once
COUNT are open; on SIGTERM prints "closed N" (how many the other side closed) and exits 0."""
import selectors
import signal
import socket
import sys
import time

host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sel = selectors.DefaultSelector()
closed = 0
stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)


def open_one():
    s = socket.create_connection((host, port), timeout=5)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)


for _ in range(count):
    open_one()
print("ready", flush=True)
while not stop:
    for key, _ in sel.select(timeout=0.2):
        s = key.fileobj
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        if data:
            continue  # a refusal in words: the close follows
        sel.unregister(s)
        s.close()
        closed += 1
        if not stop:
            time.sleep(0.002)  # a steady flood, not a busy loop on a shared CPU
            try:
                open_one()
            except OSError:
                pass  # the port is gone: the session ended
print(f"closed {closed}", flush=True)
