"""The measurements. Each scenario runs for every system before the next scenario starts
(so systems are compared within minutes of each other), lightest first, scale last.

A scenario records numbers with `run.record(system, figure, value)`; report.py turns
them into the table. Nothing is ever filled in by hand: a figure that could not be
measured is recorded as a note saying why.
"""

import os
import signal
import statistics
import tempfile
import threading
import time
from contextlib import contextmanager

from . import probe, procfs
from .systems import Cluster


class Params:
    """Trial counts and durations of a full run, or of `--quick`."""

    def __init__(self, quick):
        self.quick = quick
        self.trials = 5 if quick else 20  # kill and stop trials
        self.idle_s = 2 if quick else 10
        self.orphan_trials = 1 if quick else 3
        self.orphan_cap_s = 3 if quick else 35  # Unicorn's orphans poll getppid every 30 s
        self.tp_s = 2 if quick else 4
        self.tp_trials = 1 if quick else 3
        self.tp_workers = (2,) if quick else (1, 2)
        self.connections = 32
        self.chaos_s = 3 if quick else 10
        self.chaos_repeats = 1 if quick else 3
        self.rolling_s = 6 if quick else 8
        self.rolling_repeats = 1 if quick else 3
        self.scale = () if quick else (64, 1024)
        self.scale_cap_s = 300
        # 1024 workers are skipped when their estimated memory (PSS per worker at 64
        # workers × 1024) exceeds this share of MemAvailable.
        self.memory_share = 0.6


class Run:
    def __init__(self, systems, params, tmp):
        self.systems, self.p, self.tmp = systems, params, tmp
        self.results = {s.key: {} for s in systems}
        self.notes = []
        self.per_worker_pss_kib = {}
        self._seq = 0

    def record(self, system, figure, value):
        self.results[system.key][figure] = value

    def note(self, text):
        print("  note:", text, flush=True)
        self.notes.append(text)

    def new_cluster(self, system, workers):
        self._seq += 1
        tmp = tempfile.mkdtemp(prefix=f"{system.key}-{self._seq}-", dir=self.tmp)
        cluster = Cluster(system, workers, probe.free_port(), tmp)
        cluster.launched_at = time.monotonic()
        system.launch(cluster)
        return cluster

    @contextmanager
    def cluster(self, system, workers, ready_timeout=60):
        cluster = self.new_cluster(system, workers)
        try:
            if cluster.wait_ready(ready_timeout) is None:
                raise RuntimeError(f"{system.name}: {workers} workers not ready within "
                                   f"{ready_timeout} s (log: {cluster.log_path})")
            yield cluster
        finally:
            cluster.stop()


def ms(seconds):
    return seconds * 1000.0


def summary(values):
    """Median and max of a list of numbers (None when empty)."""
    if not values:
        return None
    return {"median": statistics.median(values), "max": max(values), "n": len(values)}


