"""Building the Go bridge peers (benchmarks/peers/benthos_bridge) into a cache directory.

The binaries are named after a digest of the module's sources (go.mod, go.sum, *.go), so an
unchanged module is built once per machine; Go's own build and module caches make a rebuild
after a change quick. Modules come from the Go module proxy (GOPROXY's default) at the exact
versions go.sum pins.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

MODULE = Path(__file__).resolve().parent / "benthos_bridge"
# name -> package inside the module
PACKAGES = {"benthos_bridge": ".", "go_plain_bridge": "./plain"}


class GoBuildError(RuntimeError):
    pass


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "loyalty-connector" / "peers"


def source_digest() -> str:
    h = hashlib.sha256()
    for path in sorted(MODULE.rglob("*")):
        if path.is_file() and (path.suffix == ".go" or path.name in ("go.mod", "go.sum")):
            h.update(str(path.relative_to(MODULE)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def build(name: str, *, timeout: float = 900) -> Path:
    """The binary of peer `name` (a PACKAGES key), built first if the cache lacks it."""
    if name not in PACKAGES:
        raise GoBuildError(f"unknown Go peer {name!r}; valid: {', '.join(sorted(PACKAGES))}")
    go = shutil.which("go")
    if go is None:
        raise GoBuildError(
            "the Go toolchain (`go`) is not on PATH; the bridge peers need Go >= 1.26 "
            "(install it, e.g. `apt-get install golang`)"
        )
    out = cache_dir() / f"{name}-{source_digest()}"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    env = dict(os.environ)
    env.setdefault("CGO_ENABLED", "0")
    try:
        proc = subprocess.run(
            [go, "build", "-trimpath", "-o", str(tmp), PACKAGES[name]],
            cwd=MODULE,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise GoBuildError(f"go build of {name} took longer than {timeout:.0f} s") from exc
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise GoBuildError(f"go build of {name} failed in {MODULE}:\n{proc.stderr[-4000:]}")
    tmp.replace(out)  # atomic: a concurrent build of the same sources wins either way
    return out


def build_all() -> dict[str, Path]:
    return {name: build(name) for name in PACKAGES}
