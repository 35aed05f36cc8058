"""The Dockerfile and docker-compose.yml hold the image's invariants.

This machine has the docker client but no engine (and no compose plugin), so the image is not
built here (README: "What was not run"). What can be checked without one is: the Dockerfile is
multi-stage and installs only the wheel in its final stage, as a non-root user, with no build
tools, and a HEALTHCHECK on the command that asks /healthz; the build context carries what the
wheel is built from; compose runs that image for both processes with real settings only.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from connector.cli import build_parser

ROOT = Path(__file__).resolve().parents[1].parent


def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments), continuations joined."""
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, args = line.partition(" ")
        if instr.upper() == "FROM":
            out.append([])
        out[-1].append((instr.upper(), args.strip()))
    return out


def test_the_image_is_built_from_the_wheel_in_two_stages() -> None:
    build, final = stages()
    assert build[0][0] == "FROM" and build[0][1].endswith(" AS build")
    assert any(i == "RUN" and "python -m build --wheel" in a for i, a in build)
    assert any(i == "RUN" and "-c constraints.txt" in a and "pip wheel" in a for i, a in build)
    # the final stage: no sources copied in, only the wheels from the build stage
    copies = [a for i, a in final if i in ("COPY", "ADD")]
    assert copies == ["--from=build /dist /tmp/dist"], copies
    installs = [a for i, a in final if i == "RUN" and "pip install" in a]
    assert len(installs) == 1 and "--no-index --find-links /tmp/dist" in installs[0]
    assert "rm -rf /tmp/dist" in installs[0]
    # no compilers or build tools in the final image
    for i, a in final:
        if i == "RUN":
            assert not re.search(r"apt-get|gcc|build-essential|\bbuild\b[^-]", a), a


def test_the_image_runs_as_a_non_root_user_with_a_healthcheck() -> None:
    final = stages()[-1]
    users = [a for i, a in final if i == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert [i for i, _ in final].index("USER") > max(
        n for n, (i, _) in enumerate(final) if i == "RUN"
    ), "USER comes after the last RUN, so the processes never run as root"
    health = [a for i, a in final if i == "HEALTHCHECK"]
    assert len(health) == 1
    assert '["loyalty-connector", "healthcheck"]' in health[0]
    # and that command exists, checking /healthz of whichever process runs in the container
    args = build_parser().parse_args(["healthcheck"])
    assert args.func.__name__ == "cmd_healthcheck"
    entry = [a for i, a in final if i == "ENTRYPOINT"]
    assert entry == ['["loyalty-connector"]']
    env = " ".join(a for i, a in final if i == "ENV")
    assert "CONNECTOR_DATA_DIR=/data" in env
    assert any(i == "VOLUME" and "/data" in a for i, a in final)


def test_the_build_context_has_what_the_wheel_is_built_from() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = set()
    for instr, args in stages()[0]:
        if instr == "COPY" and not args.startswith("--from"):
            copied |= {p.rstrip("/").removeprefix("./") for p in args.split()[:-1]}
    assert copied <= allowed, copied - allowed
    assert {"pyproject.toml", "connector", "schemas", "constraints.txt"} <= copied


def test_compose_runs_the_image_for_both_processes() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name, command in (("bridge", ["bridge"]), ("worker", ["worker"])):
        svc = services[name]
        assert svc["build"] == "." and svc["image"] == "loyalty-connector:local", name
        assert svc["command"] == command
        assert svc["depends_on"]["kafka"] == {"condition": "service_healthy"}
        assert svc["environment"]["CONNECTOR_BROKER_URL"] == "kafka:9092"
    worker = services["worker"]
    assert worker["environment"]["CONNECTOR_DATA_DIR"] == "/data"
    assert any(v.endswith(":/data") for v in worker["volumes"])
    assert worker["environment"]["CONNECTOR_WEB_ADVERTISED_HOST"] == "worker"
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "healthcheck" in services["kafka"]