def start_time(pid):
    """Process start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return 1 << 62


# --- 1, 2: memory and idle ----------------------------------------------------------

def idle(run, system):
    """Master RSS/PSS with 2 workers; wakeups and CPU over the idle window."""
    with run.cluster(system, 2) as c:
        # Let start-up work settle: 3 s, past one-off work due shortly after start
        # (clutch's end of probation, 2 s after ready by default, is a wakeup, but a
        # one-off — the window is for what a master does while nothing happens).
        time.sleep(3.0)
        run.record(system, "mem2", procfs.memory_kib(c.master))
        switches, cpu = procfs.context_switches(c.master), procfs.cpu_ns(c.master)
        time.sleep(run.p.idle_s)
        run.record(system, "idle", {
            "seconds": run.p.idle_s,
            "wakeups": procfs.context_switches(c.master) - switches,
            "cpu_ms": (procfs.cpu_ns(c.master) - cpu) / 1e6,
        })


# --- 3: kill one worker ---------------------------------------------------------------

def kill_trial(cluster):
    """SIGKILLs the cluster's only worker; returns ms from the kill to: the replacement
    process exists, it reported ready, it answered an HTTP request."""
    (victim,) = cluster.workers()
    system = cluster.system
    marks, armed, done = {}, threading.Event(), threading.Event()

    def watch():
        armed.set()
        new = None
        while not done.is_set():
            now = time.monotonic()
            if new is None:
                others = cluster.workers() - {victim}
                if others:
                    new = min(others)
                    marks["exists"] = now
            if new is not None and new in system.ready_pids(cluster):
                marks["ready"] = now
                return
            time.sleep(0.0002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    armed.wait()
    t0 = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    answered = probe.first_answer(
        cluster.port, lambda body: system.answered_by(cluster, body) != victim, 20)
    if answered is not None:
        marks["answers"] = answered
    # The answer can come before the watcher's next look: give it a moment to catch up.
    if "answers" in marks:
        procfs.wait_until(lambda: "ready" in marks, 2, 0.001)
    done.set()
    watcher.join(1)
    return {k: ms(v - t0) for k, v in marks.items()}


# The two ages at which the kill scenario kills a worker for the first time: 3 s (a
# worker that has served for a few seconds: a one-off crash soon after a start, where
# clutch used to back off for 30 s) and 31 s (past every system's healthy-uptime reset:
# PM2's and clutch's old 30 s).
KILL_AGES = (("kill_young", 3.0), ("kill", 31.0))


def prestart_kill_clusters(run, system):
    """One 1-worker cluster per trial, started at the beginning of the run, so that each
    old-worker trial kills a worker 31 s old without waiting 31 s per trial."""
    return [run.new_cluster(system, 1) for _ in range(run.p.trials)]


def kill_one(run, system, prestarted):
    """Kill trials on 1-worker clusters, each worker killed once, for the first time, at
    each age of KILL_AGES: the replacement is then the only process that can answer, so
    the first answer after the kill times the replacement itself. Young trials start a
    fresh cluster each; old trials use the clusters started at the beginning of the run.
    Recorded as "kill_young" (3 s) and "kill" (31 s)."""
    for name, age in KILL_AGES:
        results = []
        clusters = prestarted if name == "kill" else []
        try:
            for trial in range(run.p.trials):
                if name == "kill" and clusters:
                    c = clusters[trial % len(clusters)]
                else:
                    c = run.new_cluster(system, 1)
                    clusters.append(c)
                if c.wait_ready(60) is None:
                    # One cluster that could not start (its port was taken between the
                    # harness's pick and the bind, on a shared machine) costs one trial,
                    # not the system's whole row.
                    run.note(f"{system.name}: {name} trial {trial + 1}: worker not ready, "
                             f"trial skipped (log: {c.log_path})")
                    continue
                time.sleep(max(0.0, c.launched_at + age - time.monotonic()))
                results.append(kill_trial(c))
                if name != "kill":
                    c.stop()
        finally:
            for c in clusters:
                c.stop()
        if not results:
            raise RuntimeError(f"{system.name}: no {name} trial could start")
        row = {"age_s": age}
        for stage in ("exists", "ready", "answers"):
            values = [r[stage] for r in results if stage in r]
            row[stage] = summary(values)
            if len(values) < len(results):
                run.note(f"{system.name}: {name} trials without a '{stage}' mark: "
                         f"{len(results) - len(values)} of {len(results)}")
        run.record(system, name, row)


# --- 4: stop, and orphans ------------------------------------------------------------

def stop(run, system):
    """Graceful stop signal to the master of 2 ready workers → all workers gone →
    master exited."""
    gone, exited, codes = [], [], set()
    for _ in range(run.p.trials):
        with run.cluster(system, 2) as c:
            time.sleep(0.1)
            workers = c.workers()
            watch = procfs.ExitWatch(workers | {c.master})
            t0 = time.monotonic()
            system.graceful_stop(c)
            t_workers = watch.wait(workers, 15)
            t_master = watch.wait([c.master], max(0.0, t0 + 15 - time.monotonic()))
            watch.close()
            if t_workers is not None:
                gone.append(ms(t_workers - t0))
            if t_master is not None:
                exited.append(ms(t_master - t0))
                code = procfs.exit_code(c.master)
                if code is not None:
                    codes.add(code)
            else:
                run.note(f"{system.name}: master still running 15 s after {system.stop_note}")
            # Anything still alive is killed by the context manager.
    run.record(system, "stop", {"workers_gone": summary(gone), "master_exited": summary(exited),
                                "exit_codes": sorted(codes), "signal": system.stop_note})


def orphans(run, system):
    """SIGKILL the master of 2 ready workers; how long do the workers outlive it, and
    does the port still answer meanwhile?"""
    lifetimes, answered = [], []
    for _ in range(run.p.orphan_trials):
        c = run.new_cluster(system, 2)
        try:
            if c.wait_ready(60) is None:
                raise RuntimeError(f"{system.name}: not ready (log: {c.log_path})")
            time.sleep(0.1)
            workers = c.workers()
            last_answer, stop_probing = [None], threading.Event()

            def probing():
                while not stop_probing.is_set():
                    if probe.answers(c.port, timeout=0.2):
                        last_answer[0] = time.monotonic()
                    time.sleep(0.002)

            watch = procfs.ExitWatch(workers)
            t0 = time.monotonic()
            os.kill(c.master, signal.SIGKILL)
            prober = threading.Thread(target=probing, daemon=True)
            prober.start()
            t_gone = watch.wait(workers, run.p.orphan_cap_s)
            watch.close()
            time.sleep(0.05)  # one more probe after the last worker went
            stop_probing.set()
            prober.join(1)
            lifetimes.append(ms(t_gone - t0) if t_gone is not None else None)
            answered.append(ms(last_answer[0] - t0) if last_answer[0] else None)
            for w in workers:
                procfs.kill(w, signal.SIGKILL)
        finally:
            c.stop()
    survived = [v for v in lifetimes if v is not None]
    run.record(system, "orphans", {
        "survive": summary(survived), "capped": len(lifetimes) - len(survived),
        "cap_ms": ms(run.p.orphan_cap_s),
        "last_answer": summary([v for v in answered if v is not None]),
        "answered_trials": sum(1 for v in answered if v is not None), "trials": len(answered)})


# --- 5, 6: chaos and rolling restarts under load --------------------------------------

MODES = (("keepalive", False), ("close", True))


def chaos(run, system):
    """wrk against 2 workers while the oldest worker is SIGKILLed every 500 ms."""
    row = {}
    for mode, close in MODES:
        repeats = []
        for _ in range(run.p.chaos_repeats):
            with run.cluster(system, 2) as c:
                # Past PM2's min_uptime (1 s). clutch's workers are still young (< 30 s):
                # its first kill of each slot is answered after its 100 ms backoff.
                time.sleep(1.3)
                wrk = probe.start_wrk(c.port, run.p.chaos_s + 2, run.p.connections, close)
                time.sleep(1.0)
                listening = procfs.listening_inodes(c.port)
                kills, skipped, held = 0, 0, 0
                t0 = time.monotonic()
                for tick in range(run.p.chaos_s * 2):
                    time.sleep(max(0.0, t0 + tick * 0.5 - time.monotonic()))
                    workers = c.workers()
                    if not workers:
                        skipped += 1
                        continue
                    victim = min(workers, key=lambda p: (start_time(p), p))
                    # Connections the victim has accepted die with it: the app's loss.
                    procfs.kill(victim, signal.SIGSTOP)
                    held += procfs.held_tcp_connections(victim, listening)
                    procfs.kill(victim, signal.SIGKILL)
                    kills += 1
                result = probe.finish_wrk(wrk, run.p.chaos_s + 2)
                result.pop("raw")
                errors = sum(result[k] for k in ("connect", "read", "write", "timeout"))
                result.update(kills=kills, no_worker_to_kill=skipped, held=held,
                              beyond_held=max(0, errors - held),
                              workers_after=len(c.workers()))
                repeats.append(result)
        row[mode] = median_result(repeats)
    run.record(system, "chaos", row)


def median_result(repeats):
    """Per-key median over repeated runs (the runs themselves are kept too)."""
    keys = [k for k in repeats[0] if isinstance(repeats[0][k], (int, float))]
    out = {k: statistics.median(r[k] for r in repeats) for k in keys}
    out["runs"] = repeats
    return out


def rolling(run, system):
    """wrk against 2 workers while the system's rolling restart replaces them."""
    row = {}
    for mode, close in MODES:
        repeats = []
        for _ in range(run.p.rolling_repeats):
            with run.cluster(system, 2) as c:
                time.sleep(1.0)
                old = c.workers()
                wrk = probe.start_wrk(c.port, run.p.rolling_s, run.p.connections, close)
                time.sleep(1.0)
                t0 = time.monotonic()
                if not system.rolling_restart(c):
                    wrk.kill()
                    probe.finish_wrk(wrk, 0)
                    run.record(system, "rolling", None)
                    return
                t_done = procfs.wait_until(
                    lambda: not (c.workers() & old) and c.all_ready(exclude=old), 30, 0.001)
                result = probe.finish_wrk(wrk, run.p.rolling_s)
                result.pop("raw")
                result["replaced_ms"] = ms(t_done - t0) if t_done else None
                result["within_load"] = bool(t_done) and t_done < t0 + run.p.rolling_s - 1
                result["errors"] = sum(result[k] for k in ("connect", "read", "write", "timeout",
                                                           "non2xx"))
                repeats.append(result)
        if any(r["replaced_ms"] is None for r in repeats):
            run.note(f"{system.name}: a rolling restart ({mode}) did not replace every worker "
                     "within 30 s")
        ok = [r for r in repeats if r["replaced_ms"] is not None] or repeats
        row[mode] = median_result(ok)
        row[mode]["max_errors"] = max(r["errors"] for r in repeats)
    run.record(system, "rolling", row)


