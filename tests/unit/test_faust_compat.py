"""What `connector/streams/faust_compat.py` relies on in faust-streaming is still there.

Each test names a Faust internal the worker uses (or a behaviour of Faust it works around) and
fails, on an upgrade, with what changed, so the upgrade stops in CI instead of misbehaving in
production. When one fails: read the new Faust source for that use, adapt faust_compat.py (or
drop the workaround if Faust fixed it), and only then widen FAUST_RANGE and pyproject's pin.
"""

from __future__ import annotations

import ast
import inspect
import re
import tomllib
import weakref
from contextvars import ContextVar
from importlib.metadata import version
from pathlib import Path
from typing import Any

import faust.streams
from aiokafka import AIOKafkaConsumer
from aiokafka.client import AIOKafkaClient
from faust.app.router import Router
from faust.stores.memory import Store as MemoryStore
from faust.stores.rocksdb import Store as RocksDBStore
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer, TopicPartitionGroup, TransactionManager
from faust.transport.drivers.aiokafka import Producer
from faust.types import ProducerT, StoreT
from faust.web.exceptions import ServiceUnavailable
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from connector.streams import faust_compat
from connector.streams.faust_compat import (
    FAUST_CHECKED,
    FAUST_RANGE,
    ActiveOffsetsHookRecovery,
    RecoveryTableManager,
    set_current_event,
)

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "connector"
STREAMS = PACKAGE / "streams"
AIOKAFKA_PRIVATE = {"_client"}  # what faust_compat reaches into on aiokafka's clients

CHANGED = (
    "faust-streaming changed something connector/streams/faust_compat.py relies on "
    f"(checked against {FAUST_CHECKED}, installed {version('faust-streaming')}): "
)


def source(obj: Any) -> str:
    """`obj`'s source with all whitespace removed, so line wrapping does not matter."""
    return re.sub(r"\s+", "", inspect.getsource(obj))


def params(func: Any) -> list[str]:
    return list(inspect.signature(func).parameters)


def attribute(owner: Any, name: str) -> Any:
    """`owner.name`, or a failure saying it is gone."""
    found = getattr(owner, name, None)
    assert found is not None, CHANGED + f"{getattr(owner, '__qualname__', owner)}.{name} is gone"
    return found


# -- the version range ---------------------------------------------------------------------


def test_installed_faust_streaming_is_in_the_checked_range() -> None:
    installed = version("faust-streaming")
    assert installed in SpecifierSet(FAUST_RANGE), (
        f"faust-streaming {installed} is installed; faust_compat.py was checked against "
        f"{FAUST_CHECKED} for the range {FAUST_RANGE}. Re-check every use in faust_compat.py "
        "against the installed source (this file says what each one needs), then widen "
        "FAUST_RANGE and pyproject's pin together."
    )
    assert FAUST_CHECKED in SpecifierSet(FAUST_RANGE)


def test_pyproject_pins_the_range_faust_compat_was_checked_for() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [Requirement(r) for r in project["dependencies"] if r.startswith("faust-streaming")]
    assert len(pins) == 1, "pyproject.toml must require faust-streaming exactly once"
    assert pins[0].specifier == SpecifierSet(FAUST_RANGE), (
        f"pyproject.toml requires {pins[0]}, but faust_compat.FAUST_RANGE is {FAUST_RANGE!r}: "
        "widen both together, after re-checking faust_compat.py against the new versions"
    )


# -- 1. the current event ------------------------------------------------------------------


def test_current_event_is_the_contextvar_set_current_event_writes() -> None:
    var = getattr(faust.streams, "_current_event", None)
    assert isinstance(var, ContextVar), (
        CHANGED + "faust.streams._current_event is no longer a ContextVar "
        "(set_current_event writes a weakref to the event into it)"
    )

    class FakeEvent:  # anything weak-referenceable: Faust keeps a weakref.ref of the event
        pass

    event = FakeEvent()
    token = var.set(None)
    try:
        set_current_event(event)  # type: ignore[arg-type]
        assert faust.streams.current_event() is event, (
            CHANGED + "faust.streams.current_event() no longer returns the event "
            "set_current_event stored (a weakref.ref in faust.streams._current_event)"
        )
        assert isinstance(var.get(), weakref.ref)
    finally:
        var.reset(token)


def test_the_rocksdb_store_still_picks_the_partition_from_the_current_event() -> None:
    # Why set_current_event exists: if the store stopped reading the current event's
    # partition, the batch reads would need another way to find a member's partition.
    get = source(attribute(RocksDBStore, "_get"))
    assert "event=current_event()" in get and "event.message.partition" in get, (
        CHANGED + "faust.stores.rocksdb.Store._get no longer reads the partition of "
        "current_event(); re-check Members.read (connector/streams/members.py)"
    )


