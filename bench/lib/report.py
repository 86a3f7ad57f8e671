"""Turns the recorded results into the markdown table and the targets check."""


def _mb(kib):
    return f"{kib / 1024:.1f}"


def _mm(s, digits=1):
    """`median / max` of a summary, in ms."""
    if not s:
        return "—"
    return f"{s['median']:.{digits}f} / {s['max']:.{digits}f}"


def _k(n):
    return f"{n / 1000:.1f}k" if n >= 1000 else f"{n:.0f}"


def _get(result, *path):
    for key in path:
        if not isinstance(result, dict) or key not in result:
            return None
        result = result[key]
    return result


def mem(r, key):
    m = r.get(key)
    return f"{_mb(m['rss'])} / {_mb(m['pss'])}" if m else "—"


def idle(r):
    i = r.get("idle")
    return f"{i['wakeups']} / {i['cpu_ms']:.2f} ms" if i else "—"


def kill(stage, key="kill"):
    return lambda r: _mm(_get(r, key, stage), 2)


def stop(stage):
    return lambda r: _mm(_get(r, "stop", stage), 2)


def orphans(r):
    o = r.get("orphans")
    if not o:
        return "—"
    if o["survive"] is None:
        gone = f"> {o['cap_ms'] / 1000:.0f} s (all {o['trials']} trials)"
    else:
        gone = f"{o['survive']['median']:.2f} ms"
        if o["capped"]:
            gone += f" ({o['capped']} trials > {o['cap_ms'] / 1000:.0f} s)"
    if o["answered_trials"]:
        port = f"port answered until {o['last_answer']['median']:.0f} ms"
    else:
        port = "port closed"
    return f"{gone}; {port}"


def chaos(mode):
    def cell(r):
        c = _get(r, "chaos", mode)
        if not c:
            return "—"
        text = (f"{_k(c['requests'])}; {c['connect']:.0f}/{c['read']:.0f}/{c['write']:.0f}/"
                f"{c['timeout']:.0f}; {c['non2xx']:.0f}; {c['held']:.0f} / {c['beyond_held']:.0f}")
        if c.get("no_worker_to_kill"):
            text += (f" ({c['kills']:.0f} kills: at {c['no_worker_to_kill']:.0f} ticks no "
                     "worker was alive)")
        return text
    return cell


def rolling(mode):
    def cell(r):
        if "rolling" in r and r["rolling"] is None:
            return "n/a"
        c = _get(r, "rolling", mode)
        if not c:
            return "—"
        replaced = f"{c['replaced_ms']:.0f} ms" if c.get("replaced_ms") is not None else "not done"
        return f"{c['errors']:.0f} (max {c['max_errors']:.0f}); {replaced}"
    return cell


def upgrade(mode):
    def cell(r):
        if "upgrade" in r and r["upgrade"] is None:
            return "n/a"
        c = _get(r, "upgrade", mode)
        if not c:
            return "—"
        ready = f"{c['new_ready_ms']:.0f} ms" if c.get("new_ready_ms") is not None else "never"
        gone = f"{c['old_gone_ms']:.0f} ms" if c.get("old_gone_ms") is not None else "not gone"
        return f"{c['errors']:.0f} (max {c['max_errors']:.0f}); {ready}; {gone}"
    return cell


def throughput(key):
    def cell(r):
        t = _get(r, "throughput", key)
        if not t:
            return "—"
        errors = f", {t['errors']:.0f} err" if t["errors"] else ""
        return f"{_k(t['rps'])} ({t['master_cpu_pct']:.1f} %{errors})"
    return cell


def scale(n, what):
    def cell(r):
        s = r.get(f"scale{n}")
        if not s:
            return "—"
        if "skipped" in s:
            return "skipped" if what == "back" else f"skipped: {s['skipped']}"
        if what == "launch":
            return (f"{s['started_ms']:.0f} / {s['launch_ms']:.0f} ms "
                    f"({s['launch_cpu_ms']:.0f} ms CPU)")
        started = f"{s['restarted_ms']:.0f}" if s.get("restarted_ms") is not None else "—"
        back = f"{s['back_ms']:.0f} ms" if s["back_ms"] is not None else "not all back"
        return f"{started} / {back} ({s['back_cpu_ms']:.0f} ms CPU)"
    return cell


