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
