"""`loyalty-connector dev`: embedded broker + bridge + worker in one foreground command.

Each component runs as its own child process (as in production); Ctrl-C or SIGTERM stops them
all, children first, then the broker, and exits 0. Sample secrets for every provider are made
once under `.dev/` and printed, so `loyalty-connector replay` can sign deliveries for them.
"""

from __future__ import annotations

import argparse
import collections
import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from connector.errors import BrokerError
from connector.kit.processes import Child, connector_argv, stop_all
from connector.kit.ready import NotReady, wait_http
from connector.logs import setup_logging
from connector.providers import PROVIDERS
from connector.settings import Settings, configured_by_user, process_env

log = logging.getLogger("connector.dev")

DEV_DIR = Path(".dev")
DEV_ENV_FILE = DEV_DIR / "dev.env"
COMPONENTS: tuple[str, ...] = ("bridge", "worker")


def dev_secrets(directory: Path = DEV_DIR) -> dict[str, dict[str, str]]:
    """Sample `CONNECTOR_<KEY>_*` variables by provider, from each provider's `dev_secrets`
    (files such as Wix's key pair are made once and kept in `directory`, chmod 600)."""
    directory.mkdir(exist_ok=True)
    return {
        key: {
            f"CONNECTOR_{key.upper()}_{k.upper()}": v for k, v in p.dev_secrets(directory).items()
        }
        for key, p in PROVIDERS.items()
    }