ROWS = [
    ("master RSS / PSS, 2 workers (MB)", lambda r: mem(r, "mem2")),
    ("master RSS / PSS, 64 workers (MB)", lambda r: mem(r, "mem64")),
    ("master idle: wakeups / CPU time (10 s; 2 s with --quick)", idle),
    ("SIGKILL a worker aged 3 s → replacement exists (ms, median / max)",
     kill("exists", "kill_young")),
    ("… → replacement ready (ms)", kill("ready", "kill_young")),
    ("… → replacement answers HTTP (ms)", kill("answers", "kill_young")),
    ("SIGKILL a worker aged 31 s → replacement exists (ms, median / max)", kill("exists")),
    ("… → replacement ready (ms)", kill("ready")),
    ("… → replacement answers HTTP (ms)", kill("answers")),
    ("graceful stop signal → all workers gone (ms)", stop("workers_gone")),
    ("… → master exited (ms)", stop("master_exited")),
    ("SIGKILL the master → orphans gone; port", orphans),
    ("chaos, keep-alive: requests; socket errors connect/read/write/timeout; non-2xx; "
     "connections held by the killed workers / errors beyond those", chaos("keepalive")),
    ("chaos, close per request: same", chaos("close")),
    ("rolling restart, keep-alive: errors; all replaced in", rolling("keepalive")),
    ("rolling restart, close per request: same", rolling("close")),
    ("upgrade of the master, keep-alive: errors; new workers ready in; old master gone in",
     upgrade("keepalive")),
    ("upgrade of the master, close per request: same", upgrade("close")),
    ("1 worker, keep-alive: req/s (master CPU)", throughput("1-keepalive")),
    ("1 worker, close: req/s (master CPU)", throughput("1-close")),
    ("2 workers, keep-alive: req/s (master CPU)", throughput("2-keepalive")),
    ("2 workers, close: req/s (master CPU)", throughput("2-close")),
    ("64 workers: launch → all started / all ready (master CPU)", scale(64, "launch")),
    ("64 workers: SIGKILL all → all started / all ready (master CPU)", scale(64, "back")),
    ("1024 workers: launch → all started / all ready (master CPU)", scale(1024, "launch")),
    ("1024 workers: SIGKILL all → all started / all ready (master CPU)", scale(1024, "back")),
]


def table(systems, results):
    head = "| figure | " + " | ".join(s.name for s in systems) + " |"
    lines = [head, "|---|" + "---|" * len(systems)]
    for label, cell in ROWS:
        cells = []
        for s in systems:
            try:
                cells.append(cell(results.get(s.key, {})))
            except (KeyError, TypeError) as e:  # a half-recorded figure
                cells.append(f"? ({e})")
        if all(c == "—" for c in cells):
            continue
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- targets (issue 6): clutch against the best peer of the same run ----------------------

def _best(systems, results, value, lower=True):
    """(name, value) of the best peer for `value(result)`, or None."""
    seen = []
    for s in systems:
        if s.key == "clutch":
            continue
        try:
            v = value(results.get(s.key, {}))
        except (KeyError, TypeError):
            v = None
        if v is not None:
            seen.append((v, s.name))
    if not seen:
        return None
    v, name = (min if lower else max)(seen)
    return name, v


TARGETS = [
    ("master RSS, 2 workers", "under 2 MB",
     lambda r: r["mem2"]["rss"] / 1024, lambda v: v < 2.0, "{:.1f} MB"),
    ("master idle wakeups", "0",
     lambda r: r["idle"]["wakeups"], lambda v: v == 0, "{:.0f}"),
    ("kill, worker aged 3 s → replacement answers (median)", "under 5 ms",
     lambda r: r["kill_young"]["answers"]["median"], lambda v: v < 5.0, "{:.2f} ms"),
    ("kill, worker aged 31 s → replacement answers (median)", "under 5 ms",
     lambda r: r["kill"]["answers"]["median"], lambda v: v < 5.0, "{:.2f} ms"),
    ("SIGTERM → master exited (median)", "under 3 ms",
     lambda r: r["stop"]["master_exited"]["median"], lambda v: v < 3.0, "{:.2f} ms"),
    ("orphans after master SIGKILL (median)", "gone within 2 ms, port closed",
     lambda r: (r["orphans"]["survive"]["median"] if r["orphans"]["survive"] and
                not r["orphans"]["answered_trials"] and not r["orphans"]["capped"]
                else float("inf") if r["orphans"]["answered_trials"] or r["orphans"]["capped"]
                else None),
     lambda v: v <= 2.0, "{:.2f} ms"),
    ("rolling-restart errors (worst run, both modes)", "0, gated on readiness",
     lambda r: (None if r["rolling"] is None else
                max(r["rolling"][m]["max_errors"] for m in ("keepalive", "close"))),
     lambda v: v == 0, "{:.0f}"),
    ("master CPU while serving, close mode, 2 workers", "0 % (under 0.5 % of a core)",
     lambda r: r["throughput"]["2-close"]["master_cpu_pct"], lambda v: v < 0.5, "{:.2f} %"),
    ("64 workers: kill all → all back (ready)", "under 150 ms",
     lambda r: r["scale64"]["back_ms"], lambda v: v < 150.0, "{:.0f} ms"),
]


def targets(systems, results):
    clutch = results.get("clutch", {})
    lines = ["| figure | clutch target | clutch | best peer (same run) | met? |",
             "|---|---|---|---|---|"]
    for label, goal, value, ok, fmt in TARGETS:
        try:
            v = value(clutch)
        except (KeyError, TypeError):
            v = None
        best = _best(systems, results, value)
        shown = "not measured" if v is None else (
            "never (port answered or cap hit)" if v == float("inf") else fmt.format(v))
        best_text = "—" if best is None else (
            f"{best[0]} never" if best[1] == float("inf") else f"{best[0]} {fmt.format(best[1])}")
        verdict = "—" if v is None else ("met" if ok(v) else "**missed**")
        lines.append(f"| {label} | {goal} | {shown} | {best_text} | {verdict} |")
    return "\n".join(lines)
