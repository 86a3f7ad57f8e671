"""Gunicorn settings for the benchmark: sync workers (the default), everything else as
shipped except
- the graceful timeout: 8 s (whole seconds only; clutch's force-exit timeout is 7.5 s);
- the control socket (new in Gunicorn 27, on by default): kept, but in the cluster's own
  temp directory rather than the shared ~/.gunicorn/gunicorn.ctl;
- a ready marker: $READY_DIR/<pid> once the worker has loaded the app, about to accept.
"""
import os

worker_class = "sync"
graceful_timeout = 8
if os.environ.get("READY_DIR"):
    control_socket = os.path.join(os.path.dirname(os.environ["READY_DIR"]), "gunicorn.ctl")


def post_worker_init(worker):
    ready_dir = os.environ.get("READY_DIR")
    if ready_dir:
        open(os.path.join(ready_dir, str(os.getpid())), "w").close()
