"""The HTTP probe (one `GET /` per connection, `Connection: close`) and wrk."""

import re
import socket
import subprocess


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, timeout=2.0):
    """One request on a fresh connection; returns the body (`Worker: <id>`), or raises
    OSError (refused, reset, timed out) or ValueError (not a 200)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = re.search(rb"(?i)content-length:\s*(\d+)", head)
                if length and len(body) >= int(length.group(1)):
                    break
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") and not head.startswith(b"HTTP/1.0 200"):
        raise ValueError(f"unexpected answer {head[:40]!r}")
    return body.decode(errors="replace").strip()


def answers(port, timeout=0.5):
    try:
        get(port, timeout)
        return True
    except (OSError, ValueError):
        return False


WRK_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def wrk(port, seconds, connections, close, threads=1, timeout_s=2):
    """Runs wrk against 127.0.0.1:port for `seconds` (keep-alive, or a new connection per
    request with `close`) and returns what `finish_wrk` parses."""
    return finish_wrk(start_wrk(port, seconds, connections, close, threads, timeout_s), seconds)


def start_wrk(port, seconds, connections, close, threads=1, timeout_s=2):
    """wrk in the background (for chaos and rolling restarts); `finish_wrk` parses it."""
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
           "--timeout", f"{timeout_s}s"]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append(f"http://127.0.0.1:{port}/")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def finish_wrk(proc, seconds):
    """Waits for wrk; returns requests, req/s, socket errors by kind, non-2xx."""
    out, _ = proc.communicate(timeout=seconds + 30)
    result = {"requests": 0, "rps": 0.0, "connect": 0, "read": 0, "write": 0, "timeout": 0,
              "non2xx": 0, "raw": out}
    m = re.search(r"(\d+) requests in", out)
    if m:
        result["requests"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if m:
        result["rps"] = float(m.group(1))
    m = WRK_ERRORS.search(out)
    if m:
        for key, value in zip(("connect", "read", "write", "timeout"), m.groups()):
            result[key] = int(value)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        result["non2xx"] = int(m.group(1))
    return result


def first_answer(port, wanted, timeout, interval=0.0005, max_open=64):
    """Opens a new probe connection every `interval` s (each one `GET /`, `Connection:
    close`), keeping up to `max_open` waiting at once, until one is answered with a 200
    whose body satisfies `wanted(body)`. Returns the monotonic time of that answer, or
    None after `timeout` s. Several probes wait side by side, so a connection that a
    supervisor loses (never answered) delays nothing."""
    import errno
    import selectors
    import time
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    sel = selectors.DefaultSelector()
    buffers = {}
    deadline = time.monotonic() + timeout
    next_probe = 0.0

    def drop(sock):
        sel.unregister(sock)
        buffers.pop(sock, None)
        sock.close()

    try:
        while True:
            now = time.monotonic()
            if now > deadline:
                return None
            if now >= next_probe and len(buffers) < max_open:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                code = sock.connect_ex(("127.0.0.1", port))
                if code in (0, errno.EINPROGRESS):
                    buffers[sock] = None  # None: not connected yet
                    sel.register(sock, selectors.EVENT_WRITE)
                else:
                    sock.close()
                next_probe = now + interval
            wait = max(0.0, min(next_probe, deadline) - time.monotonic())
            for key, _ in sel.select(wait):
                sock = key.fileobj
                if buffers[sock] is None:
                    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        drop(sock)
                        continue
                    try:
                        sock.send(request)
                    except OSError:
                        drop(sock)
                        continue
                    buffers[sock] = b""
                    sel.modify(sock, selectors.EVENT_READ)
                    continue
                try:
                    chunk = sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    drop(sock)
                    continue
                data = buffers[sock] + chunk
                buffers[sock] = data
                head, sep, body = data.partition(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length:\s*(\d+)", head) if sep else None
                complete = not chunk or (length and len(body) >= int(length.group(1)))
                if not complete:
                    continue
                drop(sock)
                if head.startswith(b"HTTP/1.1 200") and wanted(body.decode(errors="replace").strip()):
                    return time.monotonic()
    finally:
        for sock in list(buffers):
            sel.unregister(sock)
            sock.close()
        sel.close()