# -- 2. the recovery service of a TableManager --------------------------------------------


def test_table_manager_builds_its_recovery_into_recovery_attribute() -> None:
    assert "_recovery" in vars(TableManager) and TableManager._recovery is None, (
        CHANGED + "TableManager._recovery (None until the recovery service is built) is gone"
    )
    assert isinstance(vars(TableManager)["recovery"], property), (
        CHANGED + "TableManager.recovery is no longer a property"
    )
    built = source(vars(TableManager)["recovery"].fget)
    assert "self._recovery=Recovery(self.app,self,beacon=self.beacon,loop=self.loop)" in built, (
        CHANGED + "TableManager.recovery no longer builds Recovery(app, self, beacon=, loop=) "
        "into self._recovery; RecoveryTableManager.recovery copies it"
    )
    assert "awaitself._recovery.stop()" in source(TableManager.on_stop), (
        CHANGED + "TableManager.on_stop no longer stops self._recovery (our Recovery would "
        "keep running at shutdown)"
    )
    assert params(Recovery.__init__) == ["self", "app", "tables", "kwargs"], (
        CHANGED + f"Recovery.__init__ parameters are now {params(Recovery.__init__)}"
    )
    assert issubclass(RecoveryTableManager, TableManager)


# -- 3. the step between the start offsets and reading the changelogs ----------------------


def test_build_offsets_has_the_signature_the_hook_overrides() -> None:
    build = attribute(Recovery, "_build_offsets")
    assert inspect.iscoroutinefunction(build), CHANGED + "Recovery._build_offsets is not async"
    assert params(build) == ["self", "consumer", "tps", "destination", "title"], (
        CHANGED + f"Recovery._build_offsets parameters are now {params(build)}; "
        "ActiveOffsetsHookRecovery._build_offsets overrides it"
    )
    assert params(ActiveOffsetsHookRecovery._build_offsets) == params(build)


def test_recovery_builds_active_offsets_after_highwaters_and_before_seeking() -> None:
    text = source(Recovery)
    steps = [
        'T(self._build_highwaters)(consumer,assigned_active_tps,active_highwaters,"active"),'
        "timeout=self.app.conf.broker_request_timeout,",
        'T(self._build_offsets)(consumer,assigned_active_tps,active_offsets,"active"),'
        "timeout=self.app.conf.broker_request_timeout,",
        'T(self._seek_offsets)(consumer,assigned_active_tps,active_offsets,"active"),',
    ]
    at = [text.find(step) for step in steps]
    assert -1 not in at and at == sorted(at), (
        CHANGED + "Recovery._restart_recovery no longer (1) builds the active highwaters, "
        "(2) awaits _build_offsets(consumer, active tps, active_offsets, 'active') under "
        "broker_request_timeout, (3) seeks to active_offsets, in that order; the bulk restore "
        "(ActiveOffsetsHookRecovery.after_active_offsets) runs between (2) and (3). "
        f"Found at {dict(zip(('highwaters', 'offsets', 'seek'), at, strict=True))}"
    )
    assert "active_offsets=self.active_offsets" in text
    assert "active_highwaters=self.active_highwaters" in text


def test_recovery_keeps_the_attributes_the_hook_passes_on() -> None:
    annotations = Recovery.__annotations__
    for name in ("active_highwaters", "tp_to_table", "active_offsets"):
        assert name in annotations, CHANGED + f"Recovery.{name} is gone"
    assert isinstance(vars(Recovery)["signal_recovery_start"], property), (
        CHANGED + "Recovery.signal_recovery_start (set when a rebalance restarts recovery) "
        "is no longer a property"
    )
    init = source(Recovery.__init__)
    for name in ("self.tp_to_table={}", "self.active_highwaters=Counter()"):
        assert name in init, CHANGED + f"Recovery.__init__ no longer sets {name}"


# -- 4. the transaction that commits a source partition ------------------------------------


def test_transactional_id_of_a_source_partition_is_the_one_commit_uses() -> None:
    id_format = attribute(TransactionManager, "transactional_id_format")
    assert id_format == "{group_id}-{tpg.group}-{tpg.partition}", (
        CHANGED + f"TransactionManager.transactional_id_format is now {id_format!r}"
    )
    assert TopicPartitionGroup._fields == ("topic", "partition", "group")
    commit = source(TransactionManager.commit)
    for part in (
        "group_id=self.app.conf.id",
        "group=self.app.assignor.group_for_topic(tp.topic)",
        'transactional_id=f"{group_id}-{group}-{tp.partition}"',
    ):
        assert part in commit, (
            CHANGED + f"TransactionManager.commit no longer builds the id as {part!r}; "
            "source_transactional_id must name the transaction commit uses for the source "
            "partition's offsets"
        )


