"""The `rebuild`, `diff` and `cutover` subcommands (added to the CLI by `connector.cli`).

Exit codes: `rebuild` and `cutover` 0 when done, 1 when refused or failed (nothing changed if
refused); `diff` 0 identical, 1 differences, 2 could not compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_DIFFERENT, EXIT_TROUBLE = 0, 1, 1, 2


def _settings() -> Any:
    from connector.logs import setup_logging
    from connector.settings import Settings

    settings = Settings.from_env()
    setup_logging(settings.log_level, settings.log_format)
    return settings


def cmd_rebuild(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from connector.export import parse_time
    from connector.rebuild import RebuildOptions, rebuild, summary
    from connector.shadow import Shadow, default_shadow

    settings = _settings()
    default = default_shadow(settings, datetime.now(UTC))
    shadow = Shadow(args.shadow_prefix or default.prefix, args.shadow_app_id or default.app_id)
    options = RebuildOptions(
        shadow,
        since=parse_time(args.since, "--since") if args.since else None,
        until=parse_time(args.until, "--until") if args.until else None,
        progress=False if args.no_progress else (True if args.progress else None),
    )
    result = asyncio.run(rebuild(settings, options))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(summary(result), file=sys.stderr)
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    from connector.diff import diff, render
    from connector.errors import ConnectorError
    from connector.settings import Settings

    try:
        report = asyncio.run(diff(Settings.from_env(), args.shadow_prefix))
    except ConnectorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_TROUBLE
    if args.json:
        print(json.dumps(report.to_json(args.sample), indent=2))
    else:
        print(render(report, args.sample))
    return EXIT_OK if report.identical else EXIT_DIFFERENT


def cmd_cutover(args: argparse.Namespace) -> int:
    from connector.cutover import cutover, summary

    settings = _settings()
    result = asyncio.run(
        cutover(
            settings,
            args.shadow_prefix,
            args.shadow_app_id,
            dry_run=args.dry_run,
            allow_partial=args.allow_partial,
        )
    )
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(summary(result))
    return EXIT_OK


def add_commands(sub: Any) -> None:
    """Add `rebuild`, `diff` and `cutover` to the CLI's subparsers."""
    p = sub.add_parser(
        "rebuild",
        help="replay the raw topic through the current decoders and ledger into fresh shadow state",
    )
    p.add_argument(
        "--shadow-prefix",
        help="topic prefix of the rebuilt state "
        "(default <CONNECTOR_TOPIC_PREFIX>-rebuild-<yyyymmddHHMM>)",
    )
    p.add_argument(
        "--shadow-app-id",
        help="app id whose members table and consumer group the rebuild writes "
        "(default <CONNECTOR_APP_ID>-rebuild-<yyyymmddHHMM>)",
    )
    p.add_argument(
        "--since", help="per raw partition, start at the first record at or after (ISO time)"
    )
    p.add_argument(
        "--until", help="per raw partition, stop before the first record at or after (ISO time)"
    )
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--no-progress", action="store_true", help="no progress bar")
    bar.add_argument(
        "--progress",
        action="store_true",
        help="a progress bar even when stderr is not a terminal (default: only on a terminal)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(func=cmd_rebuild)

    p = sub.add_parser(
        "diff",
        help="compare live and rebuilt balances and ledger totals (exit 0 same, 1 different)",
    )
    p.add_argument("--shadow-prefix", required=True, help="the rebuild's topic prefix")
    p.add_argument("--sample", type=int, default=20, help="differing accounts shown (default 20)")
    p.add_argument("--json", action="store_true", help="as one JSON object")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser(
        "cutover",
        help="make a finished rebuild the live state (run with every live worker stopped)",
    )
    p.add_argument("--shadow-prefix", required=True, help="the rebuild's topic prefix")
    p.add_argument(
        "--shadow-app-id", help="the rebuild's app id (default: from the rebuild's manifest)"
    )
    p.add_argument("--dry-run", action="store_true", help="check and count, write nothing")
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="cut over a rebuild that did not start at the raw topic's first record",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(func=cmd_cutover)
