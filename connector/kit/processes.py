"""Child processes with their own log file, and the bridge and workers of one local run.

A `Child` starts with the environment it is given and appends its stdout and stderr to a log;
it stops with SIGTERM, then SIGKILL if it does not go in time. A `Stack` is the `python -m
connector` bridge and workers of one run (one broker, topic prefix and Faust app id), each on a
free loopback port with its own log: the integration harness and the soak build on it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from connector.embedded import free_port
from connector.kit.payloads import secret_env
from connector.kit.ready import wait_http
from connector.settings import process_env

STOP_TIMEOUT = 20.0
BRIDGE_READY_TIMEOUT = 30.0
WORKER_READY_TIMEOUT = 90.0  # ~10-15 s alone; rebalancing with a crashed peer takes longer


class ChildError(RuntimeError):
    """A child that did not start, answer or stop as it should (its log tail in the message)."""


def connector_argv(command: str, *, console_script: bool = False) -> list[str]:
    """`python -m connector COMMAND`; with `console_script`, the installed `loyalty-connector`
    beside this interpreter when there is one (what a deployment runs)."""
    script = Path(sys.executable).with_name("loyalty-connector")
    if console_script and script.exists():
        return [str(script), command]
    return [sys.executable, "-m", "connector", command]


def child_env(**overrides: str) -> dict[str, str]:
    """This process's environment without its CONNECTOR_* variables, plus `overrides`: a
    child sees only the connector settings it is given."""
    env = {k: v for k, v in process_env().items() if not k.startswith("CONNECTOR_")}
    env.update(overrides)
    return env


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a live process (Linux /proc), in seconds; NaN when it cannot tell."""
    if pid is None:
        return float("nan")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if its parent dies, so no orphan survives a kill -9."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Child:
    """One child process; stdout and stderr appended to `log` (None: this process's own)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None,
        log: Path | None,
        *,
        cwd: Path | None = None,
        die_with_parent: bool = False,
    ) -> None:
        self.name, self.argv, self.log = name, list(argv), log
        self.env = None if env is None else dict(env)
        self.started = time.time()  # epoch s: start-up times are measured from here
        preexec = _die_with_parent if die_with_parent else None
        if log is None:
            self.popen = subprocess.Popen(
                self.argv, env=self.env, cwd=cwd, stdin=subprocess.DEVNULL, preexec_fn=preexec
            )
            return
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            out.write(
                f"==== start {name}: {' '.join(self.argv)} at {time.strftime('%X')}\n".encode()
            )
            out.flush()
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=preexec,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def log_text(self) -> str:
        try:
            return "" if self.log is None else self.log.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, chars: int = 4000) -> str:
        return f"--- {self.name} log ({self.log}) ---\n{self.log_text()[-chars:]}"

    def signal(self, sig: int) -> None:
        if self.alive:
            self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if it is still running after `timeout` seconds."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL (a crash: no shutdown code runs) and reap."""
        self.signal(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout: float = STOP_TIMEOUT, *, check: bool = True) -> int:
        """SIGTERM and wait; SIGKILL after `timeout`. The exit code; with `check`, ChildError
        unless it exited 0 within the timeout."""
        self.signal(signal.SIGTERM)
        code = self.wait(timeout)
        if code is None:
            self.kill()
            if check:
                raise ChildError(
                    f"{self.name} did not exit within {timeout:.0f}s of SIGTERM\n{self.log_tail()}"
                )
            return self.popen.returncode
        if check and code != 0:
            raise ChildError(f"{self.name} exited with {code} after SIGTERM\n{self.log_tail()}")
        return code


def stop_all(children: Iterable[Child], timeout: float = STOP_TIMEOUT) -> list[Child]:
    """SIGTERM every child at once, give them `timeout` seconds together, SIGKILL the rest;
    returns the ones that had to be killed."""
    children = list(children)
    for child in children:
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    killed = []
    for child in children:
        if child.wait(max(0.1, deadline - time.monotonic())) is None:
            child.kill()
            killed.append(child)
    return killed


