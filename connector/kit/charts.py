"""PNG charts with matplotlib's Agg backend (no display), imported only when a chart is drawn.

matplotlib comes with the `dev` extra only: `pyplot()` raises ImportError without it; a caller
that can do without its chart asks `available()` first.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def available() -> bool:
    """Whether matplotlib is installed (without importing it)."""
    return importlib.util.find_spec("matplotlib") is not None


def pyplot() -> Any:
    """`matplotlib.pyplot` on the Agg backend (ImportError without matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def figure(
    path: Path, nrows: int = 1, ncols: int = 1, *, dpi: int = 110, **subplots: Any
) -> Iterator[tuple[Any, Any]]:
    """`(fig, axes)` of `plt.subplots(nrows, ncols, **subplots)`; on leaving the block, laid
    out tight and written to `path` (its folder made), then closed, also when the block fails
    (nothing is written then)."""
    plt = pyplot()
    fig, axes = plt.subplots(nrows, ncols, **subplots)
    try:
        yield fig, axes
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)


def grid(*axes: Any) -> None:
    """The faint grid every chart of ours has."""
    for ax in axes:
        ax.grid(True, alpha=0.3)
