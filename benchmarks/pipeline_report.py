"""The pipeline benchmark's report: quantiles, the chart and the verdicts
(benchmarks/pipeline.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.pipeline_records import (
    PEER_LABELS,
    TARGET_P99_MS,
    TARGET_RECOVERY_PER_S,
    TARGET_SHARE_OF_CEILING,
)
from connector.kit import charts


def count(items: Any) -> dict[str, int]:
    """How often each item occurs."""
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return out


def quantiles(xs: list[float], n: int) -> list[float]:
    """The `n + 1` quantiles 0, 1/n, ..., 1 of `xs` (seconds), in ms."""
    s = sorted(xs)
    if not s:
        return []
    return [round(s[min(len(s) - 1, int(i / n * len(s)))] * 1000, 2) for i in range(n + 1)]


def by_second(points: list[tuple[float, float]], t0: float) -> list[list[float]]:
    """The values of `(at, value)` points, by whole second since `t0`."""
    out: list[list[float]] = []
    for at, value in points:
        i = max(0, int(at - t0))
        while len(out) <= i:
            out.append([])
        out[i].append(value)
    return out


def pct(xs: list[float], p: float) -> float:
    """The `p` quantile of `xs` (seconds), in ms; NaN for none."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(p * len(s)))] * 1000, 2)


def chart(result: dict[str, Any], path: Path) -> None:
    """The result as a PNG at `path`: throughput, progress, latency, recovery (and peers)."""
    peers = result.get("peers") or {}
    rows = 3 if peers else 2
    with charts.figure(path, rows, 2, figsize=(12, 12.4 if peers else 8.2)) as (fig, axes):
        _throughput_panel(result, axes[0][0])
        _progress_panel(result["throughput"], axes[0][1])
        _latency_panel(result["latency"], axes[1][0])
        _recovery_panel(result["recovery"], axes[1][1])
        if peers:
            _peer_panels(result, axes[2][0], axes[2][1])
        fig.suptitle(result["chart_title"], fontsize=10)


def _throughput_panel(result: dict[str, Any], ax: Any) -> None:
    tp, ce = result["throughput"], result["ceiling"]
    names = [
        "worker, first balance\n→ all applied",
        "worker, first event\n→ all applied",
        "Python ceiling\n(1 hop, no framework)",
    ]
    vals = [tp["events_per_s"], tp["whole_events_per_s"], ce["events_per_s"]]
    colors = ["C0", "C9", "C2"]
    floor = result.get("faust_floor")
    if floor:
        names.append("Faust floor\n(same app, no work)")
        vals.append(floor["events_per_s"])
        colors.append("C7")
    one_hop = result.get("faust_floor_one_hop")
    if one_hop:
        names.append("Faust floor, one hop\n(from first event)")
        vals.append(one_hop["whole_events_per_s"])
        colors.append("C8")
    bars = ax.bar(names, vals, color=colors)
    ax.tick_params(axis="x", labelsize=7)
    ax.bar_label(bars, labels=[f"{v:,.0f}" for v in vals])
    ax.axhline(
        ce["events_per_s"] * TARGET_SHARE_OF_CEILING,
        color="grey",
        ls=":",
        label=f"target: {TARGET_SHARE_OF_CEILING:.0%} of ceiling",
    )
    ax.set_ylabel("events / s (one process)")
    ax.set_title(f"throughput, {tp['raw']:,} raw webhooks, 4 providers", fontsize=10)
    ax.legend(fontsize=8)


def _progress_panel(tp: dict[str, Any], ax: Any) -> None:
    prog = [p for p in tp["progress"] if p[0] >= -2]
    ax.plot([p[0] for p in prog], [p[1] for p in prog], label="raw normalized")
    ax.plot([p[0] for p in prog], [p[2] for p in prog], label="events produced")
    ax.plot([p[0] for p in prog], [p[3] for p in prog], label="events applied")
    ax.axvline(0, color="grey", ls=":", lw=0.8)
    ax.set_xlabel("seconds since the first balance record")
    ax.set_ylabel("count (worker /metrics)")
    ax.set_title("worker progress", fontsize=10)
    ax.legend(fontsize=8)