class Bridge(Child):
    """`loyalty-connector bridge` listening on `port` (its env must say so)."""

    def __init__(
        self,
        name: str,
        env: Mapping[str, str],
        log: Path,
        port: int,
        *,
        console_script: bool = False,
    ) -> None:
        super().__init__(name, connector_argv("bridge", console_script=console_script), env, log)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"


class Worker(Child):
    """`loyalty-connector worker` with its web server on `port` and its tables in `data_dir`."""

    def __init__(
        self, name: str, env: Mapping[str, str], log: Path, port: int, data_dir: Path
    ) -> None:
        super().__init__(name, connector_argv("worker"), env, log)
        self.port, self.data_dir = port, data_dir
        self.url = f"http://127.0.0.1:{port}"


@dataclass
class Stack:
    """The bridge and workers of one local run: one broker, topic prefix and Faust app id.

    `base_env` is laid over `child_env()` with the providers' test secrets (`payloads`), loopback
    hosts, 2 partitions and text logs. Every child started is in `children` (stopped by
    `close`) and logs to `tmp/<name>.log`.
    """

    bootstrap: str
    prefix: str
    tmp: Path
    app_id: str = ""
    base_env: dict[str, str] = field(default_factory=dict)
    children: list[Child] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.app_id = self.app_id or f"{self.prefix}-app"
        env = child_env(**secret_env())
        env.update(
            CONNECTOR_BROKER_URL=self.bootstrap,
            CONNECTOR_TOPIC_PREFIX=self.prefix,
            CONNECTOR_APP_ID=self.app_id,
            CONNECTOR_PARTITIONS="2",
            CONNECTOR_LOG_FORMAT="text",
            CONNECTOR_BRIDGE_HOST="127.0.0.1",
            CONNECTOR_WEB_HOST="127.0.0.1",
            CONNECTOR_WEB_ADVERTISED_HOST="127.0.0.1",
            CONNECTOR_ACK_TIMEOUT_MS="5000",  # a loaded 2-core CI box; providers retry anyway
            PYTHONUNBUFFERED="1",
        )
        env.update(self.base_env)
        self.base_env = env

    def topic(self, name: str) -> str:
        """`raw`, `events`, `ledger`, `balances`, `tiers`, `dlq` → the prefixed topic name."""
        return {
            "raw": f"{self.prefix}.webhooks.raw",
            "dlq": f"{self.prefix}.webhooks.dlq",
        }.get(name, f"{self.prefix}.{name}")

    def env(self, **overrides: str) -> dict[str, str]:
        return {**self.base_env, **overrides}

    def start_bridge(
        self, name: str = "bridge", *, port: int | None = None, wait: bool = True, **env: str
    ) -> Bridge:
        """A bridge (on a free port unless told); with `wait`, once its /readyz answers 200."""
        port = port or free_port()
        bridge = Bridge(
            name, self.env(CONNECTOR_BRIDGE_PORT=str(port), **env), self.tmp / f"{name}.log", port
        )
        self.children.append(bridge)
        if wait:
            self.wait_ready(bridge, BRIDGE_READY_TIMEOUT)
        return bridge

    def start_worker(
        self,
        name: str = "worker",
        *,
        port: int | None = None,
        data_dir: Path | None = None,
        wait: bool = True,
        **env: str,
    ) -> Worker:
        """A worker (free port, `tmp/<name>-data` unless told); with `wait`, once ready."""
        port = port or free_port()
        data_dir = data_dir or self.tmp / f"{name}-data"
        data_dir.mkdir(parents=True, exist_ok=True)
        worker = Worker(
            name,
            self.env(CONNECTOR_WEB_PORT=str(port), CONNECTOR_DATA_DIR=str(data_dir), **env),
            self.tmp / f"{name}.log",
            port,
            data_dir,
        )
        self.children.append(worker)
        if wait:
            self.wait_ready(worker)
        return worker

    def wait_ready(self, child: Bridge | Worker, timeout: float = WORKER_READY_TIMEOUT) -> float:
        """Until the child's /readyz answers 200 (the epoch time it did); NotReady if not."""
        return wait_http(child.url + "/readyz", timeout, watch=[child])

    def logs(self, chars: int = 8000) -> str:
        return "\n".join(c.log_tail(chars) for c in self.children)

    def close(self) -> None:
        stop_all(self.children)
