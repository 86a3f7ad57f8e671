"""The Circus hello worker: the shape Circus's own docs give for `use_sockets` (the fd of
the socket circusd bound, from argv; one connection at a time: accept, read the request,
answer, close), with the standard library only. Answers `Worker: <pid>`.

Readiness: Circus has no readiness protocol, so the worker says it itself, as the other
peers' hooks do: it creates $READY_DIR/<pid> just before it first waits for a connection.

Graceful stop: Circus's stop signal is SIGTERM (its `stop_signal` default). The signal
only makes the wakeup pipe readable; the worker looks at it between connections, so a
request being served is finished, and no connection is ever accepted and then dropped.
"""
import os
import select
import signal
import socket
import sys

sock = socket.socket(fileno=int(sys.argv[1]))  # inherited: bound, listening, non-blocking
body = f"Worker: {os.getpid()}".encode()
response = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)

wake_r, wake_w = os.pipe()
os.set_blocking(wake_w, False)
signal.set_wakeup_fd(wake_w)
signal.signal(signal.SIGTERM, lambda signum, frame: None)

ready_dir = os.environ.get("READY_DIR")
if ready_dir:
    open(os.path.join(ready_dir, str(os.getpid())), "w").close()
while True:
    readable, _, _ = select.select([sock, wake_r], [], [])
    if wake_r in readable:
        sys.exit(0)
    try:
        conn, _ = sock.accept()
    except BlockingIOError:  # another worker took it
        continue
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