def _latency_panel(lat_points: list[dict[str, Any]], ax: Any) -> None:
    for i, point in enumerate(lat_points):
        xs = point["latency_cdf_ms"]
        if not xs:
            continue
        label = (
            f"{point['rate_per_s']:.0f}/s: p50 {point['p50_ms']:,.0f} ms, "
            f"p99 {point['p99_ms']:,.0f} ms"
        )
        ax.plot(xs, [(k + 1) / len(xs) for k in range(len(xs))], color=f"C{i}", label=label)
    ax.set_xscale("log")
    ax.axvline(TARGET_P99_MS, color="grey", ls=":", label=f"target p99 {TARGET_P99_MS:.0f} ms")
    ax.axhline(0.99, color="grey", ls="--", lw=0.6)
    ax.set_xlabel("200 received → balance seen (ms)")
    ax.set_ylabel("fraction of webhooks")
    ax.set_title("latency through bridge + worker (open loop, fresh member each)", fontsize=10)
    ax.legend(fontsize=8)
    charts.grid(ax)


def _recovery_panel(rec: dict[str, Any], ax: Any) -> None:
    rc = rec.get("restore_ceiling") or {}
    net = rec.get("records_per_s_net_of_empty_start", rec["records_per_s"])
    restore_s = rec.get("bulk_restore_s")
    names = [
        "worker start → ready,\nempty changelog",
        f"worker start → ready,\n{rec['changelog_records']:,} records",
        "bulk restore\n(worker's log)",
        "restore ceiling\n(aiokafka → rocksdict)",
    ]
    vals = [
        rec["empty_changelog_start_to_ready_s"],
        rec["start_to_ready_s"],
        restore_s or 0.0,
        rc.get("seconds", 0),
    ]
    bars = ax.bar(names, vals, color=["C7", "C0", "C1", "C2"])
    labels = [
        f"{vals[0]:.1f} s",
        f"{vals[1]:.1f} s\n{net:,.0f} rec/s net",
        f"{vals[2]:.2f} s\n{rec.get('records_per_s_bulk_restore_window') or 0:,.0f} rec/s",
        f"{vals[3]:.2f} s\n{rc.get('records_per_s', 0):,.0f} rec/s",
    ]
    ax.bar_label(bars, labels=labels, fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_ylabel("seconds")
    ax.margins(y=0.2)
    ax.set_title(
        f"table recovery: {net:,.0f} records/s net of start-up (target {TARGET_RECOVERY_PER_S:,})",
        fontsize=10,
    )


def _ours(tp: dict[str, Any]) -> tuple[float, float | None]:
    """The worker's events/s (first events record → last output) and CPU µs/event: the median
    over --rounds when there were several, else the one run."""
    m = tp.get("median_of_rounds") or tp
    return m["whole_events_per_s"], m.get("worker_cpu_us_per_event")


def _peer_panels(result: dict[str, Any], ax_rate: Any, ax_cpu: Any) -> None:
    peers = result["peers"]
    rate, cpu = _ours(result["throughput"])
    names = ["worker", *peers]
    rates = [rate] + [peers[p]["whole_events_per_s"] for p in peers]
    cpus = [cpu or 0.0] + [peers[p]["cpu_us_per_event"] for p in peers]
    colors = ["C0", "C4", "C6", "C2", "C8"][: len(names)]
    labels = [PEER_LABELS.get(n, n) for n in names]
    equal = ["(reference)"] + [
        "balances equal" if peers[p]["balances_equal_to_worker"] else "BALANCES DIFFER"
        for p in peers
    ]
    bars = ax_rate.bar(labels, rates, color=colors)
    ax_rate.bar_label(bars, labels=[f"{v:,.0f}\n{e}" for v, e in zip(rates, equal, strict=True)])
    ax_rate.margins(y=0.25)
    ax_rate.tick_params(axis="x", labelsize=7)
    ax_rate.set_ylabel("events / s (first event → all applied)")
    rounds = result["setup"].get("rounds", 1)
    ax_rate.set_title(
        f"worker vs peers, same {result['throughput']['raw']:,} raw records"
        + (f" (median of {rounds} interleaved runs)" if rounds > 1 else " (one run each)"),
        fontsize=10,
    )
    bars = ax_cpu.bar(labels, cpus, color=colors)
    ax_cpu.bar_label(bars, labels=[f"{v:,.0f}" for v in cpus])
    ax_cpu.margins(y=0.2)
    ax_cpu.tick_params(axis="x", labelsize=7)
    ax_cpu.set_ylabel("process CPU µs / event (/proc, all threads)")
    goals = result["verdict"].get("peers", {}).get("goals", {})
    r = goals.get("events_per_s_vs_quix", {}).get("ratio")
    c = goals.get("cpu_per_event_vs_quix", {}).get("ratio")
    ax_cpu.set_title(
        "CPU per event"
        + (f"; worker/Quix: {r:.2f}x events/s, {c:.2f}x CPU/event" if r and c else ""),
        fontsize=10,
    )


def verdict(result: dict[str, Any]) -> dict[str, Any]:
    tp, ce = result["throughput"], result["ceiling"]
    share = tp["events_per_s"] / ce["events_per_s"] if ce["events_per_s"] else 0.0
    whole = tp["whole_events_per_s"] / ce["events_per_s"] if ce["events_per_s"] else 0.0
    lat, rec = result["latency"][0], result["recovery"]
    return {
        "worker_share_of_ceiling": round(share, 3),
        "faust_floor_share_of_ceiling": round(
            result["faust_floor"]["events_per_s"] / ce["events_per_s"], 3
        )
        if result.get("faust_floor") and ce["events_per_s"]
        else None,
        "one_hop_saves": result.get("one_hop_saves"),
        "meets_throughput": share >= TARGET_SHARE_OF_CEILING,
        "worker_share_of_ceiling_whole_run": round(whole, 3),
        "meets_throughput_whole_run": whole >= TARGET_SHARE_OF_CEILING,
        "latency_rate_per_s": lat["rate_per_s"],
        "meets_latency_p99": lat["p99_ms"] <= TARGET_P99_MS and lat["balance_not_seen"] == 0,
        "recovery_records_per_s": rec["records_per_s_net_of_empty_start"],
        "meets_recovery": rec["records_per_s_net_of_empty_start"] >= TARGET_RECOVERY_PER_S,
        "targets": {
            "worker_share_of_ceiling": TARGET_SHARE_OF_CEILING,
            "latency_p99_ms": TARGET_P99_MS,
            "recovery_records_per_s": TARGET_RECOVERY_PER_S,
        },
        "peers": peer_verdict(result),
    }


def peer_verdict(result: dict[str, Any]) -> dict[str, Any]:
    """Issue 15's goals as ratios: worker events/s >= Quix's, worker CPU/event <= Quix's."""
    peers = result.get("peers") or {}
    if not peers:
        return {}
    rate, cpu = _ours(result["throughput"])
    rows = {}
    for name, p in peers.items():
        rows[name] = {
            "events_per_s": p["whole_events_per_s"],
            "cpu_us_per_event": p["cpu_us_per_event"],
            "worker_over_peer_events_per_s": round(rate / p["whole_events_per_s"], 3)
            if p["whole_events_per_s"]
            else None,
            "worker_over_peer_cpu_per_event": round(cpu / p["cpu_us_per_event"], 3)
            if cpu and p["cpu_us_per_event"]
            else None,
            "balances_equal_to_worker": p["balances_equal_to_worker"],
            "complete": p["complete"],
        }
    quix = rows.get("quix", {})
    r, c = quix.get("worker_over_peer_events_per_s"), quix.get("worker_over_peer_cpu_per_event")
    goals = {
        "events_per_s_vs_quix": {"ratio": r, "target": ">= 1.0", "met": r is not None and r >= 1},
        "cpu_per_event_vs_quix": {"ratio": c, "target": "<= 1.0", "met": c is not None and c <= 1},
    }
    one_hop = result.get("one_hop_worker")
    q = peers.get("quix")
    if one_hop and q and q["whole_events_per_s"] and q["cpu_us_per_event"]:
        # `--one-hop`: the same two ratios for benchmarks/one_hop_worker.py (not the product)
        hop_cpu = one_hop.get("worker_cpu_us_per_event")
        goals["one_hop_worker_vs_quix"] = {
            "events_per_s_ratio": round(one_hop["whole_events_per_s"] / q["whole_events_per_s"], 3),
            "cpu_per_event_ratio": round(hop_cpu / q["cpu_us_per_event"], 3) if hop_cpu else None,
            "balances_equal_to_worker": one_hop["balances_equal_to_worker"],
            "note": "a measurement of the one-hop lever, not a goal of the product's worker",
        }
    return {
        "worker_events_per_s": rate,
        "worker_cpu_us_per_event": cpu,
        "by_peer": rows,
        "goals": goals,
        "all_met": all(g["met"] for g in goals.values() if "met" in g),
        "all_peers_balances_equal": all(p["balances_equal_to_worker"] for p in rows.values()),
    }


# --profile (benchmarks/cpu_profile.py): where each implementation's CPU per event goes.
PROFILED = (
    ("our worker", ("throughput", "median_of_rounds")),
    ("one-hop worker", ("one_hop_worker",)),
    ("Quix Streams", ("peers", "quix")),
    ("Quix Streams, exactly-once", ("peers", "quix_eos")),
    ("aiokafka + rocksdict", ("peers", "plain")),
    ("Faust floor, two hops", ("faust_floor",)),
    ("Faust floor, one hop", ("faust_floor_one_hop",)),
)


def profile_summary(result: dict[str, Any]) -> dict[str, Any]:
    """Each profiled implementation's median run: µs of CPU per event by layer, what of it is
    our own code (decode, Avro, rules, state format: the same functions everywhere) and what
    is everything else (framework, Kafka client, event loop, native threads)."""
    out: dict[str, Any] = {}
    for name, path in PROFILED:
        row: Any = result
        for key in path:
            row = (row or {}).get(key)
        profile = (row or {}).get("profile")
        if not profile and path == ("throughput", "median_of_rounds"):
            profile = result.get("throughput", {}).get("profile")  # one round: that round's
        if not profile:
            continue
        layers = profile["us_per_event"]
        ours = layers.get("ours", 0.0)
        out[name] = {
            "us_per_event": layers,
            "ours_us_per_event": round(ours, 1),
            "rest_us_per_event": round(sum(layers.values()) - ours, 1),
            "hot_frames": profile.get("hot_frames", [])[:10],
        }
    return out


def profile_chart(summary: dict[str, Any], path: Path, title: str) -> None:
    """Stacked bars: each implementation's CPU per event by layer."""
    if not summary:
        return
    names = list(summary)
    layers = sorted(
        {k for s in summary.values() for k, v in s["us_per_event"].items() if v >= 0.5},
        key=lambda k: (k != "ours", -max(s["us_per_event"].get(k, 0.0) for s in summary.values())),
    )
    with charts.figure(path, 1, 1, figsize=(11, 0.7 * len(names) + 2.2)) as (fig, ax):
        left = [0.0] * len(names)
        for i, layer in enumerate(layers):
            vals = [summary[n]["us_per_event"].get(layer, 0.0) for n in names]
            ax.barh(names, vals, left=left, label=layer, color=f"C{i % 10}")
            left = [a + b for a, b in zip(left, vals, strict=True)]
        for y, total in enumerate(left):
            ax.text(total + 5, y, f"{total:,.0f} µs", va="center", fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(
            "CPU µs per event (py-spy shares of the Python threads; native threads measured)"
        )
        ax.legend(fontsize=7, ncol=6, loc="upper center", bbox_to_anchor=(0.5, -0.22))
        charts.grid(ax)
        fig.suptitle(title, fontsize=10)
