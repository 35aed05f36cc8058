"""The README's commands and queries are the ones the code and tests run."""

from __future__ import annotations

from pathlib import Path

from connector.export import LEDGER_DAILY_SQL

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_duckdb_query_is_the_tested_one() -> None:
    assert LEDGER_DAILY_SQL.format(path="ledger.parquet") in README


def test_readme_shows_both_commands() -> None:
    assert "make dev" in README and "make test" in README
    ci = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
    assert "make test" in ci
