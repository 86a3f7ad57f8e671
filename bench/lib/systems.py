"""The systems measured: one adapter per supervisor, all in this file.

Adding a system means one class here and one entry in `ALL`: how to check it is installed
(`check`), its version, how to start N workers on a port (`launch`), which worker pids
have said they are ready, which pid answered a request, how to roll its workers (or None),
and its clean-up. The scenarios (scenarios.py) only ever use this interface.

Every hello worker answers `GET /` with `Worker: <something>`: the peers with their pid,
clutch's own example with its worker id, which the adapter maps to a pid through the
master's `event="worker_started" worker=<id> slot=<slot> pid=<pid>` log line.

Readiness: the peers' workers create `$READY_DIR/<pid>` once they listen (a hook of each
supervisor or server, see apps/); clutch's master logs `event="worker_ready" … pid=<pid>` at
info level when a worker sends READY=1.
"""

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from . import procfs

BENCH = Path(__file__).resolve().parent.parent
APPS = BENCH / "apps"
REPO = BENCH.parent


class Cluster:
    """One running supervisor with its workers, on its own port and temp directory."""

    def __init__(self, system, workers, port, tmp):
        self.system, self.workers_wanted, self.port = system, workers, port
        self.tmp = Path(tmp)
        self.ready_dir = self.tmp / "ready"
        self.ready_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.tmp / "log"
        self.master = None  # pid of the supervising process
        self.proc = None  # the Popen we started (the master itself, except for PM2)
        self.launched_at = None
        self._log_offset = 0
        self._log_tail = ""
        self.id_to_pid = {}
        self.ready_from_log = set()

    def env(self, extra=None):
        env = dict(os.environ)
        env.update({"PORT": str(self.port), "HOST": "127.0.0.1",
                    "WORKERS": str(self.workers_wanted), "READY_DIR": str(self.ready_dir)})
        env.update(extra or {})
        return env

    def popen(self, cmd, env, cwd=None):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log, start_new_session=True)
        log.close()
        return self.proc

    def workers(self):
        """The master's live child processes (every system here: its workers), but
        clutch's keeper (a child that outlives the master by design, not a worker)."""
        if not self.master:
            return set()
        return {p for p in procfs.children(self.master)
                if procfs.comm(p) != "clutch-keeper"}

    def ready_workers(self):
        return self.workers() & self.system.ready_pids(self)

    def all_ready(self, n=None, exclude=frozenset()):
        n = self.workers_wanted if n is None else n
        workers = self.workers()
        ready = (workers & self.system.ready_pids(self)) - exclude
        return len(ready) >= n and len(workers - exclude) >= n

    def wait_ready(self, timeout, n=None, exclude=frozenset()):
        return procfs.wait_until(lambda: self.all_ready(n, exclude), timeout, 0.001)

    def new_log_lines(self):
        """Lines appended to the log since the last call (ANSI colours removed)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self._log_offset += len(data)
        text = self._log_tail + re.sub(r"\x1b\[[0-9;]*m", "", data.decode(errors="replace"))
        lines = text.split("\n")
        self._log_tail = lines.pop()
        return lines

    def stop(self):
        """Clean-up: the system's own way first, then SIGKILL whatever is left, by pid."""
        try:
            self.system.cleanup(self)
        finally:
            for pid in ([self.master] if self.master else []) + (
                    [self.proc.pid] if self.proc else []):
                procfs.kill_tree(pid)
            procfs.reap()


def _version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


class System:
    key = "?"  # command-line name
    name = "?"  # column header
    # A worker must have lived this long for its death to be answered at once (crash
    # backoff of the supervisor); kill trials only ever kill workers at least this old.
    min_healthy_age = 0.0
    stop_signal = signal.SIGTERM  # the graceful-stop signal
    stop_note = "SIGTERM"
    rolling_note = "n/a"
    # Scenarios this system takes part in (None: all).
    scenarios = None

    def check(self):
        """None when the system can run here, else why it cannot."""
        return None

    def version(self):
        return "?"

    def launch(self, cluster):
        raise NotImplementedError

    def ready_pids(self, cluster):
        try:
            return {int(name) for name in os.listdir(cluster.ready_dir)}
        except FileNotFoundError:
            return set()

    def answered_by(self, cluster, body):
        """The pid of the worker that produced `body`."""
        return int(body.split(":", 1)[1])

    def graceful_stop(self, cluster):
        """What an operator does to stop the system gracefully (by default the graceful
        stop signal to the master)."""
        os.kill(cluster.master, self.stop_signal)

    def rolling_restart(self, cluster):
        """Starts a rolling restart and returns at once (None: the system has none)."""
        return None

    def upgrade(self, cluster):
        """Starts an upgrade of the master itself; returns the new master's pid once it
        exists (None: the system has none). A master that re-execs itself in place
        (uWSGI) returns its own pid and sets `cluster.reexec_at` (monotonic s) to when
        the old image was replaced."""
        return None

    def has_upgrade(self):
        return type(self).upgrade is not System.upgrade

    def retire_old_master(self, pid):
        """What an operator does once the new master's workers serve (nothing, where
        the old master goes by itself)."""

    def cleanup(self, cluster):
        pass


