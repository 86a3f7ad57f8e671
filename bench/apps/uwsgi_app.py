"""The uWSGI hello worker (WSGI, `application`: uWSGI's default callable name): answers
`Worker: <pid>`. Loaded in each worker after the fork (`--lazy-apps`)."""
import os


def application(environ, start_response):
    body = f"Worker: {os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
