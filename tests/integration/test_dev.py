"""`loyalty-connector dev`: embedded broker + bridge + worker, a correct demo, a clean Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from connector.embedded import free_port
from connector.kit.processes import child_env


def _env() -> dict[str, str]:
    return child_env(CONNECTOR_BRIDGE_PORT=str(free_port()), CONNECTOR_WEB_PORT=str(free_port()))


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_dev_demo_prints_the_right_members_table(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "connector", "dev", "--demo", "--exit"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert "embedded Tansu" in out
    assert "demo: bridge answered {'200': 14}" in out
    rows = {
        line.split()[0]: line.split()
        for line in out.splitlines()
        if line.startswith(("gameball:", "open_loyalty:", "voucherify:", "wix:"))
    }
    # member, balance, computed, pending, earned, redeemed, expired, adjusted, drift, tier
    assert rows["gameball:default:gb-ada"][1:10] == [
        "150",
        "150",
        "0",
        "150",
        "0",
        "0",
        "0",
        "0",
        "Gold",
    ]
    ol = "open_loyalty:default:5b1c7e52-8f3a-4a61-9d0e-2c4b6a8e0f13"
    assert rows[ol][1:10] == ["70", "70", "0", "100", "30", "0", "0", "0", "Gold"]
    assert rows["voucherify:default:cust_DemoAlan0001"][1:10] == [
        "25",
        "25",
        "0",
        "0",
        "15",
        "0",
        "40",
        "0",
        "Silver",
    ]
    wix = "wix:demo-site:c0ffee00-1d2e-4f3a-8b9c-0d1e2f3a4b5c"
    assert rows[wix][1:9] == ["80", "80", "0", "100", "20", "0", "0", "0"]
    # the points account: the Voucherify card's loyalty campaign, `default` for the others
    assert rows["voucherify:default:cust_DemoAlan0001"][10] == "camp_AQZ1GLRlbGaC2dETd31VbJQ9"
    assert rows["gameball:default:gb-ada"][10] == rows[ol][10] == rows[wix][10] == "default"


def test_dev_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector", "dev"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen.append(line)
        if "Ctrl-C stops everything" in line:
            break
    else:
        proc.kill()
        raise AssertionError("dev did not start:\n" + "".join(seen))
    time.sleep(3)
    children = _children(proc.pid)
    assert len(children) >= 3, children  # broker, bridge, worker
    proc.send_signal(signal.SIGINT)
    try:
        rest, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 0, "".join(seen) + rest
    assert "stopped" in rest
    time.sleep(0.5)
    assert [p for p in children if _alive(p)] == []  # no orphans