def upgrade(run, system):
    """wrk against 2 workers while the master itself is upgraded: clutch's `upgrade`
    (the old master hands over once the new one's workers are ready and proven, then
    exits), Unicorn's USR2 then QUIT to the old master once the new workers are ready
    (what its docs tell an operator to do), uWSGI's SIGHUP (its workers stop, then the
    master re-execs itself in place with the sockets and starts new ones). Errors under
    load, time until the new workers serve, time until the old master is gone (uWSGI:
    its execve)."""
    if not system.has_upgrade():
        run.record(system, "upgrade", None)
        return
    row = {}
    for mode, close in MODES:
        repeats = []
        for _ in range(run.p.rolling_repeats):
            with run.cluster(system, 2) as c:
                time.sleep(1.0)
                old_master, old = c.master, c.workers()
                wrk = probe.start_wrk(c.port, run.p.rolling_s + 4, run.p.connections, close)
                time.sleep(1.0)
                t0 = time.monotonic()
                new_master = system.upgrade(c)
                if new_master is None:
                    wrk.kill()
                    probe.finish_wrk(wrk, 0)
                    run.record(system, "upgrade", None)
                    return
                c.master = new_master  # the new workers are its children
                t_ready = procfs.wait_until(lambda: c.all_ready(exclude=old), 30, 0.001)
                if t_ready is not None:
                    system.retire_old_master(old_master)
                if new_master == old_master:  # re-exec'd in place: gone at the execve
                    t_gone = c.reexec_at
                else:
                    t_gone = procfs.wait_until(lambda: not procfs.alive(old_master), 30, 0.001)
                result = probe.finish_wrk(wrk, run.p.rolling_s + 4)
                result.pop("raw")
                result["new_ready_ms"] = ms(t_ready - t0) if t_ready else None
                result["old_gone_ms"] = ms(t_gone - t0) if t_gone else None
                result["errors"] = sum(result[k] for k in ("connect", "read", "write", "timeout",
                                                           "non2xx"))
                repeats.append(result)
        if any(r["old_gone_ms"] is None for r in repeats):
            run.note(f"{system.name}: an upgrade ({mode}) did not end within 30 s")
        ok = [r for r in repeats if r["old_gone_ms"] is not None] or repeats
        row[mode] = median_result(ok)
        row[mode]["max_errors"] = max(r["errors"] for r in repeats)
    run.record(system, "upgrade", row)