def test_producer_send_takes_the_keywords_outputs_pass() -> None:
    expected = ["self", "topic", "key", "value", "partition", "timestamp", "headers"]
    for cls in (ProducerT, Producer):
        sig = inspect.signature(cls.send)
        assert list(sig.parameters)[:7] == expected, (
            CHANGED + f"{cls.__qualname__}.send parameters are now {list(sig.parameters)}"
        )
        tid = sig.parameters.get("transactional_id")
        assert tid is not None and tid.kind is inspect.Parameter.KEYWORD_ONLY, (
            CHANGED + f"{cls.__qualname__}.send lost its keyword-only transactional_id"
        )


def test_the_producer_sends_through_its_own_aiokafka_producer_attribute() -> None:
    """Use 8: `aiokafka_producer(app)` is `app.producer._producer`, the object `send` uses."""
    start, send = source(Producer.on_start), source(Producer.send)
    assert "self._producer=self._new_producer()" in start, (
        CHANGED + "Producer.on_start no longer keeps its AIOKafkaProducer in self._producer"
    )
    assert "transaction_producer=self._ensure_producer()" in send, (
        CHANGED + "Producer.send no longer starts from self._ensure_producer()"
    )
    assert "returnself._producer" in source(Producer._ensure_producer), (
        CHANGED + "Producer._ensure_producer no longer returns self._producer"
    )


def test_aiokafka_producer_builds_and_sends_record_batches() -> None:
    """`OutputBatch` (connector/streams/outputs.py): aiokafka's public batch API."""
    from aiokafka import AIOKafkaProducer

    assert params(AIOKafkaProducer.create_batch) == ["self"], CHANGED + "create_batch changed"
    assert params(AIOKafkaProducer.send_batch) == ["self", "batch", "topic", "partition"], (
        CHANGED + "send_batch changed"
    )


# -- public APIs used instead of internals: their shape --------------------------------------


def test_stores_apply_changelog_batch_as_the_batch_writes_call_it() -> None:
    for cls in (StoreT, RocksDBStore, MemoryStore):
        assert params(cls.apply_changelog_batch) == ["self", "batch", "to_key", "to_value"], (
            CHANGED + f"{cls.__qualname__}.apply_changelog_batch parameters are now "
            f"{params(cls.apply_changelog_batch)} (connector/streams/changelog.py)"
        )


def test_the_router_raises_faust_web_service_unavailable() -> None:
    assert "raiseServiceUnavailable()" in source(Router.route_req)
    assert inspect.getmodule(Router).ServiceUnavailable is ServiceUnavailable  # type: ignore[union-attr]


# -- a Faust bug we work around (recovery.SeekBeforeResumeRecovery) ------------------------


def test_recovery_completion_still_resumes_before_seeking_and_resumes_the_flow() -> None:
    done = source(Recovery.on_recovery_completed)
    resume = done.find("consumer.resume_partitions(")
    seek = done.find("consumer.perform_seek()")
    flow = done.find("consumer.resume_flow()")
    assert -1 not in (seek, flow) and flow > seek, (
        CHANGED + "Recovery.on_recovery_completed no longer resumes the consumer flow after "
        "seeking; SeekBeforeResumeRecovery stops the flow and relies on Faust resuming it"
    )
    assert -1 < resume < seek, (
        "Recovery.on_recovery_completed now seeks before resuming the stream partitions: "
        "Faust fixed the skipped-records bug (docs/upstream-patches.md, patch 1); "
        "SeekBeforeResumeRecovery may go"
    )
    assert inspect.iscoroutinefunction(Consumer.perform_seek)


def test_transaction_manager_still_sends_in_the_destination_partitions_transaction() -> None:
    send = source(TransactionManager.send)
    assert "group=transactional_id=None" in send and "transactional_id=f" in send, (
        "TransactionManager.send no longer ignores its transactional_id and routes by the "
        "destination partition: Faust may have fixed docs/upstream-patches.md patch 2; check "
        "with its repro_eos.py, then Outputs.send may use Topic.send again under exactly_once"
    )


# -- the boundary: no other module of connector/streams touches Faust internals ------------


