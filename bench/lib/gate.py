"""The regression gate of `bench/run --check`: clutch's figures as ratios against one
peer measured in the same invocation, held to a baseline and a noise band.

A ratio (clutch's figure ÷ the peer's) cancels most of what a shared machine does to
absolute times: both systems are measured minutes apart, on the same load. The baseline
(bench/baseline.json) holds, for each figure, the median ratio of several gate runs and
the band: the spread of those runs' ratios (max − min, over the median) times a margin.
A figure fails when its ratio now is above baseline × (1 + band). Only a regression
fails: a ratio far below the baseline is printed as a hint to refresh it
(`--write-baseline`). Figures marked informational are printed, never failed (the
reason is beside each).

The zero-lost-connection checks (clutch's rolling restarts and chaos runs) are absolute:
they need no peer and no band.
"""

import json
import statistics
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
BASELINE = BENCH / "baseline.json"

# The peer a fresh CI machine can always install, unless baseline.json names another.
DEFAULT_PEER = "unicorn"
# What the gate runs: clutch takes part in all of it, the peer only in what the ratios need.
SCENARIOS = ("idle", "kill", "chaos", "rolling", "scale64")
PEER_SCENARIOS = ("idle", "kill", "scale64")
# The band is the measured spread times this margin, and never below the floor. The
# margin is wide because the ratios also move with the machine's load, which the
# calibration runs cannot cover (docs/BENCHMARKS.md, "The regression gate").
MARGIN = 2.5
# The floor per kind of figure: memory barely moves with the load; times, CPU time
# included, by up to 2× on two shared cores, more than quiet calibration runs show (5 at
# load 2.5 spread 26 % in 64 respawns → ready and 13 % in its CPU per respawn; a check
# right after was 30 % above that CPU median; 5 at load 10 had spread 80 %).
FLOORS = {"master_rss": 0.25}
TIME_FLOOR = 1.0


def floor(key):
    return FLOORS.get(key, TIME_FLOOR)


def _per_respawn(r):
    return r["scale64"]["back_cpu_ms"] / 64


# (key, label, value of one system's results (lower is better for all of them), None if
# gated, else why it is only printed)
FIGURES = [
    ("master_rss", "master RSS, 2 workers", lambda r: r["mem2"]["rss"], None),
    ("kill_exists", "SIGKILL a worker aged 31 s → replacement exists (median)",
     lambda r: r["kill"]["exists"]["median"],
     "a ratio of two fork latencies of a few ms, which moves 2× with the machine's load; "
     "the ready figure below contains it"),
    ("kill_ready", "SIGKILL a worker aged 31 s → replacement ready (median)",
     lambda r: r["kill"]["ready"]["median"], None),
    ("kill_young_ready", "SIGKILL a worker aged 3 s → replacement ready (median)",
     lambda r: r["kill_young"]["ready"]["median"], None),
    ("respawn64_ready", "64 workers SIGKILLed at once → all ready",
     lambda r: r["scale64"]["back_ms"], None),
    ("respawn64_cpu", "64 workers SIGKILLed at once → master CPU per respawn",
     _per_respawn, None),
]


def load():
    """The baseline, or None when there is none yet."""
    try:
        return json.loads(BASELINE.read_text())
    except FileNotFoundError:
        return None


def peer_key():
    baseline = load()
    return baseline["peer"] if baseline else DEFAULT_PEER


def _value(fn, result):
    try:
        v = fn(result)
    except (KeyError, TypeError, ZeroDivisionError):
        return None
    return v if v is not None and v > 0 else None


def ratios(results, peer):
    """{figure key: clutch ÷ peer, or None where either was not measured}."""
    clutch, other = results.get("clutch", {}), results.get(peer, {})
    out = {}
    for key, _, fn, _ in FIGURES:
        a, b = _value(fn, clutch), _value(fn, other)
        out[key] = a / b if a is not None and b is not None else None
    return out


def check(results, say):
    """Prints every gated figure (ratio now, baseline, band, verdict); returns the
    failures."""
    baseline = load()
    if baseline is None:
        return [f"no baseline ({BASELINE}): write one with bench/run --write-baseline"]
    peer = baseline["peer"]
    now = ratios(results, peer)
    failures = []
    say(f"gate: clutch ÷ {peer}, this run against {BASELINE.name} "
        f"({baseline['runs']} runs of `{baseline['command']}`, {baseline['measured']})")
    for key, label, _, informational in FIGURES:
        base = baseline["figures"].get(key)
        if base is None:
            say(f"  {label}: not in the baseline (refresh it), not checked")
            continue
        limit = base["ratio"] * (1 + base["band"])
        r = now.get(key)
        if informational:
            verdict = f"informational, not gated ({informational})"
        elif r is None:
            verdict = "FAIL (not measured)"
            failures.append(f"{label}: not measured for clutch or {peer}")
        elif r > limit:
            verdict = "FAIL"
            failures.append(f"{label}: ratio {r:.3f} above {limit:.3f} (baseline "
                            f"{base['ratio']:.3f} + {base['band']:.0%})")
        elif r < base["ratio"] / (1 + base["band"]):
            verdict = "pass (well below the baseline: refresh it?)"
        else:
            verdict = "pass"
        shown = "—" if r is None else f"{r:.3f}"
        say(f"  {label}: ratio {shown}, baseline {base['ratio']:.3f}, band "
            f"+{base['band']:.0%} (limit {limit:.3f}): {verdict}")
    return failures


def write(runs, peer, command, machine):
    """Writes the baseline from the ratios of several runs (a list of `ratios` dicts)."""
    figures = {}
    for key, label, _, _ in FIGURES:
        values = [r[key] for r in runs if r.get(key) is not None]
        if len(values) < len(runs):
            raise SystemExit(f"write-baseline: {label} not measured in every run")
        median = statistics.median(values)
        spread = (max(values) - min(values)) / median
        figures[key] = {"label": label, "ratio": round(median, 4),
                        "spread": round(spread, 4),
                        "band": round(max(floor(key), MARGIN * spread), 2),
                        "ratios": [round(v, 4) for v in values]}
    data = {
        "peer": peer,
        "command": command,
        "runs": len(runs),
        "measured": (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
                     f"{machine['host']}, {machine['nproc']} CPUs, load average "
                     f"{machine['loadavg_start'].split()[0]} at the start of the last run"),
        "band_rule": f"band = max(floor, {MARGIN} × (max ratio − min ratio) ÷ median "
                     f"ratio), the floor {FLOORS['master_rss']} for RSS and {TIME_FLOOR} "
                     "for times and CPU; a figure fails above ratio × (1 + band)",
        "figures": figures,
    }
    BASELINE.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return data
