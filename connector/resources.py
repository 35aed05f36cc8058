"""Runtime data shipped inside the package, found with `importlib.resources`.

* `connector/schemas/`: the Avro schemas. `schemas/` at the top of the repository is the source
  of truth; `pyproject.toml` maps it into the package (`package-dir`), so a wheel carries the
  same files, and a source checkout (editable install) reads the repository's directory.
* `connector/samples/`: the signed demo webhooks `dev --demo` replays.
* `connector/embedded/kafka_pom.xml`: the POM Maven resolves the embedded Kafka broker's jars with.

Wheels install unzipped, so each is a real directory or file; a zipped import is refused with a
clear message rather than failing later.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from connector.errors import ConfigError


def _path(resource: Traversable, what: str) -> Path:
    if isinstance(resource, Path):
        return resource
    raise ConfigError(
        f"{what} is not on the file system ({resource!r}): install the wheel unzipped"
    )


def schema_dir() -> Path:
    """The directory holding the `loyalty.*.avsc` schemas.

    In an installed wheel it is `connector/schemas/`; in a source checkout (an editable install,
    `make dev`) the repository's own `schemas/`, which the wheel is built from.
    """
    packaged = _path(files("connector") / "schemas", "the Avro schema directory")
    if packaged.is_dir():
        return packaged
    checkout = packaged.parent.parent / "schemas"
    if checkout.is_dir():
        return checkout
    raise ConfigError(f"no Avro schemas in {packaged} or {checkout}: a broken installation")


def samples_dir() -> Path:
    """The directory of signed sample webhooks, one subdirectory per provider."""
    return _path(files("connector") / "samples", "the samples directory")


def kafka_pom() -> Path:
    """The Maven POM of the embedded Kafka broker."""
    return _path(files("connector.embedded") / "kafka_pom.xml", "the embedded Kafka POM")
