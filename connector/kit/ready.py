"""Waiting until an HTTP endpoint (a child's /readyz) answers 200, or saying why it did not."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from typing import Protocol

# Our endpoints are on the loopback: never through a proxy named by the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class NotReady(RuntimeError):
    """An endpoint that did not answer 200 in time, or whose process exited first."""


class Watched(Protocol):
    """A process to give up on when it exits (`processes.Child`)."""

    name: str

    @property
    def alive(self) -> bool: ...

    @property
    def returncode(self) -> int | None: ...

    def log_tail(self, chars: int = ...) -> str: ...


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """(status, body) of a GET; (0, b"") when nothing answered."""
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:  # refused, reset, timed out (URLError is an OSError)
        return 0, b""


def wait_http(
    url: str,
    timeout: float,
    *,
    watch: Iterable[Watched] = (),
    cancelled: Callable[[], bool] | None = None,
    interval: float = 0.25,
    request_timeout: float = 2.0,
) -> float:
    """Block until GET `url` answers 200; the epoch time it first did.

    Polled every `interval` seconds, each GET given up after `request_timeout`. NotReady after
    `timeout` seconds, as soon as a `watch`ed process exits (with its log tail), or once
    `cancelled()` is true.
    """
    watched = list(watch)
    deadline = time.monotonic() + timeout
    while True:
        if cancelled is not None and cancelled():
            raise NotReady(f"stopped waiting for {url}")
        status, _ = http_get(url, request_timeout)
        if status == 200:
            return time.time()
        for child in watched:
            if not child.alive:
                raise NotReady(
                    f"{child.name} exited ({child.returncode}) before {url} answered 200\n"
                    f"{child.log_tail()}"
                )
        if time.monotonic() > deadline:
            names = ", ".join(c.name for c in watched)
            raise NotReady(
                f"{names + ': ' if names else ''}{url} did not answer 200 within {timeout:.0f}s "
                f"(last: {status or 'no answer'})\n" + "\n".join(c.log_tail() for c in watched)
            )
        time.sleep(interval)