def _faust_private_names() -> set[str]:
    from faust import App, Stream, Table

    classes = (
        App,
        Stream,
        Table,
        Recovery,
        TableManager,
        RocksDBStore,
        MemoryStore,
        Consumer,
        TransactionManager,
        Producer,
    )
    names = {n for cls in classes for n in dir(cls) if n.startswith("_")}
    return {n for n in names if not (n.startswith("__") and n.endswith("__"))}


def test_only_faust_compat_uses_faust_internals() -> None:
    private = _faust_private_names()
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "faust_compat.py":
            continue
        # Faust's private names are checked where Faust is used (connector/streams/, it has
        # names common enough to collide elsewhere); aiokafka's client attribute everywhere
        names = private | AIOKAFKA_PRIVATE if path.parent == STREAMS else AIOKAFKA_PRIVATE
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in {
                "faust",
                "mode",
                "aiokafka",
            }:
                found += [
                    f"{path.relative_to(PACKAGE)}:{node.lineno} imports {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_")
                ]
            if isinstance(node, ast.Attribute) and node.attr in names:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} uses .{node.attr}")
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in names:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} overrides {node.name}")
    assert not found, (
        "Faust or aiokafka internals outside connector/streams/faust_compat.py (move them "
        "there, with the reason and the version checked, and a check in this file): "
        + "; ".join(found)
    )


def test_faust_compat_says_what_it_was_checked_against() -> None:
    doc = faust_compat.__doc__ or ""
    assert FAUST_CHECKED in doc


def test_aiokafka_consumer_refreshes_metadata_through_its_client() -> None:
    """Use 5: `partitions_of` awaits `consumer._client.force_metadata_update()`."""
    init = source(AIOKafkaConsumer.__init__)
    assert "self._client=AIOKafkaClient(" in init, CHANGED + "AIOKafkaConsumer._client is gone"
    refresh = attribute(AIOKafkaClient, "force_metadata_update")
    assert params(refresh) == ["self"], CHANGED + f"force_metadata_update{params(refresh)}"
    assert version("aiokafka") == faust_compat.AIOKAFKA_CHECKED or version("aiokafka").startswith(
        "0.14."
    ), CHANGED + f"aiokafka {version('aiokafka')} (checked {faust_compat.AIOKAFKA_CHECKED})"


def test_faust_still_hard_codes_the_worker_fetch_wait_and_aiokafka_reads_it_per_request() -> None:
    """Use 6: `set_fetch_max_wait` sets the started consumer's `_fetcher._fetch_max_wait_ms`."""
    from aiokafka.consumer.fetcher import Fetcher
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    create = source(AIOKafkaConsumerThread._create_worker_consumer)
    assert "fetch_max_wait_ms=1500" in create, (
        CHANGED + "the worker consumer's fetch_max_wait_ms is no longer Faust's 1500 literal: "
        "check whether a setting now exists and the override is still needed"
    )
    assert "self._fetch_max_wait_ms=fetch_max_wait_ms" in source(Fetcher.__init__), (
        CHANGED + "aiokafka's Fetcher no longer keeps _fetch_max_wait_ms"
    )
    assert "self._fetch_max_wait_ms," in source(Fetcher._get_actions_per_node), (
        CHANGED + "aiokafka no longer reads _fetch_max_wait_ms when it builds a fetch request"
    )
    assert "_ensure_consumer" in dir(AIOKafkaConsumerThread), CHANGED + "_ensure_consumer is gone"
    assert "self._fetcher=Fetcher(" in source(
        AIOKafkaConsumer._create_fetcher
        if hasattr(AIOKafkaConsumer, "_create_fetcher")
        else AIOKafkaConsumer.start
    ), CHANGED + "AIOKafkaConsumer no longer keeps its Fetcher in _fetcher"


def test_the_consumer_still_waits_for_each_message_with_wait_first() -> None:
    """Use 7: `install_fast_wait_first` replaces the `wait_first` `_drain_messages` looks up."""
    from mode.services import Service, WaitResults

    drain = source(Consumer._drain_messages)
    assert "awaitself.wait_first(callback(message),self.suspend_flow.wait())" in drain, (
        CHANGED + "Consumer._drain_messages no longer awaits "
        "self.wait_first(callback(message), self.suspend_flow.wait()) per message: the fast "
        "path in install_fast_wait_first no longer applies (or no longer fits)"
    )
    assert params(Service.wait_first) == ["self", "coros", "timeout"], (
        CHANGED + f"Service.wait_first{params(Service.wait_first)}"
    )
    assert WaitResults._fields == ("done", "results", "stopped"), (
        CHANGED + f"WaitResults{WaitResults._fields}"
    )
    assert "suspend_flow" in source(Consumer.__init__), CHANGED + "Consumer.suspend_flow is gone"
