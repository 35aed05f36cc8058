"""`loyalty-connector replay`: send payload files to a bridge, signed as each provider would."""

from __future__ import annotations

import asyncio
import collections
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

import aiohttp

from connector.errors import ConfigError
from connector.providers import PROVIDERS
from connector.providers.base import RequestTarget
from connector.settings import Settings


def collect(paths: list[str]) -> list[Path]:
    """Payload files under `paths` (directories recursively), skipping expectations and docs."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and _is_payload(f))
        elif p.is_file():
            files.append(p)
        else:
            raise ConfigError(f"{raw}: no such file or directory")
    return files


def _is_payload(f: Path) -> bool:
    return (
        f.suffix in {".json", ".jwt", ".txt", ".body"}
        and not f.name.endswith(".expected.json")
        and not f.name.startswith((".", "invalid"))
    )


def infer_provider(path: Path, explicit: str | None) -> str:
    if explicit:
        return explicit
    for part in reversed(path.resolve().parts[:-1]):
        if part in PROVIDERS:
            return part
    raise ConfigError(f"{path}: cannot tell the provider from its folder; pass --provider")


def target_url(base: str, provider: str, tenant: str | None) -> str:
    base = base.rstrip("/")
    if "/webhooks/" in base:
        return base
    return f"{base}/webhooks/{provider}" + (f"/{tenant}" if tenant else "")


def signed_target(url: str, public_url: str | None) -> RequestTarget:
    """What the bridge will check a POST to `url` against (see `CONNECTOR_PUBLIC_URL`).

    Sent through the public URL, the delivery is signed for `url` itself; sent to the bridge
    directly while it has a public URL, it is signed as if it had come through that URL.
    """
    parts = urlsplit(url)
    if public_url and not url.startswith(public_url.rstrip("/") + "/"):
        return RequestTarget.of("POST", parts.netloc, parts.path, public_url)
    return RequestTarget.of("POST", parts.netloc, parts.path)


class Progress:
    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total, self.done, self.stream = total, 0, stream

    def step(self) -> None:
        self.done += 1
        width = 30
        filled = int(width * self.done / max(1, self.total))
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}")
        if self.done == self.total:
            self.stream.write("\n")
        self.stream.flush()


async def replay(
    files: list[Path],
    to: str,
    provider: str | None,
    tenant: str | None,
    settings: Settings,
    *,
    concurrency: int = 8,
    retries: int = 2,
    timeout: float = 10.0,
) -> collections.Counter[str]:
    """Send every file; returns a count of outcomes by HTTP status (or error name)."""
    jobs = []
    for f in files:
        key = infer_provider(f, provider)
        secrets = settings.provider(key).secrets_for(tenant) or {}
        url = target_url(to, key, tenant)
        impl = PROVIDERS[key]
        # signed for where it is sent: Open Loyalty Cloud's HMAC covers the method, host, path
        body, headers = impl.sign(
            f.read_bytes(), secrets, target=signed_target(url, settings.public_url)
        )
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = impl.content_type
        jobs.append((f, url, body, headers))
    counts: collections.Counter[str] = collections.Counter()
    progress = Progress(len(jobs))
    sem = asyncio.Semaphore(concurrency)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    failures: list[str] = []
    async with aiohttp.ClientSession(timeout=client_timeout) as session:

        async def send(f: Path, url: str, body: bytes, headers: Mapping[str, str]) -> None:
            async with sem:
                outcome = "error"
                for attempt in range(retries + 1):
                    try:
                        async with session.post(url, data=body, headers=dict(headers)) as resp:
                            text = await resp.text()
                            outcome = str(resp.status)
                            if resp.status not in (429, 503):
                                break
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        outcome, text = type(exc).__name__, str(exc)
                    await asyncio.sleep(min(2.0, 0.25 * 2**attempt))
                counts[outcome] += 1
                if not outcome.startswith("2"):
                    failures.append(f"{f}: {outcome} {text[:200]}")
                progress.step()

        await asyncio.gather(*(send(*job) for job in jobs))
    for line in failures:
        print(line, file=sys.stderr)
    return counts


def run_replay(
    paths: list[str],
    to: str,
    provider: str | None,
    tenant: str | None,
    settings: Settings,
    concurrency: int,
) -> int:
    files = collect(paths)
    if not files:
        print("no payload files found", file=sys.stderr)
        return 1
    started = time.monotonic()
    counts = asyncio.run(replay(files, to, provider, tenant, settings, concurrency=concurrency))
    elapsed = time.monotonic() - started
    summary = ", ".join(f"{status}: {n}" for status, n in sorted(counts.items()))
    print(f"sent {len(files)} webhooks in {elapsed:.2f}s ({summary})")
    return 0 if all(s.startswith("2") for s in counts) else 1