# --- 7: throughput ---------------------------------------------------------------------

def throughput(run, system):
    """wrk req/s with 1 and 2 workers, keep-alive and close, and the master's CPU share
    (its CPU time over the run / wall time, in % of one core)."""
    row = {}
    for workers in run.p.tp_workers:
        with run.cluster(system, workers) as c:
            time.sleep(1.0)
            for mode, close in MODES:
                trials = []
                for _ in range(run.p.tp_trials):
                    cpu0, t0 = procfs.cpu_best_ns(c.master), time.monotonic()
                    result = probe.wrk(c.port, run.p.tp_s, run.p.connections, close)
                    wall = time.monotonic() - t0
                    result.pop("raw")
                    result["master_cpu_pct"] = 100.0 * (procfs.cpu_best_ns(c.master) - cpu0) / 1e9 / wall
                    result["errors"] = sum(result[k] for k in ("connect", "read", "write",
                                                               "timeout", "non2xx"))
                    trials.append(result)
                row[f"{workers}-{mode}"] = median_result(trials)
    run.record(system, "throughput", row)


# --- 8: scale ---------------------------------------------------------------------------

def mem_available_kib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def wait_started_and_ready(cluster, n, exclude, timeout):
    """Times (monotonic s) when n worker processes not in `exclude` existed, and when n
    of them were ready (None: not within `timeout`)."""
    started = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = time.monotonic()
        workers = cluster.workers() - exclude
        if started is None and len(workers) >= n:
            started = now
        if started is not None and len(workers & cluster.system.ready_pids(cluster)) >= n:
            return started, now
        time.sleep(0.001)
    return started, None


