"""The `loyalty-connector` command line: bridge, worker, dev, decode, replay, members, tail,
export, config, healthcheck."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from connector.errors import ConfigError, ConnectorError, DecodeError, VerificationError
from connector.settings import Settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_DECODE = 2
EXIT_VERIFY = 3


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def cmd_decode(args: argparse.Namespace) -> int:
    from connector.models import to_json_obj
    from connector.providers import PROVIDERS, DecodeContext
    from connector.providers.base import RequestTarget

    provider = PROVIDERS[args.provider]
    try:
        body = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        return _fail(f"cannot read {args.file}: {exc.strerror}", EXIT_FAILED)
    headers = dict(args.header or [])
    if not args.no_verify:
        try:
            settings = Settings.from_env()
        except ConfigError as exc:
            return _fail(str(exc), EXIT_FAILED)
        secrets = settings.provider(args.provider).secrets_for(args.tenant)
        if secrets is None:
            valid = ", ".join(settings.provider(args.provider).tenant_names)
            return _fail(
                f"unknown tenant {args.tenant!r} for {args.provider}; valid: {valid}", EXIT_VERIFY
            )
        if not provider.is_configured(secrets):
            return _fail(
                f"no {args.provider} secrets configured: set CONNECTOR_{args.provider.upper()}_* "
                "variables (see README) or pass --no-verify",
                EXIT_VERIFY,
            )
        # Open Loyalty Cloud signs the request line too: the URL the provider posted to
        path = f"/webhooks/{args.provider}" + (f"/{args.tenant}" if args.tenant else "")
        if args.url:
            target = RequestTarget.of("POST", "", "", args.url)
        else:
            target = RequestTarget.of("POST", "127.0.0.1", path, settings.public_url)
        try:
            provider.verify(body, headers, secrets, target)
        except VerificationError as exc:
            return _fail(f"verification failed: {exc}", EXIT_VERIFY)
    try:
        events = provider.decode(body, headers, DecodeContext(tenant=args.tenant))
    except DecodeError as exc:
        return _fail(f"cannot decode: {exc}", EXIT_DECODE)
    out = sys.stdout
    for event in events:
        out.write(json.dumps(to_json_obj(event), ensure_ascii=False) + "\n")
    return EXIT_OK


def _settings() -> Settings:
    from connector.logs import setup_logging

    settings = Settings.from_env()
    setup_logging(settings.log_level, settings.log_format)
    return settings


def cmd_bridge(args: argparse.Namespace) -> int:
    from connector.bridge.server import run_bridge

    return run_bridge(_settings())


def cmd_worker(args: argparse.Namespace) -> int:
    from connector.streams.worker import run_worker

    return run_worker(_settings())


def cmd_members(args: argparse.Namespace) -> int:
    from connector.inspect import run_members

    return run_members(
        Settings.from_env(),
        args.provider,
        args.tenant,
        args.customer_id,
        args.url,
        args.account,
        min_offset=args.min_offset,
    )


def cmd_forget(args: argparse.Namespace) -> int:
    import asyncio

    from connector.forget import forget

    settings = Settings.from_env()
    try:
        result = asyncio.run(forget(settings, args.provider, args.tenant, args.customer_id))
    except ValueError as exc:
        return _fail(str(exc), EXIT_FAILED)
    print(json.dumps(result, indent=2))
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    import asyncio

    from connector.inspect import tail

    settings = Settings.from_env()
    topic = settings.topics.all().get(args.topic, args.topic)
    try:
        asyncio.run(tail(settings, topic, follow=args.follow, limit=args.limit))
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `tail ... | head`
        pass
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from connector.export import export_topic, parse_time

    settings = Settings.from_env()
    topic = settings.topics.all().get(args.topic, args.topic)
    since = parse_time(args.since, "--since") if args.since else None
    until = parse_time(args.until, "--until") if args.until else None
    result = export_topic(
        settings,
        topic,
        Path(args.out),
        fmt=args.format,
        since=since,
        until=until,
        progress=False if args.no_progress else None,
    )
    print(
        f"{result.rows} {result.record_name} records from {result.topic} -> {result.path} "
        f"({result.format}; {result.skipped} skipped, {result.undecodable} undecodable)",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from connector.dev import DEV_ENV_FILE, fill_dev_secrets, read_env_file
    from connector.providers import PROVIDERS
    from connector.replay import run_replay
    from connector.settings import process_env

    env = process_env()
    if args.env_file or DEV_ENV_FILE.exists():
        # `make dev` writes its sample secrets there; a provider the environment configures
        # keeps only its own variables (as in `dev`).
        found = read_env_file(Path(args.env_file or DEV_ENV_FILE))
        by_provider = {
            key: {k: v for k, v in found.items() if k.startswith(f"CONNECTOR_{key.upper()}_")}
            for key in PROVIDERS
        }
        fill_dev_secrets(env, by_provider)
        for k, v in found.items():
            if not any(k in group for group in by_provider.values()):
                env.setdefault(k, v)
    settings = Settings.from_env(env)
    return run_replay(args.paths, args.to, args.provider, args.tenant, settings, args.concurrency)


def cmd_dlq(args: argparse.Namespace) -> int:
    from connector.dlq import parse_since, run_list, run_redrive

    settings = Settings.from_env()
    if args.dlq_command == "list":
        return run_list(settings, args.show, args.json)
    return run_redrive(settings, args.stage, args.provider, parse_since(args.since), args.dry_run)


def cmd_config(args: argparse.Namespace) -> int:
    from connector.settings import effective_settings, process_env

    env = process_env()
    # the processes' own checks: a ConfigError exits 1 with the same message
    report = effective_settings(env, Settings.from_env(env))
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    print(f"loyalty-connector {version()}: effective settings (secrets masked)")
    width = max(len(v["name"]) for v in report["variables"])
    for v in report["variables"]:
        value = "(unset)" if v["value"] is None else v["value"]
        print(f"  {v['name']:<{width}}  {value}  [{v['source']}]")
    print("providers:")
    for key, p in report["providers"].items():
        state = "configured" if p["configured"] else "NOT configured: its webhooks get 401"
        if p["unverified"]:
            state = "UNVERIFIED (development only)"
        tenants = f"; tenants: {', '.join(p['tenants'])}" if p["tenants"] else ""
        print(f"  {key:<13} {state}{tenants}")
    for warning in report["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return EXIT_OK


def cmd_healthcheck(args: argparse.Namespace) -> int:
    """Exit 0 if this container's bridge or worker answers 200 on /healthz (image HEALTHCHECK)."""
    import urllib.error
    import urllib.request

    settings = Settings.from_env()
    ports = [args.port] if args.port else [settings.bridge_port, settings.web_port]
    for port in ports:
        try:
            url = f"http://127.0.0.1:{port}/healthz"
            with urllib.request.urlopen(url, timeout=args.timeout) as resp:  # noqa: S310
                if resp.status == 200:
                    return EXIT_OK
        except (urllib.error.URLError, OSError):
            continue
    return _fail(f"nothing answered 200 on /healthz at 127.0.0.1 port {ports}", EXIT_FAILED)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("loyalty-connector")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown"


