"""The machine a benchmark measures on: how busy it was, and which source was measured.

`before_run` waits (`--wait-quiet`, `add_wait_quiet`) for a quiet machine and notes its load
and the other `connector worker` processes on it; `conditions` is what a result file's `setup`
says about that and about the commit measured (`source_state`), `when` its time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]  # the source checkout the kit is in
WORKER = "connector worker"  # in the command line of every worker process
QUIET_LOAD = 1.5  # 1-minute load average below which the machine counts as quiet


def add_wait_quiet(parser: argparse.ArgumentParser) -> None:
    """A benchmark's `--wait-quiet S` (for `before_run`)."""
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help=f"wait up to S seconds for load < {QUIET_LOAD} and no other `{WORKER}` process",
    )


def other_workers(pattern: str = WORKER) -> int:
    """Processes on this machine whose command line holds `pattern` (`ps`; `ww`: whole command
    lines, which ps otherwise cuts to the terminal's width, or 80 columns without one)."""
    out = subprocess.run(["ps", "-eo", "pid,args", "ww"], capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if pattern in line)


def wait_quiet(
    max_wait: float, load_max: float = QUIET_LOAD, *, interval: float = 30.0
) -> dict[str, Any]:
    """Until the 1-minute load is below `load_max` and no other worker runs, checked every
    `interval` seconds for at most `max_wait`: how long it waited, and the load and workers
    it ended with."""
    waited = 0.0
    while True:
        load1 = os.getloadavg()[0]
        others = other_workers()
        if (others == 0 and load1 < load_max) or waited >= max_wait:
            return {"waited_s": waited, "load1": load1, "other_workers": others}
        print(f"waiting for a quiet machine: load {load1:.2f}, {others} other workers", flush=True)
        time.sleep(interval)
        waited += interval


def source_state(root: Path = ROOT) -> dict[str, Any]:
    """The commit measured, and whether the connector's modules differed from it (read-only
    git; empty outside a checkout)."""

    def git(*a: str) -> str:
        try:
            out = subprocess.run(["git", *a], capture_output=True, text=True, cwd=root, timeout=10)
        except OSError:
            return ""
        return out.stdout.strip()

    changed = git("status", "--porcelain", "--", "connector")
    return {"commit": git("rev-parse", "HEAD"), "uncommitted_in_connector": changed.splitlines()}


def when() -> str:
    """Now, in UTC to the second: a result file's `when`."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class Before:
    """The machine as a run began: the quiet wait (if asked for), load and other workers."""

    quiet_wait: dict[str, Any] | None
    load: tuple[float, float, float]
    other_workers: int


def before_run(wait_quiet_s: float = 0.0) -> Before:
    """After waiting up to `wait_quiet_s` seconds for a quiet machine (0: not at all)."""
    quiet = wait_quiet(wait_quiet_s) if wait_quiet_s else None
    return Before(quiet, os.getloadavg(), other_workers())


def conditions(before: Before, *, quick: bool, root: Path = ROOT) -> dict[str, Any]:
    """For a result file's `setup`: the source measured, whether the run was a quick one, the
    load before and now, the other workers before and the quiet wait."""
    return {
        "source": source_state(root),
        "quick": quick,
        "load_before": [round(x, 2) for x in before.load],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "other_connector_workers_before": before.other_workers,
        "quiet_wait": before.quiet_wait,
    }
