"""What the harness reads from /proc, and the few process-control calls it needs.

Everything here works on pids the harness itself started (or their descendants). The
harness makes itself a child subreaper, so workers orphaned by a killed master, and
daemons that detach (PM2's), are re-parented to the harness instead of init: nothing it
started can escape its clean-up, and their exit is seen as a zombie state here.
"""

import ctypes
import os
import signal
import time

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _read(path, mode="r"):
    try:
        with open(path, mode) as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def state(pid):
    """The one-letter state of `pid` (R, S, D, Z, ...), or None once it is reaped."""
    stat = _read(f"/proc/{pid}/stat", "rb")
    if stat is None:
        return None
    return chr(stat[stat.rindex(b")") + 2])


def alive(pid):
    """True while `pid` runs: a zombie has exited (its parent just has not reaped it)."""
    return state(pid) not in (None, "Z", "X")


def tasks(pid):
    try:
        return os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return []


def comm(pid):
    """The process's name (`/proc/PID/comm`), or None once it is gone."""
    text = _read(f"/proc/{pid}/comm")
    return text.strip() if text else None


def children(pid):
    """Live child processes of `pid`, whichever of its threads forked them."""
    found = set()
    for tid in tasks(pid):
        text = _read(f"/proc/{pid}/task/{tid}/children")
        if text:
            found.update(int(p) for p in text.split())
    return {p for p in found if alive(p)}


def descendants(pid):
    found, todo = set(), [pid]
    while todo:
        for child in children(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def context_switches(pid):
    """Voluntary + involuntary context switches summed over every thread of `pid`."""
    total = 0
    for tid in tasks(pid):
        status = _read(f"/proc/{pid}/task/{tid}/status") or ""
        for line in status.splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def cpu_ns(pid):
    """CPU time of `pid` in ns: the scheduler's exact per-thread run time
    (/proc/PID/task/TID/schedstat), summed over its threads. Threads that exited are not
    counted; `cpu_ticks_ns` does count them, at 10 ms resolution."""
    total = 0
    for tid in tasks(pid):
        text = _read(f"/proc/{pid}/task/{tid}/schedstat")
        if text:
            total += int(text.split()[0])
    return total


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks_ns(pid):
    """utime + stime of `pid` (every thread, dead ones too; not its children), in ns."""
    stat = _read(f"/proc/{pid}/stat", "rb")
    if stat is None:
        return 0
    fields = stat[stat.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // CLK_TCK


def cpu_best_ns(pid):
    """The larger of the two CPU readings: exact for long-lived threads, and never blind
    to the time of threads that came and went."""
    return max(cpu_ns(pid), cpu_ticks_ns(pid))


def memory_kib(pid):
    """Rss, Pss and private (clean + dirty) memory of `pid` from smaps_rollup, in KiB."""
    text = _read(f"/proc/{pid}/smaps_rollup") or ""
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
            values[parts[0][:-1]] = int(parts[1])
    return {
        "rss": values.get("Rss", 0),
        "pss": values.get("Pss", 0),
        "private": values.get("Private_Clean", 0) + values.get("Private_Dirty", 0),
    }


def _unix_socket_inodes():
    text = _read("/proc/net/unix") or ""
    return {line.split()[6] for line in text.splitlines()[1:] if len(line.split()) >= 7}


def listening_inodes(port):
    """Inodes of the TCP sockets listening on `port` (IPv4 and IPv6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in (_read(table) or "").splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                found.add(fields[9])
    return found


def held_tcp_connections(pid, listening):
    """How many accepted TCP connections `pid` holds open: its socket descriptors, less
    Unix sockets and the listening sockets (`listening`, from `listening_inodes`)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return len(inodes - listening - _unix_socket_inodes())


def kill(pid, sig):
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def kill_tree(pid):
    """SIGKILL `pid` and every descendant, by pid (children first, so none is re-spawned)."""
    for _ in range(3):
        victims = descendants(pid)
        if not victims and not alive(pid):
            break
        kill(pid, signal.SIGSTOP)  # a stopped supervisor cannot re-spawn what we kill
        for victim in victims:
            kill(victim, signal.SIGKILL)
        kill(pid, signal.SIGKILL)
        time.sleep(0.01)
    reap()


exit_statuses = {}


def reap():
    """Reaps every exited child of the harness (ours and re-parented orphans), keeping
    their wait statuses in `exit_statuses`."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        exit_statuses[pid] = status


def exit_code(pid):
    """The exit code of a reaped child (`-signal` if a signal ended it), or None."""
    reap()
    status = exit_statuses.get(pid)
    if status is None:
        return None
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


class ExitWatch:
    """pidfds opened now, for `exit_times`-style waiting after a signal is sent (so the
    pidfds exist before the processes can exit)."""

    def __init__(self, pids):
        import select
        self.pids, self.seen, self.fds = list(pids), {}, {}
        self.poller = select.poll()
        for pid in self.pids:
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                self.seen[pid] = time.monotonic()
                continue
            self.fds[fd] = pid
            self.poller.register(fd, select.POLLIN)

    def wait(self, pids, timeout):
        """Waits until every pid of `pids` has exited (or `timeout`); returns the time
        the last of them was seen exiting, or None."""
        deadline = time.monotonic() + timeout
        while not all(p in self.seen for p in pids):
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            for fd, _ in self.poller.poll(left * 1000):
                self.seen[self.fds[fd]] = time.monotonic()
                self.poller.unregister(fd)
        return max(self.seen[p] for p in pids) if pids else time.monotonic()

    def close(self):
        for fd in self.fds:
            os.close(fd)


def wait_until(predicate, timeout, interval=0.0002):
    """Polls `predicate` until it is true; returns the monotonic time (s) it was first
    seen true, or None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        now = time.monotonic()
        if predicate():
            return now
        if now > deadline:
            return None
        time.sleep(interval)
