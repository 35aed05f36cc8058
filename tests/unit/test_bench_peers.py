"""The benchmarks' peers stay buildable and their output check stays strict (no broker).

The Go bridge peers are built with `go build` (cached in ~/.cache/loyalty-connector/peers; the
first build on a clean machine fetches the modules go.sum pins from the Go module proxy). A
missing Go toolchain is a failure, not a skip: the bridge benchmark needs it.
"""

from __future__ import annotations

import os

import pytest

from benchmarks.peers import gobuild


def test_go_bridge_peers_build() -> None:
    built = gobuild.build_all()
    assert set(built) == {"benthos_bridge", "go_plain_bridge"}
    for path in built.values():
        assert path.is_file() and os.access(path, os.X_OK)
        assert gobuild.source_digest() in path.name  # a changed source builds a new binary


def test_go_peer_module_pins_the_issue_versions() -> None:
    go_mod = (gobuild.MODULE / "go.mod").read_text()
    assert "github.com/redpanda-data/benthos/v4 v4.60.0" in go_mod
    assert "github.com/twmb/franz-go v1.22.3" in go_mod
    go_sum = (gobuild.MODULE / "go.sum").read_text()
    assert "github.com/redpanda-data/benthos/v4 v4.60.0 h1:" in go_sum


def test_building_without_go_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(gobuild.GoBuildError, match="Go toolchain"):
        gobuild.build("benthos_bridge")


def test_unknown_go_peer_lists_the_valid_ones() -> None:
    with pytest.raises(gobuild.GoBuildError, match="benthos_bridge, go_plain_bridge"):
        gobuild.build("benthos")


def test_balance_check_catches_a_peer_that_did_less() -> None:
    from benchmarks import pipeline_kafka, pipeline_records

    width = len(pipeline_records.BALANCE_FIELDS)
    ours = {"gameball:default:a": ("10.00",) * width, "wix:default:b": ("5.00",) * width}
    assert pipeline_kafka.compare_balances(ours, dict(ours))["equal"]

    missing = pipeline_kafka.compare_balances(
        ours, {"gameball:default:a": ours["gameball:default:a"]}
    )
    assert not missing["equal"] and missing["missing_in_peer"] == 1

    short = dict(ours, **{"wix:default:b": ("4.00",) + ("5.00",) * (width - 1)})
    differ = pipeline_kafka.compare_balances(ours, short)
    assert not differ["equal"] and differ["differing_by_field"] == {"balance": 1}

    assert not pipeline_kafka.compare_balances({}, {})["equal"]  # nothing to compare is no pass