def cmd_dev(args: argparse.Namespace) -> int:
    from connector.dev import run_dev

    return run_dev(args)


def build_parser() -> argparse.ArgumentParser:
    from connector.providers import PROVIDERS

    parser = argparse.ArgumentParser(
        prog="loyalty-connector",
        description="Loyalty webhooks into Kafka: canonical Avro events and live balances.",
    )
    parser.add_argument("--version", action="version", version=f"loyalty-connector {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "decode", help="offline: a webhook body file -> canonical events (JSON lines)"
    )
    p.add_argument("--provider", required=True, choices=sorted(PROVIDERS))
    p.add_argument("--tenant", default=None, help="tenant (default: the provider's own scope)")
    p.add_argument(
        "--header",
        action="append",
        type=_parse_header,
        metavar="'Name: value'",
        help="a request header the provider sent (repeatable)",
    )
    p.add_argument("--no-verify", action="store_true", help="skip the signature check")
    p.add_argument(
        "--url",
        default=None,
        help="the URL the provider posted to, for signatures over the request line (Open "
        "Loyalty Cloud); default: CONNECTOR_PUBLIC_URL, else http://127.0.0.1, plus "
        "/webhooks/<provider>[/<tenant>]",
    )
    p.add_argument("file", help="the raw request body; - reads stdin")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("bridge", help="run the HTTP bridge (webhooks -> raw topic)")
    p.set_defaults(func=cmd_bridge)

    p = sub.add_parser("worker", help="run a Faust worker (normalize, ledger, member queries)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("members", help="print a member's balance and tier (asks a worker)")
    p.add_argument("provider", choices=sorted(PROVIDERS))
    p.add_argument("tenant")
    p.add_argument("customer_id")
    p.add_argument("--url", help="worker base URL (default http://127.0.0.1:CONNECTOR_WEB_PORT)")
    p.add_argument("--account", help="only this points account (default: all of them)")
    p.add_argument(
        "--min-offset",
        type=int,
        default=None,
        help="wait (up to 10 s) until the worker has applied this events-topic offset of the "
        "member's partition (a balances or ledger record's source_offset)",
    )
    p.set_defaults(func=cmd_members)

    p = sub.add_parser(
        "forget",
        help="erase a member: its records deleted, balances and tiers tombstoned (GDPR erasure)",
    )
    p.add_argument("provider", choices=sorted(PROVIDERS))
    p.add_argument("tenant")
    p.add_argument("customer_id")
    p.set_defaults(func=cmd_forget)

    p = sub.add_parser("tail", help="print a topic's records as JSON lines (Avro decoded)")
    p.add_argument("topic", help="topic name, or raw/events/ledger/balances/tiers/dlq")
    p.add_argument("-f", "--follow", action="store_true", help="keep waiting for new records")
    p.add_argument("-n", "--limit", type=int, default=None, help="stop after N records")
    p.set_defaults(func=cmd_tail)

    p = sub.add_parser(
        "export", help="an output topic -> a typed Parquet or CSV table (analytics extra)"
    )
    p.add_argument("topic", help="topic name, or events/ledger/balances/tiers/dlq")
    p.add_argument("--out", required=True, help="output file: FILE.parquet or FILE.csv")
    p.add_argument("--format", choices=["parquet", "csv"], default=None)
    p.add_argument("--since", help="only records with a Kafka timestamp at or after (ISO time)")
    p.add_argument("--until", help="only records with a Kafka timestamp before (ISO time)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "replay", help="send payload files to a bridge, signed as the provider would"
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="payload files or directories")
    p.add_argument(
        "--to",
        default="http://127.0.0.1:8080",
        help="bridge base URL (default http://127.0.0.1:8080)",
    )
    p.add_argument(
        "--provider",
        choices=sorted(PROVIDERS),
        help="provider of every file (default: from each file's folder name)",
    )
    p.add_argument("--tenant", default=None)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument(
        "--env-file",
        default=None,
        help="file of CONNECTOR_* secrets (default: .dev/dev.env when present)",
    )
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("dev", help="embedded broker + connector processes, in the foreground")
    p.add_argument(
        "--demo",
        action="store_true",
        help="replay the bundled sample webhooks and print the members table",
    )
    p.add_argument("--exit", action="store_true", help="with --demo: stop after printing")
    p.set_defaults(func=cmd_dev)

    p = sub.add_parser("dlq", help="dead letters: list them, or redrive them with the current code")
    dlq = p.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    q = dlq.add_parser("list", help="counts by stage, provider and error; --show N samples")
    q.add_argument("--show", type=int, default=0, metavar="N", help="the N newest, bytes as text")
    q.add_argument("--json", action="store_true", help="as one JSON object")
    q = dlq.add_parser("redrive", help="write dead letters back to their topic (each at most once)")
    q.add_argument("--stage", choices=["route", "decode", "encode", "ledger"])
    q.add_argument("--provider", choices=sorted(PROVIDERS))
    q.add_argument("--since", help="only dead letters that failed at or after (ISO time)")
    q.add_argument("--dry-run", action="store_true", help="say how many, write nothing")
    p.set_defaults(func=cmd_dlq)

    p = sub.add_parser(
        "config",
        help="print the effective settings (secrets masked); exit 1 on a configuration error",
    )
    p.add_argument("--json", action="store_true", help="as one JSON object")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("healthcheck", help="exit 0 if the local bridge or worker is alive")
    p.add_argument("--port", type=int, default=None, help="only this port")
    p.add_argument("--timeout", type=float, default=3.0)
    p.set_defaults(func=cmd_healthcheck)

    from connector.rebuild_cli import add_commands

    add_commands(sub)  # rebuild, diff, cutover
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:  # the provider choices load the installed plugins: a broken one is a ConfigError
        parser = build_parser()
    except ConfigError as exc:
        return _fail(str(exc), EXIT_FAILED)
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_FAILED)
    except ConnectorError as exc:
        return _fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        return 130
    return code
