"""The Gunicorn hello worker (WSGI): answers `Worker: <pid>`."""
import os


def app(environ, start_response):
    body = f"Worker: {os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
