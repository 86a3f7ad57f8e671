"""The Circus hello worker: the shape Circus's own docs give for `use_sockets` (the fd of
the socket circusd bound, from argv; one connection at a time: accept, read the request,
answer, close), with the standard library only. Answers `Worker: <pid>`.

Readiness: Circus has no readiness protocol, so the worker says it itself, as the other
peers' hooks do: it creates $READY_DIR/<pid> just before its first accept().
Graceful stop: Circus's stop signal is SIGTERM (its `stop_signal` default); a request
being served is finished first, an idle worker exits at once.
"""
import os
import signal
import socket
import sys

sock = socket.socket(fileno=int(sys.argv[1]))  # inherited: bound and listening
sock.setblocking(True)  # circusd made it non-blocking (and never accepts on it itself)
body = f"Worker: {os.getpid()}".encode()
response = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
busy = stopping = False


def on_term(signum, frame):
    global stopping
    if not busy:
        sys.exit(0)
    stopping = True


signal.signal(signal.SIGTERM, on_term)
ready_dir = os.environ.get("READY_DIR")
if ready_dir:
    open(os.path.join(ready_dir, str(os.getpid())), "w").close()
while True:
    conn, _ = sock.accept()
    busy = True
    try:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = conn.recv(4096)
            if not chunk:
                break
            request += chunk
        if request:
            conn.sendall(response)
    except OSError:
        pass
    finally:
        conn.close()
        busy = False
    if stopping:
        sys.exit(0)