class Clutch(System):
    key, name = "clutch", "clutch"
    min_healthy_age = 2.5  # min_uptime (2 s) in clutch-proto, plus a margin
    rolling_note = "SIGHUP (one at a time, readiness-gated)"

    def __init__(self, binary):
        self.binary = Path(binary)

    def check(self):
        return None if self.binary.exists() else f"{self.binary} was not built"

    def version(self):
        rev = _version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
        return f"clutch-unix @ {rev} (examples/hello, release)"

    def launch(self, cluster):
        # The master logs every event at info level, named and with its fields.
        env = cluster.env({"RUST_LOG": "clutch_unix=info",
                           "CONTROL": str(cluster.tmp / "control.sock")})
        cluster.popen([str(self.binary)], env)
        cluster.master = cluster.proc.pid

    upgrade_note = "clutch upgrade (hands over once the new workers are ready and proven)"

    def upgrade(self, cluster):
        """`{"command":"upgrade"}` on the control socket, answered at the handover; the
        new master's pid is its `upgrade_spawned` log line."""
        import json
        import socket

        def ask():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(str(cluster.tmp / "control.sock"))
                s.sendall(b'{"command":"upgrade"}\n')
                answer = b""
                while not answer.endswith(b"\n"):
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    answer += chunk
                cluster.upgrade_answer = json.loads(answer or b"null")
            finally:
                s.close()

        threading.Thread(target=ask, daemon=True).start()
        spawned = re.compile(r'event="upgrade_spawned" pid=(\d+)')
        found = []

        def new_master():
            for line in cluster.new_log_lines():
                self._scan_line(cluster, line)
                m = spawned.search(line)
                if m:
                    found.append(int(m.group(1)))
            return bool(found)

        return found[0] if procfs.wait_until(new_master, 30, 0.001) else None

    _STARTED = re.compile(r'event="worker_started" worker=(\d+) slot=\d+ pid=(\d+)')
    _READY = re.compile(r'event="worker_ready" worker=(\d+) slot=\d+ pid=(\d+)')

    def _scan(self, cluster):
        for line in cluster.new_log_lines():
            self._scan_line(cluster, line)

    def _scan_line(self, cluster, line):
        m = self._STARTED.search(line)
        if m:
            cluster.id_to_pid[int(m.group(1))] = int(m.group(2))
        m = self._READY.search(line)
        if m:
            cluster.ready_from_log.add(int(m.group(2)))

    def ready_pids(self, cluster):
        self._scan(cluster)
        return cluster.ready_from_log

    def answered_by(self, cluster, body):
        worker_id = int(body.split(":", 1)[1])
        self._scan(cluster)
        return cluster.id_to_pid.get(worker_id, -worker_id)

    def rolling_restart(self, cluster):
        os.kill(cluster.master, signal.SIGHUP)
        return True


class NodeCluster(System):
    key, name = "node", "Node cluster"
    rolling_note = "n/a (none built in)"

    def __init__(self, policy=None):
        self.policy = policy
        if policy == "none":
            self.key, self.name = "node-none", "Node cluster (SCHED_NONE)"
            self.scenarios = {"idle", "throughput"}

    def check(self):
        return None if shutil.which("node") else "node is not installed"

    def version(self):
        return "node " + _version(["node", "--version"])

    def launch(self, cluster):
        extra = {"NODE_CLUSTER_SCHED_POLICY": self.policy} if self.policy else {}
        cluster.popen(["node", str(APPS / "node-cluster.js")], cluster.env(extra))
        cluster.master = cluster.proc.pid


