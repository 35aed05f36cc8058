"""Where each implementation's CPU per event goes (`pipeline.py --profile`).

Two measurements of the same window, combined:

* **CPU by OS thread** (`thread_cpu`, Linux /proc/<pid>/task): librdkafka's C threads
  (`rdk:*`, Quix Streams' Kafka client), RocksDB's background threads (`rocksdb:*`) and the
  Python threads (every other thread: the event loop, Faust's consumer thread). This is exact
  and needs no sampler.
* **The Python threads' time by layer** (`layers`): py-spy samples (`py-spy record --format
  raw --nonblocking --gil`: only the thread holding the GIL) grouped by the code that ran. A
  sample belongs to the innermost frame of a known package; frames of the standard library's
  plain helpers (json, enum, dataclass `__init__`, ...) belong to their caller, so `json.dumps`
  in our code counts as ours, while the event loop (asyncio, selectors) is a layer of its own.
  Samples of start-up (any frame in importlib) are left out.

The Python threads' measured CPU is shared out in proportion to the samples: sampling shares
are robust on a busy machine where py-spy itself may fall behind, absolute sample counts are
not. The result is µs of CPU per event for each layer and each native thread group, which
add up to the implementation's CPU per event.

Why `--gil`: without it py-spy keeps every sample of a thread it reads as running, and an event
loop that blocks in `epoll_wait` thousands of times a second is often read as running while its
stack is in `select` (`--nonblocking` reads the state and the stack at different moments). On
the worker that put 53-56 µs per event on `EpollSelector.select`, where the loop's own timing
of `select` (thread CPU around each call) was 5-6 µs per event, and took the difference from
every other layer (`tests/unit/test_cpu_profile.py` holds the case). A thread blocked in a
system call has released the GIL, so `--gil` drops exactly those samples. What it also drops is
real CPU spent without the GIL (the kernel side of socket writes, a C library that releases
it): that is shared out over the layers with the rest, a few µs per event here.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# A frame's file path (as py-spy prints it, relative to its sys.path entry) by its first part.
PACKAGE_LAYERS = {
    "connector": "ours",
    "benchmarks": "ours",  # the peers' glue around our functions
    "fastavro": "ours",  # Avro for our records (compiled; its callers are ours)
    "faust": "faust+mode",
    "mode": "faust+mode",
    "aiokafka": "aiokafka",
    "quixstreams": "quixstreams",
    "confluent_kafka": "confluent_kafka",
    "rocksdict": "state store",
    "rocksdb": "state store",
    "prometheus_client": "metrics",
    "asyncio": "event loop",
    "selectors.py": "event loop",
    "uvloop": "event loop",
    "concurrent": "event loop",
    "threading.py": "threads",
    "queue.py": "threads",
}
STARTUP = "start-up"
OTHER = "other"
# Our benchmark scripts, as py-spy names a file of a script's own directory (`quix_worker.py`).
BENCH_FILES = frozenset(p.name for p in Path(__file__).resolve().parent.rglob("*.py"))


def _path_layer(path: str) -> str | None:
    parts = path.split("/")
    for part in parts:  # relative (faust/...) or absolute (/usr/lib/python3.11/...)
        layer = PACKAGE_LAYERS.get(part)
        if layer is not None:
            return layer
    # a benchmark script named from a sys.path entry inside benchmarks/ (peers/quix_worker.py)
    return "ours" if parts[-1] in BENCH_FILES else None


def layer_of(frames: list[str]) -> str:
    """The layer a sample belongs to; `frames` outermost first, each `func (path:line)`."""
    if any("importlib" in f for f in frames):
        return STARTUP
    for frame in reversed(frames):
        layer = _path_layer(frame.rpartition(" (")[2].rstrip(")").rsplit(":", 1)[0])
        if layer is not None:
            return layer
    return OTHER


def layers(raw_lines: Iterable[str]) -> Counter[str]:
    """Samples per layer from py-spy's raw format (`frame;frame;... count` per line)."""
    return read(raw_lines)[0]


