"""Apicurio Registry 3 (Confluent-compatible API) from Maven Central, run with Java 17.

Used by the test suite to run registry mode against a real Schema Registry. The runnable
archive `io.apicurio:apicurio-registry-app:<version>:tar.gz:all` (a Quarkus fast-jar: a runner
jar plus `lib/`) is fetched once with `mvn dependency:copy` (artifact only: its parent POM is
not on Maven Central, so nothing transitive is resolved) and unpacked into
`~/.cache/loyalty-connector/`; later runs need no network. Storage is the default in-memory H2
database: every start is an empty registry.
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from connector.embedded import free_port, stop_process
from connector.errors import BrokerError
from connector.settings import process_env

log = logging.getLogger(__name__)

# 3.0.9: the newest 3.0.x; its `-all` archive resolves from Maven Central by coordinates alone.
APICURIO_VERSION = "3.0.9"
ARTIFACT = "io.apicurio:apicurio-registry-app:{version}:tar.gz:all"
CCOMPAT_PATH = "/apis/ccompat/v7"


class RegistryStartError(BrokerError):
    """The embedded registry could not be fetched or did not start."""


def cache_dir(version: str = APICURIO_VERSION) -> Path:
    return Path.home() / ".cache" / "loyalty-connector" / f"apicurio-registry-{version}"


def fetch_registry(version: str = APICURIO_VERSION) -> Path:
    """The unpacked app directory (with `*-runner.jar`), fetched with Maven on first use."""
    app = cache_dir(version) / "app"
    marker = app / ".complete"
    if marker.exists():
        return app
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RegistryStartError(
            "Maven (`mvn`) is needed once to fetch Apicurio Registry from Maven Central"
        )
    work = cache_dir(version)
    work.mkdir(parents=True, exist_ok=True)
    download = work / "download"
    shutil.rmtree(download, ignore_errors=True)
    log.info("fetching Apicurio Registry %s from Maven Central into %s", version, work)
    proc = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "dependency:copy",
            f"-Dartifact={ARTIFACT.format(version=version)}",
            f"-DoutputDirectory={download}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=work,
    )
    archives = list(download.glob("*.tar.gz"))
    if proc.returncode != 0 or not archives:
        tail = (proc.stdout + proc.stderr)[-2000:]
        raise RegistryStartError(f"could not fetch Apicurio Registry {version} with Maven:\n{tail}")
    partial = work / "app.partial"
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(archives[0]) as tar:
        tar.extractall(partial, filter="data")
    if not any(partial.glob("*-runner.jar")):
        raise RegistryStartError(f"{archives[0].name} holds no *-runner.jar")
    shutil.rmtree(app, ignore_errors=True)
    partial.rename(app)
    shutil.rmtree(download, ignore_errors=True)
    marker.write_text(version)
    return app


class ApicurioRegistry:
    """One in-memory Apicurio Registry on a free loopback port."""

    def __init__(self, work_dir: Path | None = None, *, heap: str = "384m") -> None:
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix="apicurio-"))
        self.port = free_port()
        self.heap = heap
        self.version = APICURIO_VERSION
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The Confluent-compatible API (what CONNECTOR_SCHEMA_REGISTRY_URL points at)."""
        return self.base_url + CCOMPAT_PATH

    @property
    def log_file(self) -> Path:
        return self.work_dir / "registry.log"

    def start(self, timeout: float = 90) -> None:
        app = fetch_registry(self.version)
        java = shutil.which("java")
        if java is None:
            raise RegistryStartError("Java 17+ (`java`) is needed to run Apicurio Registry")
        runner = next(app.glob("*-runner.jar"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **process_env(),
            "QUARKUS_HTTP_HOST": "127.0.0.1",
            "QUARKUS_HTTP_PORT": str(self.port),
            "QUARKUS_LOG_LEVEL": "WARN",
            "QUARKUS_HTTP_ACCESS_LOG_ENABLED": "false",
        }
        out = open(self.log_file, "ab")  # noqa: SIM115 - closed with the process
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [
                java,
                f"-Xmx{self.heap}",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",  # faster start, plenty for a test registry
                "-Djava.awt.headless=true",
                "-jar",
                str(runner),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.work_dir,
            env=env,
            start_new_session=True,
        )
        out.close()
        deadline = started + timeout
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise RegistryStartError(
                    f"Apicurio Registry {self.version} exited ({code}) while starting:\n"
                    f"{self.tail_log()}"
                )
            if self._answers():
                break
            if time.monotonic() > deadline:
                self.stop()
                raise RegistryStartError(
                    f"Apicurio Registry {self.version} did not answer {self.url}/subjects "
                    f"within {timeout:.0f}s:\n{self.tail_log()}"
                )
            time.sleep(0.25)
        log.info(
            "Apicurio Registry %s ready at %s in %.1fs",
            self.version,
            self.url,
            time.monotonic() - started,
        )

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/subjects", timeout=2) as resp:  # noqa: S310
                return int(resp.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def tail_log(self, n: int = 40) -> str:
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-n:])

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20) -> None:
        proc, self.proc = self.proc, None
        stop_process(proc, signal.SIGTERM, timeout)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.work_dir, ignore_errors=True)
