"""The support kit (`connector.kit`): what `dev`, the tests and the benchmarks rely on it for."""

from __future__ import annotations

import http.server
import math
import os
import re
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.embedded import LocalServer, fetch_with_maven, fetched, settle
from connector.embedded.kafka import PRODUCTION_FLUSH, KafkaBroker
from connector.errors import BrokerError, VerificationError
from connector.kit import brokers, charts, machine, payloads
from connector.kit.processes import Child, ChildError, child_env, cpu_seconds, stop_all
from connector.kit.ready import NotReady, http_get, wait_http
from connector.providers import PROVIDERS, DecodeContext
from connector.providers.open_loyalty import DEFAULT_SIGN_TARGET

AT = "2025-03-01T12:00:00Z"


def properties(broker: KafkaBroker) -> dict[str, str]:
    lines = broker._write_config().read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def test_broker_properties_are_set_added_or_left_to_kafkas_default(tmp_path: Path) -> None:
    plain = properties(KafkaBroker(tmp_path / "plain"))
    assert plain["log.flush.interval.messages"] == "1"  # the tests' broker fsyncs every message
    tuned = KafkaBroker(
        tmp_path / "tuned",
        properties={**PRODUCTION_FLUSH, "num.partitions": "8", "log.retention.ms": "60000"},
    )
    got = properties(tuned)
    assert "log.flush.interval.messages" not in got
    assert got["num.partitions"] == "8" and got["log.retention.ms"] == "60000"
    assert set(plain) - set(got) == {"log.flush.interval.messages"}
    assert set(got) - set(plain) == {"log.retention.ms"}
    assert got["listeners"] == f"PLAINTEXT://127.0.0.1:{tuned.port},CONTROLLER://127.0.0.1:" + str(
        tuned.controller_port
    )


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


class Exits(LocalServer):
    """A "server" that prints a line and exits, like a broker with a bad configuration."""

    def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._spawn(python("print('bad listener'); raise SystemExit(1)"), self.log_file)
        self._wait_for_kafka(30, "the test server did not start")


def test_a_local_server_that_exits_while_starting_fails_fast_with_its_log(tmp_path: Path) -> None:
    server = Exits(tmp_path / "server", "unused-")
    started = time.monotonic()
    with pytest.raises(BrokerError, match="the test server did not start: .*exited") as err:
        server.start()
    assert time.monotonic() - started < 20
    assert "bad listener" in str(err.value)  # the log tail comes with the error
    assert server.proc is None and not server.running
    server.cleanup()
    assert not server.work_dir.exists()


def test_a_maven_fetch_needs_maven_and_is_settled_once_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(BrokerError, match="^install Maven$"):
        fetch_with_maven(
            tmp_path,
            ["dependency:copy"],
            "out",
            what="x",
            missing="install Maven",
            produced="*.jar",
        )
    folder, partial = tmp_path / "libs", tmp_path / "libs.partial"
    (folder / "old").mkdir(parents=True)
    partial.mkdir()
    (partial / "a.jar").write_text("jar")
    assert not fetched(folder)
    assert settle(partial, folder, "1.2.3") == folder
    assert fetched(folder) and not partial.exists() and not (folder / "old").exists()
    assert (folder / "a.jar").read_text() == "jar"


def wait_for_line(child: Child, text: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while text not in child.log_text():
        assert time.monotonic() < deadline, child.log_tail()
        time.sleep(0.05)


def test_a_child_logs_to_its_file_and_a_bad_exit_on_sigterm_is_an_error(tmp_path: Path) -> None:
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))\n"
        "print('u' + 'p', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = Child("exits-3", python(code), child_env(), tmp_path / "logs" / "c.log")
    wait_for_line(child, "up\n")
    assert child.alive and child.cpu_seconds() >= 0
    with pytest.raises(ChildError, match="exits-3 exited with 3 after SIGTERM") as err:
        child.stop(10)
    assert "up\n" in str(err.value)  # the log tail comes with the error
    assert child.log_text().startswith("==== start exits-3:")


