"""Rebuild benchmark: `loyalty-connector rebuild` over N synthetic raw records, in records/s,
next to the pipeline benchmark's worker figure.

    .venv/bin/python benchmarks/rebuild.py [--quick] [--broker host:port] [--records N]
                                           [--members M] [--runs R] [--wait-quiet 900]

The raw records are the pipeline benchmark's (`benchmarks/pipeline_records.py`
`make_raw_records`: all four providers, distinct members, amounts and revisions, signed as each
provider would, with the headers the bridge writes, `kafka_record`), produced once to the raw
topic of a fresh prefix with 8 partitions. Each run is one `python -m connector rebuild --json
--no-progress` child into fresh shadow names, the whole rebuild: read the raw topic to its end,
normalize, apply, write events, ledger, tiers, balances and the members changelog (all
acks=all), commit the shadow group, write the manifest. Records/s = raw records / the rebuild's
own seconds (start to committed offsets; process start-up is reported apart). The median run is
the figure.

Compared with `benchmarks/results/pipeline.json` (`throughput.raw_per_s`: one Faust worker over
the same kind of records; `ceiling.raw_per_s`: a plain aiokafka consume → normalize → produce
loop, the first hop only). Apache Kafka 4.1.1 runs on the same machine unless --broker is given.

Writes benchmarks/results/rebuild.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository's root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import pipeline_kafka, pipeline_records  # noqa: E402
from connector.kit import brokers, machine  # noqa: E402
from connector.kit.processes import child_env  # noqa: E402
from connector.shadow import group_offsets  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = pipeline_records.RESULTS
PARTITIONS = pipeline_records.PARTITIONS  # the pipeline benchmark's records, topics and figures


def env_for(broker: str, prefix: str, app_id: str) -> dict[str, str]:
    return child_env(
        CONNECTOR_BROKER_URL=broker,
        CONNECTOR_TOPIC_PREFIX=prefix,
        CONNECTOR_APP_ID=app_id,
        CONNECTOR_PARTITIONS=str(PARTITIONS),
        CONNECTOR_LOG_FORMAT="text",
        CONNECTOR_LOG_LEVEL="WARNING",
    )


def run_rebuild(env: dict[str, str], shadow_prefix: str, shadow_app_id: str) -> dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "connector", "rebuild", "--json", "--no-progress"]
        + ["--shadow-prefix", shadow_prefix, "--shadow-app-id", shadow_app_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        cwd=ROOT,
    )
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"rebuild failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "records": result["records"],
        "events": result["events"],
        "ledger_entries": result["ledger_entries"],
        "accounts": result["accounts"],
        "changelog_records": result["changelog_records"],
        "dead_letters": result["dead_letters"],
        "seconds": result["seconds"],
        "records_per_s": result["records_per_s"],
        "process_wall_s": round(wall, 3),
        "startup_and_exit_s": round(wall - result["seconds"], 3),
        "process_cpu_s": round(cpu, 2),
        "cpu_cores": round(cpu / wall, 2) if wall else None,
    }


def pipeline_figures() -> dict[str, Any] | None:
    path = RESULTS / "pipeline.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    tp, ce = data.get("throughput", {}), data.get("ceiling", {})
    return {
        "file": "benchmarks/results/pipeline.json",
        "when": data.get("when"),
        "raw_records": data.get("setup", {}).get("raw_records"),
        "worker_raw_per_s": tp.get("raw_per_s"),
        "worker_whole_raw_per_s": tp.get("whole_raw_per_s"),
        "ceiling_raw_per_s": ce.get("raw_per_s"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small run (smoke test)")
    parser.add_argument("--broker", help="use this Kafka (host:port) instead of starting one")
    parser.add_argument("--records", type=int, help="raw records (default 40000, quick 8000)")
    parser.add_argument("--members", type=int, help="members (default 2000, quick 1000)")
    parser.add_argument("--runs", type=int, help="rebuild runs (default 3, quick 1)")
    machine.add_wait_quiet(parser)
    parser.add_argument("--out", default=str(RESULTS / "rebuild.json"))
    args = parser.parse_args(argv)
    n = args.records or (8_000 if args.quick else 40_000)
    members = args.members or (1_000 if args.quick else 2_000)
    runs_wanted = args.runs or (1 if args.quick else 3)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    before = machine.before_run(args.wait_quiet)

    run = uuid.uuid4().hex[:6]
    prefix, app_id = f"rb{run}", f"rb-bench-{run}"
    # production's flush policy, as benchmarks/pipeline.py, so the two figures are comparable
    with brokers.kafka(args.broker) as kafka:
        broker = kafka.bootstrap
        work = Path(tempfile.mkdtemp(prefix="bench-rebuild-"))
        try:
            secrets = pipeline_records.bench_secrets(work)
            print(f"generating {n} signed webhooks for {members} members ...", flush=True)
            records, per_provider = pipeline_records.make_raw_records(n, members, run, secrets)
            pipeline_kafka.ensure(broker, prefix)
            asyncio.run(pipeline_kafka.produce_raw(broker, f"{prefix}.webhooks.raw", records))
            del records
            # a new broker creates its offsets topic on the first group request: not the rebuild's
            asyncio.run(group_offsets(broker, f"{app_id}-warmup"))
            env = env_for(broker, prefix, app_id)
            runs = []
            for i in range(runs_wanted):
                row = run_rebuild(env, f"{prefix}-rb{i}", f"{app_id}-rb{i}")
                print(
                    f"run {i + 1}: {row['records']} records in {row['seconds']:.2f} s -> "
                    f"{row['records_per_s']:.0f} records/s ({row['cpu_cores']} cores, "
                    f"{row['startup_and_exit_s']:.1f} s start-up and exit)",
                    flush=True,
                )
                runs.append(row)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    median = sorted(runs, key=lambda r: r["records_per_s"])[len(runs) // 2]
    pipeline = pipeline_figures()
    comparison: dict[str, Any] = {}
    if pipeline and pipeline.get("worker_raw_per_s"):
        comparison["rebuild_vs_worker"] = round(
            median["records_per_s"] / pipeline["worker_raw_per_s"], 2
        )
    if pipeline and pipeline.get("ceiling_raw_per_s"):
        comparison["rebuild_vs_ceiling"] = round(
            median["records_per_s"] / pipeline["ceiling_raw_per_s"], 2
        )
    setup = {
        **brokers.setup(kafka),
        **pipeline_records.records_setup(n, members, per_provider),
        "rebuild": "one `python -m connector rebuild --json --no-progress` per run, "
        "CONNECTOR_DEDUPE_MEMORY default (1000), single-object Avro",
        **machine.conditions(before, quick=args.quick),
    }
    result = {
        "benchmark": "rebuild",
        "when": machine.when(),
        "setup": setup,
        "runs": runs,
        "records_per_s": median["records_per_s"],
        "runs_records_per_s": [r["records_per_s"] for r in runs],
        "pipeline": pipeline,
        "comparison": comparison,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    line = f"rebuild: {median['records_per_s']:.0f} records/s (median of {len(runs)})"
    if comparison.get("rebuild_vs_worker"):
        line += (
            f" = {comparison['rebuild_vs_worker']}x the pipeline worker's "
            f"{pipeline['worker_raw_per_s']:.0f} raw/s"  # type: ignore[index]
        )
    print(f"{line}; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