def scale(run, system, n):
    """Launch n workers until all are ready; SIGKILL them all at once until n new ones
    are ready; the master's CPU time for each."""
    key = f"scale{n}"
    per_worker = run.per_worker_pss_kib.get(system.key)
    if n > 64 and per_worker:
        need = per_worker * n
        if need > run.p.memory_share * mem_available_kib():
            run.record(system, key, {"skipped": (
                f"needs ~{need / 2**20:.0f} GiB ({per_worker / 1024:.0f} MiB PSS per worker at 64 "
                f"workers × {n}); {mem_available_kib() / 2**20:.0f} GiB available")})
            return
    cap = run.p.scale_cap_s
    c = run.new_cluster(system, n)
    try:
        t_started, t_ready = wait_started_and_ready(c, n, frozenset(), cap)
        if t_ready is None:
            run.record(system, key, {"skipped": (
                f"only {len(c.ready_workers())} of {n} workers ready after {cap} s")})
            return
        launch = {"launch_ms": ms(t_ready - c.launched_at),
                  "started_ms": ms(t_started - c.launched_at),
                  "launch_cpu_ms": procfs.cpu_best_ns(c.master) / 1e6}
        time.sleep(1.0)
        workers = c.workers()
        if n == 64:
            run.record(system, "mem64", procfs.memory_kib(c.master))
            pss = sum(procfs.memory_kib(w)["pss"] for w in workers)
            run.per_worker_pss_kib[system.key] = pss / max(1, len(workers))
        # Workers must be old enough for the supervisor to replace them at once.
        time.sleep(max(0.0, c.launched_at + system.min_healthy_age + 0.5 - time.monotonic()))
        cpu0 = procfs.cpu_best_ns(c.master)
        t0 = time.monotonic()
        for w in workers:
            procfs.kill(w, signal.SIGKILL)
        t_restarted, t_back = wait_started_and_ready(c, n, workers, cap)
        cpu1 = procfs.cpu_best_ns(c.master)
        launch.update(back_ms=ms(t_back - t0) if t_back else None,
                      restarted_ms=ms(t_restarted - t0) if t_restarted else None,
                      back_cpu_ms=(cpu1 - cpu0) / 1e6,
                      back_ready=len(c.ready_workers() - workers))
        if t_back is None:
            run.note(f"{system.name}: after killing all {n} workers only "
                     f"{launch['back_ready']} were back after {cap} s")
        run.record(system, key, launch)
    finally:
        c.stop()


# --- the order of a run -------------------------------------------------------------------

def scenario_list(params):
    """(name, function) in the order they run: lightest first, heaviest last."""
    items = [("idle", idle), ("stop", stop), ("orphans", orphans), ("kill", None),
             ("throughput", throughput), ("chaos", chaos), ("rolling", rolling),
             ("upgrade", upgrade)]
    for n in params.scale:
        items.append((f"scale{n}", lambda run, system, n=n: scale(run, system, n)))
    return items