def fill_dev_secrets(
    env: dict[str, str], samples: Mapping[str, Mapping[str, str]]
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Sample secrets for the providers `env` configures nothing for; never for the others.

    Returns (the sample variables put into `env`, the user's own variables by provider). A
    provider is the user's as soon as any of its `CONNECTOR_<PROVIDER>_*` variables or a tenants
    file table of it is set: mixing a sample key into a user's configuration (their inline key
    next to our key file) would refuse their own signed webhooks.
    """
    used: dict[str, str] = {}
    own: dict[str, list[str]] = {}
    for key, values in samples.items():
        theirs = configured_by_user(env, key)
        if theirs:
            own[key] = theirs
            continue
        env.update(values)
        used.update(values)
    return used, own


def read_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


class Supervisor:
    """Starts child processes, forwards shutdown, and reports one that dies."""

    def __init__(self) -> None:
        self.children: dict[str, Child] = {}
        self.stopping = threading.Event()

    def spawn(self, name: str, argv: list[str], env: Mapping[str, str]) -> None:
        # no log file: the children write to this terminal; they die with `dev`, even on kill -9
        self.children[name] = Child(name, argv, env, None, die_with_parent=True)

    def wait(self, poll: Callable[[], None] | None = None) -> str | None:
        """Block until asked to stop (returns None) or a child exits (returns its name)."""
        while not self.stopping.wait(0.5):
            for name, child in self.children.items():
                if not child.alive:
                    return name
            if poll:
                poll()
        return None

    def stop_all(self, timeout: float = 20) -> None:
        for child in stop_all(self.children.values(), timeout):
            log.warning("%s did not stop in time; killed it", child.name)


def run_dev(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    base_env = process_env() if env is None else dict(env)
    settings = Settings.from_env(base_env)
    setup_logging(settings.log_level, "text")
    sup = Supervisor()

    def on_signal(signum: int, frame: object) -> None:
        sup.stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    broker = None
    child_env = {**base_env}
    if settings.broker_url:
        bootstrap = settings.broker_url
        print(f"broker      : {bootstrap} (CONNECTOR_BROKER_URL)", flush=True)
    else:
        from connector.embedded.tansu import TansuBroker

        broker = TansuBroker(log_dir=DEV_DIR.resolve())
        broker.start()
        bootstrap = broker.bootstrap
        # Tansu has no idempotent producer (InitProducerId fails): plain acks=all in dev.
        child_env.setdefault("CONNECTOR_IDEMPOTENT_PRODUCER", "false")
        child_env.setdefault("CONNECTOR_TABLE_STORE", "memory")
        print(
            f"broker      : {bootstrap} (embedded Tansu, memory-only; log {broker.log_file})",
            flush=True,
        )
        log.warning(
            "embedded broker has no idempotent producer or transactions: "
            "using plain acks=all (development only)"
        )
    child_env["CONNECTOR_BROKER_URL"] = bootstrap
    # Faust is chatty at INFO; people running `dev` want the endpoints and real problems.
    child_env.setdefault("CONNECTOR_LOG_LEVEL", "WARNING")
    child_env.setdefault("CONNECTOR_LOG_FORMAT", "text")
    secrets, own = fill_dev_secrets(child_env, dev_secrets())
    # What the other commands need to reach this stack (`set -a; . .dev/dev.env; set +a`):
    # the broker (a new port each run) and, for the embedded one, no idempotent producer.
    reach: dict[str, str] = {
        k: child_env[k]
        for k in ("CONNECTOR_BROKER_URL", "CONNECTOR_IDEMPOTENT_PRODUCER")
        if k in child_env
    }
    written: dict[str, str] = {**reach, **secrets}
    DEV_ENV_FILE.write_text("".join(f"{k}={v}\n" for k, v in sorted(written.items())))
    DEV_ENV_FILE.chmod(0o600)
    code = 0
    try:
        for component in COMPONENTS:
            sup.spawn(component, connector_argv(component), child_env)
        _print_endpoints(settings, secrets, own)
        if getattr(args, "demo", False):
            demo_ok = run_demo(Settings.from_env(child_env), sup)
            if getattr(args, "exit", False):
                return 0 if demo_ok else 1
        died = sup.wait()
        if died:
            log.error("%s exited with code %s; stopping", died, sup.children[died].returncode)
            code = 1
    except BrokerError:
        code = 1
        raise
    finally:
        sup.stop_all()
        if broker is not None:
            broker.stop()
        print("stopped", flush=True)
    return code


def run_demo(settings: Settings, sup: Supervisor, timeout: float = 90) -> bool:
    """Replay the bundled samples through the bridge, then print the members table."""
    import asyncio

    from connector.inspect import latest_balances, members_table
    from connector.replay import collect, replay

    bridge = f"http://127.0.0.1:{settings.bridge_port}"
    worker = f"http://127.0.0.1:{settings.web_port}"
    try:
        for url in (f"{bridge}/readyz", f"{worker}/readyz"):
            wait_http(
                url,
                timeout,
                watch=sup.children.values(),
                cancelled=sup.stopping.is_set,
                interval=0.5,
            )
    except NotReady as exc:
        log.error("bridge or worker did not become ready; no demo (%s)", str(exc).splitlines()[0])
        return False
    samples = {
        key: collect([str(folder)])
        for key, p in PROVIDERS.items()
        if (folder := p.samples()) is not None and folder.is_dir()
    }
    print(
        f"demo: replaying {sum(len(f) for f in samples.values())} signed sample webhooks of "
        f"{len(samples)} providers ({', '.join(samples)})",
        flush=True,
    )
    counts: collections.Counter[str] = collections.Counter()
    for key, files in samples.items():
        counts += asyncio.run(replay(files, bridge, key, None, settings, concurrency=1))
    print(f"demo: bridge answered {dict(counts)}", flush=True)
    expected = set(samples)
    deadline = time.monotonic() + 60
    balances: dict[str, dict[str, object]] = {}
    previous = None
    while time.monotonic() < deadline and not sup.stopping.is_set():
        balances = asyncio.run(latest_balances(settings))
        seen = {k.split(":", 1)[0] for k in balances}
        snapshot = {k: v.get("events_applied") for k, v in balances.items()}
        if seen >= expected and snapshot == previous:
            break
        previous = snapshot
        time.sleep(1.5)
    print("\nmembers (latest on " + settings.topics.balances + "):")
    print(members_table(balances), flush=True)
    return all(k.startswith("2") for k in counts) and bool(balances)


def _print_endpoints(
    settings: Settings, secrets: Mapping[str, str], own: Mapping[str, list[str]]
) -> None:
    lines = []
    if "bridge" in COMPONENTS:
        lines.append(f"bridge      : http://127.0.0.1:{settings.bridge_port}/webhooks/<provider>")
    if "worker" in COMPONENTS:
        lines.append(
            f"worker      : http://127.0.0.1:{settings.web_port}/members/<provider>/"
            "<tenant>/<customer_id>"
        )
    if secrets:
        lines.append(f"dev secrets : {DEV_ENV_FILE} (sample values, development only):")
        lines += [f"  {k}={v}" for k, v in sorted(secrets.items())]
    for key, names in sorted(own.items()):
        lines.append(f"{key:<12}: your configuration ({', '.join(names)}), no sample secrets")
    lines.append(
        f"other shells: set -a; . {DEV_ENV_FILE}; set +a   (then e.g. loyalty-connector tail "
        "balances, members ..., forget ...)"
    )
    lines.append("Ctrl-C stops everything.")
    print("\n".join(lines), flush=True)