class PM2(System):
    key, name = "pm2", "PM2"
    # PM2 counts an exit within min_uptime (1000 ms) as unstable (16 of them: errored).
    min_healthy_age = 1.2
    stop_note = "SIGTERM to the PM2 daemon"
    rolling_note = "pm2 reload"

    def __init__(self):
        self.pm2 = BENCH / "node_modules" / ".bin" / "pm2"

    def check(self):
        if not shutil.which("node"):
            return "node is not installed"
        return None if self.pm2.exists() else "npm install of pm2 failed or was skipped"

    def version(self):
        try:
            import json
            pkg = json.loads((BENCH / "node_modules" / "pm2" / "package.json").read_text())
            return f"pm2 {pkg['version']} (node {_version(['node', '--version'])})"
        except (OSError, ValueError):
            return "pm2 ?"

    def _env(self, cluster):
        return cluster.env({"PM2_HOME": str(cluster.tmp / "pm2"), "PM2_DISABLE_VERSION_CHECK": "1",
                            "STOP_SIGNAL": "SIGINT"})

    def launch(self, cluster):
        # `pm2 start` starts the daemon (the cluster master) and returns; the daemon is
        # re-parented to the harness (a subreaper), which therefore still sees its exit.
        cluster.popen([str(self.pm2), "start", str(APPS / "node-worker.js"), "-i",
                       str(cluster.workers_wanted), "--name", "hello"], self._env(cluster))
        pid_file = cluster.tmp / "pm2" / "pm2.pid"
        found = procfs.wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(),
                                  30, 0.002)
        if found is None:
            raise RuntimeError("the PM2 daemon did not start")
        cluster.master = int(pid_file.read_text().strip())

    def rolling_restart(self, cluster):
        threading.Thread(target=subprocess.run, daemon=True, kwargs=dict(
            args=[str(self.pm2), "reload", "hello"], env=self._env(cluster),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)).start()
        return True

    def cleanup(self, cluster):
        if cluster.master and procfs.alive(cluster.master):
            try:
                subprocess.run([str(self.pm2), "kill"], env=self._env(cluster), timeout=20,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                pass


class Gunicorn(System):
    key, name = "gunicorn", "Gunicorn"
    rolling_note = "SIGHUP (new workers, then old ones stopped)"

    def __init__(self):
        self.gunicorn = BENCH / ".venv" / "bin" / "gunicorn"

    def check(self):
        return None if self.gunicorn.exists() else "pip install of gunicorn failed or was skipped"

    def version(self):
        return _version([str(self.gunicorn), "--version"]) + " (" + _version(
            [str(BENCH / ".venv" / "bin" / "python"), "--version"]) + ")"

    def launch(self, cluster):
        cluster.popen([str(self.gunicorn), "-c", str(APPS / "gunicorn.conf.py"),
                       "-w", str(cluster.workers_wanted), "-b", f"127.0.0.1:{cluster.port}",
                       "--chdir", str(APPS), "gunicorn_app:app"], cluster.env())
        cluster.master = cluster.proc.pid

    def rolling_restart(self, cluster):
        os.kill(cluster.master, signal.SIGHUP)
        return True


class Unicorn(System):
    key, name = "unicorn", "Unicorn"
    stop_signal = signal.SIGQUIT  # Unicorn's graceful stop; its SIGTERM is the quick one
    stop_note = "SIGQUIT (Unicorn's graceful stop)"
    rolling_note = "SIGHUP (all workers replaced at once)"

    def check(self):
        if not shutil.which("unicorn"):
            return "unicorn is not installed (Debian package `unicorn`)"
        return None

    def version(self):
        return _version(["unicorn", "-v"]) + " (" + _version(["ruby", "-v"]).split(" (")[0] + ")"

    def launch(self, cluster):
        cluster.popen(["unicorn", "-c", str(APPS / "unicorn.conf.rb"), str(APPS / "config.ru")],
                      cluster.env(), cwd=str(APPS))
        cluster.master = cluster.proc.pid

    def rolling_restart(self, cluster):
        os.kill(cluster.master, signal.SIGHUP)
        return True

    upgrade_note = "USR2, then QUIT to the old master once the new workers are ready"

    def upgrade(self, cluster):
        """USR2: the old master forks and execs a new one (its child), which starts its
        own workers."""
        old, workers = cluster.master, cluster.workers()
        os.kill(old, signal.SIGUSR2)
        found = []

        def new_master():
            found[:] = sorted(procfs.children(old) - workers)
            return bool(found)

        return found[0] if procfs.wait_until(new_master, 30, 0.001) else None

    def retire_old_master(self, pid):
        procfs.kill(pid, signal.SIGQUIT)


class UWSGI(System):
    """uWSGI 2.0 from PyPI's `pyuwsgi` wheel (uWSGI built as a Python extension: the
    `uwsgi` command is the venv's Python running uWSGI's C core, master loop included).

    Its natural pre-fork shape: `--master --processes N` with `--http-socket`, the master
    binds and every worker accepts on the inherited socket and speaks HTTP itself
    (`--http` would add a separate HTTP router process in front of the workers, proxying
    to them: not the shape the other systems have). Options beyond its shipped defaults,
    each for a reason:
    - `--lazy-apps`: the app is loaded in each worker after the fork, not once in the
      master. uWSGI's chain reload (its only rolling restart that waits for readiness,
      "The Art of Graceful Reloading" in its docs) requires it, and an operator who wants
      zero-downtime reloads runs with it always.
    - `--master-fifo`: its control channel; `c` (chain reload) and `q` (graceful
      shutdown) have no signal in 2.0 (see `graceful_stop`).
    - `--disable-logging`: no request log. uWSGI logs every request by default, where the
      other systems log none; the harness reads the log for readiness.
    - `--add-header "Connection: close"`: the http-socket closes the connection after
      every response (no keep-alive) without saying so; an HTTP/1.1 client such as wrk
      then takes the close for an error on a connection it meant to reuse (one read
      error per request). The header says what uWSGI does anyway.
    - `--binary-path <venv>/bin/python3`: pyuwsgi detects the base interpreter as its
      binary, and its reload (SIGHUP: the master re-execs itself) would then start Python
      without the venv and fail (`No module named 'pyuwsgi'`).

    Readiness: uWSGI's own word, in lazy-apps mode one log line per worker once its app
    is loaded, just before it marks itself accepting: `WSGI app 0 (mountpoint='') ready
    in 0 seconds on interpreter 0x… pid: <pid> (default app)`. (The stats server shows
    each worker's `accepting` flag too, but the master answers it: polling it every
    0.2 ms, as the kill trials look, would add to the master's CPU and wakeups.)
    """
    key, name = "uwsgi", "uWSGI"
    # uWSGI 2.0: SIGTERM is a brutal reload (a shutdown with --die-on-term), SIGINT and
    # SIGQUIT kill every worker at once (core/master.c, core/uwsgi.c). The graceful
    # shutdown is `q` on the master FIFO (gracefully_kill_them_all: SIGHUP to each worker,
    # which finishes its request, up to --worker-reload-mercy 60 s).
    stop_note = "`q` on the master FIFO (uWSGI 2.0's graceful shutdown)"
    rolling_note = ("chain reload: `c` on the master FIFO (one worker at a time, the next "
                    "once its successor accepts)")
    upgrade_note = "SIGHUP: the master re-execs itself in place, keeping the sockets"

    def __init__(self):
        self.uwsgi = BENCH / ".venv" / "bin" / "uwsgi"

    def check(self):
        return None if self.uwsgi.exists() else "pip install of pyuwsgi failed or was skipped"

    def version(self):
        return "uWSGI " + _version([str(self.uwsgi), "--version"]) + " (pyuwsgi wheel, " + \
            _version([str(BENCH / ".venv" / "bin" / "python"), "--version"]) + ")"

    def launch(self, cluster):
        cluster.popen([str(self.uwsgi), "--master", "--processes", str(cluster.workers_wanted),
                       "--http-socket", f"127.0.0.1:{cluster.port}", "--lazy-apps",
                       "--master-fifo", str(cluster.tmp / "master.fifo"), "--disable-logging",
                       "--add-header", "Connection: close",
                       "--binary-path", str(BENCH / ".venv" / "bin" / "python3"),
                       "--chdir", str(APPS), "--module", "uwsgi_app"], cluster.env())
        cluster.master = cluster.proc.pid

    _READY = re.compile(r"WSGI app \d+ \(mountpoint='[^']*'\) ready in \d+ seconds on "
                        r"interpreter \S+ pid: (\d+)")
    # Logged by the old image just before its execve(2).
    _EXECED = "running " + str(BENCH / ".venv" / "bin" / "python3")

    def _scan(self, cluster):
        for line in cluster.new_log_lines():
            m = self._READY.search(line)
            if m:
                cluster.ready_from_log.add(int(m.group(1)))
            elif line.strip() == self._EXECED and getattr(cluster, "reexec_at", 0) is None:
                cluster.reexec_at = time.monotonic()

    def ready_pids(self, cluster):
        self._scan(cluster)
        return cluster.ready_from_log

    def _fifo(self, cluster, command):
        fd = os.open(cluster.tmp / "master.fifo", os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, command)
        finally:
            os.close(fd)

    def graceful_stop(self, cluster):
        self._fifo(cluster, b"q")

    def rolling_restart(self, cluster):
        self._fifo(cluster, b"c")
        return True

    def upgrade(self, cluster):
        """SIGHUP, uWSGI's standard graceful reload: the old workers finish their requests
        and exit, then the master closes every fd but the sockets' and execs its binary
        again (same pid), which loads the app and forks new workers. The old image is gone
        at the execve, which it logs just before (`running <binary>`)."""
        self._scan(cluster)
        cluster.reexec_at = None
        os.kill(cluster.master, signal.SIGHUP)

        def execed():
            self._scan(cluster)
            return cluster.reexec_at is not None

        return cluster.master if procfs.wait_until(execed, 30, 0.001) else None


class Circus(System):
    """Circus 0.19 (PyPI). circusd binds the socket itself and hands its fd to every
    process of a watcher (`use_sockets = True`, `$(circus.sockets.web)` on the command
    line): the closest peer to `clutch run`. The configuration (written per cluster into
    its temp directory) is the docs' sockets example with Circus's defaults otherwise
    (check_delay 5 s, graceful_timeout 30 s, stop_signal SIGTERM, warmup_delay 0, no
    flapping plugin); only its control endpoints are per cluster (ipc:// in the temp
    directory, instead of the shared tcp://127.0.0.1:5555/5556), and the worker gets
    READY_DIR through the watcher's [env] section.

    The worker (apps/circus_worker.py) is the shape Circus's docs give for a socket
    watcher: a small Python script that takes the fd from argv and serves one connection
    at a time with the standard library. It is the lightest real worker: no WSGI server
    in between (chaussette, Circus's companion WSGI server, has had no release since 2016)
    and no dependency beyond Python.

    Readiness: Circus has none (it never waits for a worker, not even in a reload), so, as
    for the other peers, the worker itself creates $READY_DIR/<pid> just before its first
    accept().
    """
    key, name = "circus", "Circus"
    stop_note = "SIGTERM to circusd (quit: stop_signal SIGTERM to every process)"
    rolling_note = ("circusctl reload (graceful: N new processes, then the old ones "
                    "stopped, without waiting for readiness)")

    def __init__(self):
        self.bin = BENCH / ".venv" / "bin"

    def check(self):
        if not (self.bin / "circusd").exists():
            return "pip install of circus failed or was skipped"
        return None

    def version(self):
        return "circus " + _version([str(self.bin / "circusd"), "--version"]) + " (" + \
            _version([str(self.bin / "python"), "--version"]) + ")"

    def _endpoint(self, cluster):
        return f"ipc://{cluster.tmp / 'endpoint'}"

    def launch(self, cluster):
        ini = cluster.tmp / "circus.ini"
        ini.write_text("\n".join([
            "[circus]",
            f"endpoint = {self._endpoint(cluster)}",
            f"pubsub_endpoint = ipc://{cluster.tmp / 'pubsub'}",
            "",
            "[watcher:web]",
            f"cmd = {self.bin / 'python3'} {APPS / 'circus_worker.py'} $(circus.sockets.web)",
            "use_sockets = True",
            f"numprocesses = {cluster.workers_wanted}",
            "",
            "[env:web]",
            f"READY_DIR = {cluster.ready_dir}",
            "",
            "[socket:web]",
            "host = 127.0.0.1",
            f"port = {cluster.port}",
            ""]))
        cluster.popen([str(self.bin / "circusd"), str(ini)], cluster.env())
        cluster.master = cluster.proc.pid

    def rolling_restart(self, cluster):
        threading.Thread(target=subprocess.run, daemon=True, kwargs=dict(
            args=[str(self.bin / "circusctl"), "--endpoint", self._endpoint(cluster),
                  "--timeout", "60", "reload", "web"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)).start()
        return True


def all_systems(clutch_binary):
    """Every system, in table order."""
    return [Clutch(clutch_binary), NodeCluster(), NodeCluster("none"), PM2(), Gunicorn(),
            Unicorn(), UWSGI(), Circus()]