def test_a_child_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('u' + 'p', flush=True)\n"
        "time.sleep(60)\n"
    )
    stubborn = Child("stubborn", python(code), None, tmp_path / "s.log")
    polite = Child(
        "polite",
        python("import time; print('u' + 'p', flush=True); time.sleep(60)"),
        None,
        tmp_path / "p.log",
    )
    wait_for_line(stubborn, "up\n")
    wait_for_line(polite, "up\n")
    started = time.monotonic()
    assert stop_all([stubborn, polite], timeout=1) == [stubborn]
    assert time.monotonic() - started < 10
    assert not stubborn.alive and not polite.alive
    assert stubborn.returncode == -9 and polite.returncode == -15
    again = Child("stubborn-2", python(code), None, tmp_path / "s2.log")
    wait_for_line(again, "up\n")
    assert again.stop(0.5, check=False) == -9


def test_child_env_drops_the_callers_connector_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTOR_GAMEBALL_SECRET_KEY", "the-callers")
    env = child_env(CONNECTOR_PARTITIONS="4")
    assert "CONNECTOR_GAMEBALL_SECRET_KEY" not in env
    assert env["CONNECTOR_PARTITIONS"] == "4" and env["PATH"] == os.environ["PATH"]


def test_cpu_seconds_of_this_process_and_of_none() -> None:
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    assert cpu_seconds(os.getpid()) > 0
    assert math.isnan(cpu_seconds(None))


@pytest.fixture
def server() -> Iterator[tuple[str, list[int]]]:
    """A loopback HTTP server answering each GET with the next status of its list (then 200)."""
    statuses: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            status = statuses.pop(0) if statuses else 200
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"ok" if status == 200 else b"not yet")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", statuses
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_wait_http_returns_once_the_endpoint_answers_200(server: tuple[str, list[int]]) -> None:
    url, statuses = server
    statuses += [503, 503]
    before = time.time()
    assert wait_http(url + "/readyz", 10, interval=0.01) >= before
    assert statuses == []
    assert http_get(url + "/x") == (200, b"ok")


def test_wait_http_gives_up_when_the_child_exits_with_its_log(tmp_path: Path) -> None:
    child = Child(
        "dies",
        python("print('bad config: CONNECTOR_X'); raise SystemExit(2)"),
        None,
        tmp_path / "d.log",
    )
    with pytest.raises(NotReady, match=r"dies exited \(2\)") as err:
        wait_http("http://127.0.0.1:9/readyz", 30, watch=[child], interval=0.05)
    assert "bad config: CONNECTOR_X" in str(err.value)


def test_wait_http_gives_up_each_get_after_its_request_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/readyz"
        started = time.monotonic()
        with pytest.raises(NotReady, match="last: no answer"):
            wait_http(url, 0.3, interval=0.01, request_timeout=0.1)
        assert time.monotonic() - started < 1.5  # not the default 2 s per GET


def test_wait_http_times_out_or_is_cancelled(server: tuple[str, list[int]]) -> None:
    url, statuses = server
    statuses += [503] * 1000
    with pytest.raises(NotReady, match="did not answer 200 within 0s .last: 503"):
        wait_http(url, 0.2, interval=0.05)
    with pytest.raises(NotReady, match="stopped waiting"):
        wait_http(url, 10, cancelled=lambda: True)


def test_other_workers_are_counted_by_their_command_line(tmp_path: Path) -> None:
    marker = f"kit-test-worker-{os.getpid()}"
    assert machine.other_workers(marker) == 0
    child = Child(
        "marked", [*python("import time; time.sleep(60)"), marker], None, tmp_path / "m.log"
    )
    try:
        deadline = time.monotonic() + 10
        while machine.other_workers(marker) != 1:
            assert time.monotonic() < deadline, child.log_tail()
            time.sleep(0.05)
    finally:
        child.stop(5, check=False)
    assert machine.other_workers(marker) == 0