def read(raw_lines: Iterable[str]) -> tuple[Counter[str], Counter[tuple[str, str]]]:
    """Samples per layer, and per (layer, innermost frame without its line number)."""
    by_layer: Counter[str] = Counter()
    by_leaf: Counter[tuple[str, str]] = Counter()
    for line in raw_lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack and count.isdigit():
            frames = stack.split(";")
            layer = layer_of(frames)
            by_layer[layer] += int(count)
            by_leaf[layer, _LINE.sub(")", frames[-1])] += int(count)
    return by_layer, by_leaf


_LINE = re.compile(r":\d+\)$")


def thread_group(comm: str) -> str:
    if comm.startswith("rdk:"):
        return "librdkafka threads"
    if comm.startswith("rocksdb:"):
        return "rocksdb threads"
    return "python threads"


def thread_cpu(pid: int | None = None) -> dict[str, float]:
    """CPU seconds so far of a live process's threads, by `thread_group` (Linux /proc)."""
    base = Path(f"/proc/{pid or 'self'}/task")
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    try:
        tasks = list(base.iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            comm = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        group = thread_group(comm)
        out[group] = out.get(group, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def thread_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds per thread group between two `thread_cpu` readings (a group that ended
    before `after` has lost its CPU to the process total: the caller's whole-process delta
    still counts it)."""
    return {g: round(after.get(g, 0.0) - before.get(g, 0.0), 3) for g in sorted(after)}


def breakdown(
    samples: Counter[str],
    threads_s: dict[str, float],
    events: int,
    leaves: Counter[tuple[str, str]] | None = None,
    top: int = 25,
) -> dict[str, Any]:
    """µs of CPU per event by Python layer (the Python threads' CPU shared out by samples)
    and by native thread group; with `leaves`, the `top` innermost frames the same way."""
    events = max(1, events)
    python_s = threads_s.get("python threads", 0.0)
    counted = {k: n for k, n in samples.items() if k != STARTUP}
    total = sum(counted.values())
    per_event: dict[str, float] = {}
    if total:
        for layer, n in sorted(counted.items(), key=lambda kv: -kv[1]):
            per_event[layer] = round(python_s * n / total / events * 1e6, 1)
    for group, secs in threads_s.items():
        if group != "python threads":
            per_event[group] = round(secs / events * 1e6, 1)
    hot = (
        [
            {
                "layer": layer,
                "frame": frame,
                "us_per_event": round(python_s * n / total / events * 1e6, 1),
            }
            for (layer, frame), n in (leaves or Counter()).most_common()
            if layer != STARTUP
        ][:top]
        if total
        else []
    )
    return {
        "us_per_event": per_event,
        "hot_frames": hot,
        "python_threads_us_per_event": round(python_s / events * 1e6, 1),
        "thread_cpu_s": threads_s,  # with the raw py-spy file: enough to compute this again
        "samples": total,
        "startup_samples": samples.get(STARTUP, 0),
    }


def py_spy() -> str:
    """The py-spy executable (the `bench` extra installs it beside this Python)."""
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if found is None:
        raise SystemExit("--profile needs py-spy: pip install -c constraints.txt -e '.[bench]'")
    return found


class Sampler:
    """`py-spy record` on one process until `stop()` (SIGINT) or the process's exit."""

    def __init__(self, pid: int, out: Path, rate: int = 100) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            [py_spy(), "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw"]
            + ["--nonblocking", "--gil", "--threads", "--output", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self, timeout: float = 30) -> tuple[Counter[str], Counter[tuple[str, str]]]:
        """`read` of what py-spy wrote; empty when it wrote nothing (e.g. no ptrace right)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        try:
            with open(self.out) as f:
                return read(f)
        except OSError:
            return Counter(), Counter()
