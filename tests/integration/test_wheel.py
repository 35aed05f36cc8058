"""The built distribution works on its own: sdist -> wheel, installed into a fresh venv outside
the repository, then `--version`, `config`, `decode` on a packaged sample and `dev --demo --exit`
run from there, as a new user following the README would.

The packaged schemas must be the very files in `schemas/` (the source of truth), and the wheel
must carry the embedded broker's POM and the demo samples.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

from connector.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    # the sdist first, and the wheel built from it: both must carry everything
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def test_the_wheel_carries_the_schemas_samples_and_pom(dist: dict[str, Path]) -> None:
    with zipfile.ZipFile(dist["wheel"]) as whl:
        names = set(whl.namelist())
        # every schema, and the released ones under history/, the same bytes as schemas/
        sources = sorted((ROOT / "schemas").rglob("*.avsc"))
        assert any("history" in p.parts for p in sources)
        for schema in sources:
            packaged = f"connector/schemas/{schema.relative_to(ROOT / 'schemas').as_posix()}"
            assert packaged in names, packaged
            assert whl.read(packaged) == schema.read_bytes(), f"{packaged} differs from schemas/"
        assert {n for n in names if n.startswith("connector/schemas/")} == {
            f"connector/schemas/{p.relative_to(ROOT / 'schemas').as_posix()}" for p in sources
        }
        assert "connector/embedded/kafka_pom.xml" in names
        samples = sorted(
            p.relative_to(ROOT).as_posix() for p in (ROOT / "connector/samples").rglob("*.json")
        )
        assert samples and all(s in names for s in samples)
        assert "connector/py.typed" in names
        metadata = whl.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    # the ranges the suite runs on, not "anything newer than 0.11"
    assert "Requires-Dist: faust-streaming<0.16,>=0.15.3" in metadata, metadata


def test_dependency_ranges_admit_the_pinned_versions() -> None:
    from packaging.requirements import Requirement

    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, _, ver = line.partition("==")
        pins[name.strip().lower().replace("_", "-")] = ver.strip()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    for text in reqs:
        req = Requirement(text)
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (text, pins[name])


def _run(
    argv: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_wheel_installed_in_a_fresh_venv_decodes_and_runs_the_demo(
    dist: dict[str, Path], tmp_path: Path
) -> None:
    home = tmp_path / "venv"
    venv.create(home, with_pip=True)
    py = home / "bin" / "python"
    cli = home / "bin" / "loyalty-connector"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CONNECTOR_", "PYTHON", "VIRTUAL_ENV"))
    }
    wheel = dist["wheel"]
    # the Dockerfile's recipe: wheels of everything at the pinned versions, then an offline
    # install of the package from them (the image's final stage)
    wheels = tmp_path / "wheels"
    steps = [
        [
            str(py),
            "-m",
            "pip",
            "wheel",
            "-q",
            "--disable-pip-version-check",
            "-c",
            str(ROOT / "constraints.txt"),
            "--wheel-dir",
            str(wheels),
            f"{wheel}[embedded,rocksdb,fast]",
        ],
        [
            str(py),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-index",
            "--find-links",
            str(wheels),
            "loyalty-connector[embedded,rocksdb,fast]",
        ],
    ]
    for step in steps:
        proc = _run(step, tmp_path, env, 900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    # nothing imported from the repository: the package is the installed one
    where = _run([str(py), "-c", "import connector; print(connector.__file__)"], work, env, 60)
    assert str(home) in where.stdout and str(ROOT) not in where.stdout, where.stdout

    version = _run([str(cli), "--version"], work, env, 60)
    released = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert version.returncode == 0 and version.stdout.strip() == f"loyalty-connector {released}"

    sample = _run(
        [str(py), "-c", "from connector.resources import samples_dir; print(samples_dir())"],
        work,
        env,
        60,
    ).stdout.strip()
    assert sample.startswith(str(home)), sample
    decoded = _run(
        [
            str(cli),
            "decode",
            "--provider",
            "gameball",
            "--no-verify",
            f"{sample}/gameball/01_profile.json",
        ],
        work,
        env,
        60,
    )
    assert decoded.returncode == 0, decoded.stderr
    assert (
        '"provider": "GAMEBALL"' in decoded.stdout and '"customer_id": "gb-ada"' in decoded.stdout
    )

    bad = _run([str(cli), "config"], work, {**env, "CONNECTOR_PARTITIONS": "zero"}, 60)
    assert bad.returncode == 1
    assert "CONNECTOR_PARTITIONS='zero': expected an integer" in bad.stderr

    demo_env = {
        **env,
        "CONNECTOR_BRIDGE_PORT": str(free_port()),
        "CONNECTOR_WEB_PORT": str(free_port()),
    }
    demo = _run([str(cli), "dev", "--demo", "--exit"], work, demo_env, 300)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "demo: bridge answered {'200': 14}" in demo.stdout
    assert any(line.startswith("gameball:default:gb-ada") for line in demo.stdout.splitlines())