def test_wait_quiet_waits_at_most_its_limit(capsys: pytest.CaptureFixture[str]) -> None:
    assert machine.wait_quiet(0)["waited_s"] == 0.0
    never_quiet = machine.wait_quiet(0.2, load_max=-1, interval=0.1)
    assert never_quiet["waited_s"] == pytest.approx(0.2)
    assert set(never_quiet) == {"waited_s", "load1", "other_workers"}
    assert "waiting for a quiet machine" in capsys.readouterr().out


def test_a_result_says_which_source_it_measured_and_how_busy_the_machine_was(
    tmp_path: Path,
) -> None:
    assert re.fullmatch(r"[0-9a-f]{40}", machine.source_state()["commit"])
    outside = machine.source_state(tmp_path)  # no checkout: nothing to tell
    assert outside == {"commit": "", "uncommitted_in_connector": []}
    before = machine.before_run()
    assert before.quiet_wait is None and len(before.load) == 3
    got = machine.conditions(before, quick=True, root=tmp_path)
    assert list(got) == [
        "source",
        "quick",
        "load_before",
        "load_after",
        "other_connector_workers_before",
        "quiet_wait",
    ]
    assert got["quick"] is True and got["quiet_wait"] is None
    assert got["other_connector_workers_before"] == before.other_workers


def samples() -> dict[str, Any]:
    return {
        "gameball": payloads.gb_profile(
            "gb-1", AT, activated=150, pending=0, tier="Gold", tier_order=3
        ),
        "open_loyalty": payloads.ol_points_transfer("ol-1", "t-1", 50, AT),
        "voucherify": payloads.vf_points_added(
            "vf-1", "evt_1", "vtx_1", "POINTS_ADDITION", 5, 5, AT
        ),
        "wix": payloads.wix_account(
            "wix.loyalty.v1.account_points_updated",
            "site-1",
            "c-1",
            "e-1",
            AT,
            revision=1,
            balance=10,
        ),
    }


@pytest.mark.parametrize("provider", sorted(samples()))
def test_signed_payloads_verify_with_the_test_secrets_only(provider: str) -> None:
    p = PROVIDERS[provider]
    d = payloads.sign(provider, samples()[provider], "t1")
    assert d.path == f"/webhooks/{provider}/t1"
    # Open Loyalty Cloud signs the request line: `sign` signs for DEFAULT_SIGN_TARGET
    p.verify(d.body, d.headers, payloads.secrets()[provider], DEFAULT_SIGN_TARGET)
    assert [e.member_key.split(":")[0] for e in p.decode(d.body, d.headers, DecodeContext())]
    forged = payloads.sign(provider, samples()[provider], secrets=payloads.wrong_secrets(provider))
    with pytest.raises(VerificationError):
        p.verify(forged.body, forged.headers, payloads.secrets()[provider], DEFAULT_SIGN_TARGET)
    env = payloads.secret_env()
    for name, value in payloads.secrets()[provider].items():
        assert env[f"CONNECTOR_{provider.upper()}_{name.upper()}"] == value


def test_a_chart_is_written_and_closed_and_a_failed_one_is_not_written(tmp_path: Path) -> None:
    plt = charts.pyplot()
    with charts.figure(tmp_path / "out" / "a.png", 1, 2, figsize=(4, 2)) as (fig, axes):
        axes[0].plot([0, 1], [1, 2])
        charts.grid(*axes)
    assert (tmp_path / "out" / "a.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError), charts.figure(tmp_path / "b.png") as (fig, ax):
        raise ValueError("no data")
    assert not (tmp_path / "b.png").exists()
    assert plt.get_fignums() == []


def test_a_benchmark_given_a_broker_address_starts_none() -> None:
    with brokers.kafka("127.0.0.1:9") as kafka:
        assert (kafka.bootstrap, kafka.local, kafka.pid) == ("127.0.0.1:9", None, None)
        assert brokers.setup(kafka)["kafka"] == "external broker 127.0.0.1:9"
