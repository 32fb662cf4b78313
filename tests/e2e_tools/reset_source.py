#!/usr/bin/env python3
"""reset_source.py KACLONE SERVE_ARGS...: runs `KACLONE serve SERVE_ARGS... --source -` with its
stdin a TCP connection on loopback that is reset (RST) mid-stream: 1 MiB is sent, and the reset
comes once serve says its chain is assigned and streaming (its stderr is read for that line and
copied to this script's stderr). Exits with serve's exit code."""
import socket
import struct
import subprocess
import sys

kaclone, args = sys.argv[1], sys.argv[2:]
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
client = socket.create_connection(listener.getsockname())
conn, _ = listener.accept()
serve = subprocess.Popen([kaclone, "serve", *args, "--source", "-"], stdin=conn.fileno(), stderr=subprocess.PIPE, text=True)
conn.close()
listener.close()
client.sendall(b"x" * (1 << 20))
for line in serve.stderr:
    sys.stderr.write(line)
    sys.stderr.flush()
    if "assigned, streaming" in line:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
sys.exit(serve.wait())
