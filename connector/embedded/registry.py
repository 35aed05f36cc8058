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
import time
import urllib.error
import urllib.request
from pathlib import Path

from connector.embedded import LocalServer, fetch_with_maven, fetched, settle
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
    if fetched(app):
        return app
    work = cache_dir(version)
    download = fetch_with_maven(
        work,
        ["dependency:copy", f"-Dartifact={ARTIFACT.format(version=version)}"],
        "download",
        what=f"Apicurio Registry {version}",
        missing="Maven (`mvn`) is needed once to fetch Apicurio Registry from Maven Central",
        produced="*.tar.gz",
        error=RegistryStartError,
    )
    archive = next(download.glob("*.tar.gz"))
    partial = work / "app.partial"
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(archive) as tar:
        tar.extractall(partial, filter="data")
    if not any(partial.glob("*-runner.jar")):
        raise RegistryStartError(f"{archive.name} holds no *-runner.jar")
    settle(partial, app, version)
    shutil.rmtree(download, ignore_errors=True)
    return app


class ApicurioRegistry(LocalServer):
    """One in-memory Apicurio Registry on a free loopback port."""

    log_name = "registry.log"

    def __init__(self, work_dir: Path | None = None, *, heap: str = "384m") -> None:
        super().__init__(work_dir, "apicurio-")
        self.heap = heap
        self.version = APICURIO_VERSION

    @property
    def base_url(self) -> str:
        return f"http://{self.address}"

    @property
    def url(self) -> str:
        """The Confluent-compatible API (what CONNECTOR_SCHEMA_REGISTRY_URL points at)."""
        return self.base_url + CCOMPAT_PATH

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
        started = time.monotonic()
        proc = self._spawn(
            [
                java,
                f"-Xmx{self.heap}",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",  # faster start, plenty for a test registry
                "-Djava.awt.headless=true",
                "-jar",
                str(runner),
            ],
            self.log_file,
            env=env,
            cwd=self.work_dir,
            stdin=subprocess.DEVNULL,
        )
        deadline = started + timeout
        while True:
            if proc.poll() is not None:
                code = proc.returncode
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

    def stop(self, timeout: float = 20) -> None:
        self._halt(signal.SIGTERM, timeout)
