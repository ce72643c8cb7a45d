"""The ``outreach`` command line. Each sub-command builds the settings once and calls one package."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from outreach.output import ProgressPrinter, write_result
from projections.inert import NEUTRALISED_NOTE
from runtime.memory import peak_rss_mib
from runtime.settings import Settings
from schemas.errors import FileInvalid, OutreachError, SettingsInvalid

DEMO_QUERIES = {
    "Totals by county": (
        "SELECT county, county_name, events, sessions, participants, sessions_participants_unknown, "
        "materials_distributed, teams_established FROM totals_by_county"
    ),
    # The actions of no campaign are a row of their own per country: labelled, not left blank.
    "Totals by campaign": (
        "SELECT coalesce(campaign_id, '(no campaign)') AS campaign_id, country, events, sessions, participants, "
        "materials_distributed, teams_established, counties_reached FROM totals_by_campaign"
    ),
    "Totals by national action plan task": (
        "SELECT task_ref, title, events, teams_established, counties_reached, first_activity, last_activity "
        "FROM totals_by_plan_task"
    ),
}

EPILOG = {
    "server": "example:\n  outreach server --port 4222 --data-dir ./nats-data",
    "publish": "examples:\n  outreach publish events.jsonl\n  outreach publish --skip-invalid a.csv b.jsonl\n"
    "  outreach publish --dry-run reporting.xlsx           # what would be new, corrected, withdrawn\n"
    "  outreach publish --retract-missing reporting.xlsx   # also retract rows deleted from it",
    "validate": "examples:\n  outreach validate events.csv\n  outreach validate reporting.xlsx",
    "template": "examples:\n  outreach template --out reporting.xlsx   # fill it in; then outreach validate it\n"
    "  outreach template --agency al-korce-regional-committee   # in Albanian, the agency filled in\n"
    "  outreach template --lang pl --out sprawozdanie.xlsx",
    "project": "examples:\n  outreach project                      # follow the stream until Ctrl-C\n"
    "  outreach project --until-caught-up    # apply everything stored, then stop",
    "sql": 'examples:\n  outreach sql "SELECT * FROM totals_by_county"\n'
    '  outreach sql --format csv "SELECT * FROM totals_by_plan_task" > tasks.csv',
    "demo": "examples:\n  outreach demo\n  outreach demo --nats nats://127.0.0.1:4222 --db ./demo.duckdb",
    "replay": "examples:\n  outreach replay --db rebuilt.duckdb\n"
    "  outreach replay --db as-known-2018-01-15.duckdb --as-of 2018-01-15T00:00:00Z\n"
    "  outreach replay --db first-1000.duckdb --until-seq 1000",
    "bench": "examples:\n  outreach bench                       # 1,000,000 events, several minutes\n"
    "  outreach bench --events 20000 --out bench.json\n"
    "  outreach bench --memory 1000000,3000000  # peak memory as the stream grows",
    "verify": "example:\n  outreach verify --db outreach.duckdb",
    "export-log": "examples:\n  outreach export-log --out log.parquet\n  outreach export-log --out log.jsonl",
    "auth": "examples:\n  outreach auth init --dir ./auth --agency al-national-coordinator --agency iom-albania\n"
    "  outreach auth add-agency --dir ./auth pl-opolskie-voivodeship-office\n"
    "  outreach auth revoke --dir ./auth al-old-partner",
    "stream": "example:\n  env $(cat auth/credentials/admin.env | xargs) outreach stream",
    "export": "examples:\n  outreach export --view totals_by_county --format xlsx --out counties.xlsx\n"
    "  outreach export --view totals_by_county --format hxl --out counties-hxl.csv",
    "report": (
        "examples:\n  outreach report --out report.html\n"
        "  outreach report --country AL --from 2025-01 --to 2025-06 --out al-2025-h1.html\n\n"
        "--from and --to take a day (2025-03-05 or 05.03.2025), a month (2025-03) or a year (2025):\n"
        "--from a month or year starts on its first day, --to one ends on its last."
    ),
    "schema": "examples:\n  outreach schema > events.schema.json\n  outreach schema --out ./schemas-json",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except FileInvalid as exc:
        print(f"error: {exc}", file=sys.stderr)
        if args.func is cmd_publish:
            print(
                "nothing was published; fix the lines above, or pass --skip-invalid to publish the valid ones",
                file=sys.stderr,
            )
        return 1
    except OutreachError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="outreach",
        description="Outreach Ledger: counter-trafficking outreach actions as immutable events on NATS "
        "JetStream, projected into DuckDB totals.",
        epilog="Settings come from flags or OUTREACH_* environment variables (e.g. OUTREACH_NATS_URL, "
        "OUTREACH_DB). Run `outreach demo` to see it work.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=EPILOG.get(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    p = command("server", "run the embedded nats-server with JetStream in the foreground")
    p.add_argument("--port", type=int, default=4222, help="client port (0 picks a free one; default 4222)")
    p.add_argument("--data-dir", type=Path, default=Path("nats-data"), help="JetStream storage directory")
    p.add_argument("--config", type=Path, help="a nats-server configuration file")
    p.add_argument(
        "--auth",
        type=Path,
        metavar="DIR",
        help="close the server: users from DIR (made there by `outreach auth init` on first use, with the "
        "--agency slugs given), an account per agency, and the stream created as admin",
    )
    p.add_argument(
        "--agency",
        dest="auth_agencies",
        action="append",
        default=[],
        help="with --auth on first use: an agency's slug (repeat)",
    )
    c = p.add_argument_group("JetStream cluster (three or more servers; see README, Scaling out)")
    c.add_argument("--server-name", help="this server's unique name in the cluster")
    c.add_argument("--cluster", metavar="URL", help="where other servers route to this one, e.g. nats://0.0.0.0:6222")
    c.add_argument("--routes", metavar="URLS", help="the other servers' cluster URLs, comma-separated")
    c.add_argument("--cluster-name", default="outreach", help="the cluster's name (default outreach)")
    _nats_options(p)
    p.set_defaults(func=cmd_server)

    p = command("stream", "create the stream if it is missing (as admin), and check it keeps history immutable")
    p.add_argument(
        "--replicas",
        dest="stream_replicas",
        type=int,
        help="in a JetStream cluster, how many servers keep the stream (OUTREACH_STREAM_REPLICAS; default 1)",
    )
    _nats_options(p)
    p.set_defaults(func=cmd_stream)

    p = command("publish", "validate files of events (JSON Lines, CSV or xlsx) and publish them")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--skip-invalid", action="store_true", help="publish the valid lines even if some are invalid")
    p.add_argument(
        "--wait",
        type=float,
        nargs="?",
        const=60.0,
        metavar="SECONDS",
        help="then wait (default 60 s) for the projector's receipts: exit 1 if any event was rejected",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="compare the files' rows with the stream and say what publishing would do; send nothing",
    )
    p.add_argument(
        "--retract-missing",
        action="store_true",
        help="retract the rows with a reference that were published from a file of this name and are no longer "
        "in it (needs a running projector to list them)",
    )
    _agency_option(p)
    _nats_options(p)
    p.set_defaults(func=cmd_publish)

    p = command("status", "the fate of your agency's events: accepted, duplicate, or rejected with the reason")
    p.add_argument("--since", type=_timestamp, help="only events stored since this time (ISO 8601)")
    p.add_argument("--after-seq", type=int, default=0, help="only events after this stream sequence")
    p.add_argument("--rejected", action="store_true", help="list only the rejected events")
    p.add_argument("--json", action="store_true", help="one JSON object per event")
    _agency_option(p)
    _nats_options(p)
    p.set_defaults(func=cmd_status)

    p = command("validate", "validate files of events (.jsonl, .csv, .xlsx) without publishing; lists every problem")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.set_defaults(func=cmd_validate)

    p = command("template", "write a workbook to fill in: a sheet per action type, with lists and notes")
    p.add_argument("--out", type=Path, default=Path("reporting.xlsx"), help="where (default reporting.xlsx)")
    p.add_argument(
        "--lang",
        choices=["en", "sq", "pl"],
        help="the language of its notes, labels and read me sheet (default: from --agency's country, al- sq, "
        "pl- pl; else en); the field names stay as they are",
    )
    p.add_argument("--agency", help="your agency's slug, pre-filled in every row's agency cell")
    p.set_defaults(func=cmd_template)

    p = command("project", "run the projector: stream → DuckDB totals")
    p.add_argument("--until-caught-up", action="store_true", help="stop once everything stored is applied")
    _nats_options(p)
    _db_option(p)
    p.set_defaults(func=cmd_project)

    p = command("replay", "rebuild every projection from the first event into a new database file")
    p.add_argument("--db", type=Path, required=True, help="the new DuckDB file (must not exist)")
    p.add_argument("--until-seq", type=int, help="stop after this stream sequence")
    p.add_argument("--as-of", type=_timestamp, help="stop at what the stream had stored by this time (ISO 8601)")
    _nats_options(p)
    p.set_defaults(func=cmd_replay)

    p = command("verify", "rebuild from the stream and compare with a projection, row by row")
    p.add_argument("--db", type=Path, help="the projection to verify (OUTREACH_DB; default ./outreach.duckdb)")
    p.add_argument(
        "--submission", metavar="ID", help="instead: recompute this submission's digest from the log, by replay"
    )
    _nats_options(p)
    p.set_defaults(func=cmd_verify)

    p = command("export-log", "write the full event log with stream metadata to Parquet or JSON Lines")
    p.add_argument("--out", type=Path, required=True, help="the file to write (.parquet or .jsonl)")
    p.add_argument("--format", choices=["parquet", "jsonl"], help="default: from the file name")
    _nats_options(p)
    p.set_defaults(func=cmd_export_log)

    p = command("export", "export one view to CSV, Parquet, Excel (xlsx) or HXL-tagged CSV")
    p.add_argument("--view", default="totals_by_county", help="the view (default totals_by_county)")
    p.add_argument(
        "--format",
        choices=["csv", "parquet", "xlsx", "hxl"],
        help="default: from --out's extension (.csv, .parquet, .xlsx)",
    )
    p.add_argument("--out", type=Path, required=True, help="the file to write")
    p.add_argument("--excel", action="store_true", help="CSV for Excel: UTF-8 with a byte-order mark")
    p.add_argument(
        "--sep",
        choices=[",", ";", "tab"],
        help="a CSV's separator (default ',', or ';' with --lang sq or pl, as Excel there expects)",
    )
    p.add_argument("--lang", choices=["en", "sq", "pl"], help="the spreadsheet's language: sq and pl separate by ';'")
    p.add_argument("--note", action="store_true", help="a CSV's first line says what it is as of (# …)")
    _db_option(p)
    _nats_options(p)  # beside a running projector, a view its snapshot lacks comes from a copy it writes
    p.set_defaults(func=cmd_export)

    p = command("report", "write a self-contained HTML report with charts, a section per country")
    p.add_argument("--out", type=Path, default=Path("report.html"), help="the HTML file (default report.html)")
    p.add_argument("--country", help="only this country's section, by its code (AL, PL)")
    p.add_argument("--campaign", help="only the actions of this campaign (its campaign_id)")
    p.add_argument("--from", dest="start", metavar="DATE", help="only actions that started on this day or later")
    p.add_argument("--to", dest="end", metavar="DATE", help="only actions that started on this day or earlier")
    p.add_argument("--title", help="the report's title (default: one in the report's language)")
    p.add_argument("--organisation", help="the issuing organisation, above the title and on every printed page")
    p.add_argument(
        "--lang",
        choices=["sq", "pl", "en"],
        help="the report's language (default: the language of its one country, else English)",
    )
    p.add_argument(
        "--measure",
        choices=["participants", "sessions", "events", "teams", "materials"],
        help="what the county maps shade (default: participants where a country held sessions, else events)",
    )
    p.add_argument(
        "--submission", metavar="ID", help="instead: one submission's figures as submitted, and changes since"
    )
    _db_option(p)
    _nats_options(p)  # beside a running projector, figures its snapshot lacks come from a copy it writes
    p.set_defaults(func=cmd_report)

    p = command("submit", "as a coordinator: submit a country's figures for a period (a report_submitted event)")
    p.add_argument("--country", required=True, help="the country's code (PL, AL)")
    p.add_argument("--period", required=True, help="a year (2014), a month (2014-03) or a day")
    p.add_argument("--plan", help="only the actions under a task of this national action plan (its plan_id)")
    p.add_argument("--title", required=True, help="what the submission is, e.g. 'Annual report to the Sejm 2014'")
    p.add_argument("--to", dest="submitted_to", help="to whom: parliament, a monitoring body, a donor")
    p.add_argument("--dry-run", action="store_true", help="print the figures and their digest; publish nothing")
    _agency_option(p)
    _db_option(p, default_help="the projection the figures are read from; default ./outreach.duckdb")
    _nats_options(p)
    p.set_defaults(func=cmd_submit)

    p = command("sql", "run a read-only SQL query on the projection and print the result")
    p.add_argument("query")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    _db_option(p)
    _nats_options(p)
    p.set_defaults(func=cmd_sql)

    p = command("demo", "publish the seed reports, project them, and print the totals")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path("outreach-demo"),
        help="where the embedded server stores its data (default ./outreach-demo)",
    )
    _nats_options(p)
    _db_option(p, default_help="default: outreach.duckdb in --data-dir")
    p.set_defaults(func=cmd_demo)

    p = command("bench", "measure publishing, projecting and replaying against their floors and ceilings")
    p.add_argument("--events", type=int, default=1_000_000, help="events to generate (default 1,000,000)")
    p.add_argument("--sample", type=int, default=5_000, help="events for the naive projector (default 5,000)")
    p.add_argument("--latency-rate", type=int, default=2_000, help="events/s for the latency run (default 2,000)")
    p.add_argument("--latency-seconds", type=float, default=10.0, help="length of the latency run (default 10)")
    p.add_argument("--out", type=Path, help="also write the figures as JSON to this file")
    p.add_argument("--workdir", type=Path, help="where to keep the temporary server and databases")
    p.add_argument(
        "--memory",
        type=_event_counts,
        metavar="N,N,...",
        help="instead: one stream (stored without waiting for the disk), the live projector's and a replay's "
        "peak memory and the totals queries as it reaches each size (e.g. 1000000,3000000)",
    )
    p.set_defaults(func=cmd_bench)

    p = command("auth", "generate and maintain least-privilege NATS users (agencies, auditor, projector, admin)")
    auth = p.add_subparsers(dest="auth_command", required=True, metavar="ACTION")
    a = auth.add_parser(
        "init",
        help="generate the server configuration and every user's credentials",
        epilog=EPILOG["auth"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a.add_argument("--dir", type=Path, required=True, help="where to write nats-server.conf and credentials/")
    a.add_argument("--agency", action="append", default=[], help="an agency's slug (repeat for each)")
    a.add_argument("--stream", default="OUTREACH")
    a.add_argument("--nats", dest="nats_url", default="nats://127.0.0.1:4222", help="URL written to credentials")
    a.set_defaults(func=cmd_auth_init)
    a = auth.add_parser(
        "add-agency",
        help="add one agency with new credentials",
        epilog="example:\n  outreach auth add-agency --dir ./auth pl-opolskie-voivodeship-office",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a.add_argument("name")
    a.add_argument("--dir", type=Path, required=True)
    a.add_argument(
        "--coordinates",
        action="append",
        default=[],
        metavar="COUNTRY",
        help="make it a coordinator of this country (repeat): it may submit the country's figures and link any of "
        "its actions; the admin publishes the appointment (coordinator_appointed) to the stream",
    )
    a.add_argument("--nats", dest="nats_url", help="the server the appointment is published to (default: from DIR)")
    a.set_defaults(func=cmd_auth_change, change="add")
    a = auth.add_parser(
        "add-analyst",
        help="add one analyst with credentials of their own (queries are shared fairly between users)",
        epilog="example:\n  outreach auth add-analyst --dir ./auth jana",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a.add_argument("name")
    a.add_argument("--dir", type=Path, required=True)
    a.set_defaults(func=cmd_auth_change, change="add-analyst")
    a = auth.add_parser(
        "revoke",
        help="remove an agency's user",
        epilog="example:\n  outreach auth revoke --dir ./auth al-old-partner",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a.add_argument("name")
    a.add_argument("--dir", type=Path, required=True)
    a.set_defaults(func=cmd_auth_change, change="revoke")

    p = command("schema", "print the JSON Schema of every event type")
    p.add_argument("--out", type=Path, help="write one <event_type>.schema.json file per type into this folder")
    p.set_defaults(func=cmd_schema)
    return parser


def _nats_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("NATS")
    g.add_argument(
        "--nats",
        dest="nats_url",
        help="NATS URL, or several comma-separated for a cluster (OUTREACH_NATS_URL; default nats://127.0.0.1:4222)",
    )
    g.add_argument("--nats-user", help="user name (OUTREACH_NATS_USER)")
    g.add_argument("--nats-password", help="password (prefer OUTREACH_NATS_PASSWORD: flags show in `ps`)")
    g.add_argument("--nats-token", help="token (prefer OUTREACH_NATS_TOKEN)")
    g.add_argument("--nats-creds", type=Path, help="credentials file (OUTREACH_NATS_CREDS)")
    g.add_argument("--nats-inbox-prefix", help="inbox prefix this user may receive on (OUTREACH_NATS_INBOX_PREFIX)")
    g.add_argument("--stream", help="stream name (OUTREACH_STREAM; default OUTREACH)")


def _agency_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--agency",
        help="your agency's slug (OUTREACH_AGENCY, which `outreach auth` writes into each agency's credentials)",
    )


def _db_option(p: argparse.ArgumentParser, default_help: str = "default ./outreach.duckdb") -> None:
    p.add_argument("--db", type=Path, help=f"DuckDB projection file (OUTREACH_DB; {default_help})")


def _run(coro: Any) -> Any:
    """asyncio.run, imported when a command needs it: `outreach sql` on a file starts without it."""
    import asyncio

    return asyncio.run(coro)


def settings_from(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Flags given on the command line win over OUTREACH_* variables, which win over defaults."""
    keys = (
        "nats_url",
        "nats_user",
        "nats_password",
        "nats_token",
        "nats_creds",
        "nats_inbox_prefix",
        "stream",
        "db",
        "stream_replicas",
        "agency",
    )
    given = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    given.update(overrides)
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SettingsInvalid(f"invalid settings: {problems}") from None


# ---- commands ------------------------------------------------------------------------------------


def cmd_server(args: argparse.Namespace) -> int:
    from outreach.publishing import ensure_stream
    from runtime.server import ClusterNode, EmbeddedServer

    settings = settings_from(args)
    node = None
    if args.cluster or args.routes or args.server_name:
        if not (args.cluster and args.routes and args.server_name):
            raise SettingsInvalid("a cluster server needs all of --server-name, --cluster and --routes")
        routes = tuple(r.strip() for r in args.routes.split(",") if r.strip())
        node = ClusterNode(args.server_name, args.cluster, routes, args.cluster_name)
    if args.auth and args.config:
        raise SettingsInvalid("give --auth DIR or --config FILE, not both (--auth writes DIR/nats-server.conf)")
    if args.auth_agencies and not args.auth:
        raise SettingsInvalid("--agency is for --auth DIR; to add an agency later: outreach auth add-agency")
    config = _auth_config(args, settings) if args.auth else args.config
    server = EmbeddedServer(args.data_dir, port=args.port, config_file=config, cluster=node)
    # SIGTERM stops the server from the first moment: one arriving while it starts killed this
    # process and left nats-server running, holding the port and the data directory.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.start()
        if config is None:
            print(OPEN_SERVER_WARNING, file=sys.stderr)
        if node is not None:
            print(
                "when all servers run, create the stream once: outreach stream --replicas 3 "
                "--nats <every server's URL, comma-separated>"
            )
        elif config is None:
            _run(ensure_stream(settings.model_copy(update={"nats_url": server.url})))
        elif args.auth:
            admin = _credentials_settings(args.auth / "credentials" / "admin.env", server.url, settings)
            _run(ensure_stream(admin))
            print(f"users and credentials in {args.auth}; each agency's in {args.auth / 'credentials'}/<agency>.env")
        else:
            print("with --config, create the stream as admin: outreach stream (with the admin's credentials)")
        print(f"nats-server with JetStream listening on {server.url}, storing in {args.data_dir}")
        print("stop with Ctrl-C")
        sys.stdout.flush()
        assert server.process is not None
        server.process.wait()
        print(f"nats-server exited with status {server.process.returncode}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


OPEN_SERVER_WARNING = (
    "warning: this server is open: it accepts anonymous clients, and anyone who can reach it may publish as any "
    "agency, read every event, or delete the stream. Close it with users and an account per agency:\n"
    "  outreach server --auth ./auth --agency <agency-slug> [--agency …]\n"
    "(see README, Security model)"
)


def _auth_config(args: argparse.Namespace, settings: Settings) -> Path:
    """The configuration in the --auth folder, made there on first use."""
    from outreach import auth

    if (args.auth / auth.STATE).exists():
        if args.auth_agencies:
            raise SettingsInvalid(
                f"{args.auth} has users already; add an agency with `outreach auth add-agency --dir {args.auth} NAME`"
            )
        return args.auth / auth.CONFIG
    port = args.port or 4222
    agencies = args.auth_agencies
    config = auth.init(args.auth, agencies, settings.stream, f"nats://127.0.0.1:{port}")
    print(f"generated users for {len(agencies)} agenc{'y' if len(agencies) == 1 else 'ies'} in {args.auth}")
    return config


def _credentials_settings(path: Path, url: str, base: Settings) -> Settings:
    """Settings with the user and password of one credentials file, at ``url``."""
    values = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return base.model_copy(
        update={
            "nats_url": url,
            "nats_user": values.get("OUTREACH_NATS_USER"),
            "nats_password": SecretStr(values.get("OUTREACH_NATS_PASSWORD", "")),
            "nats_inbox_prefix": values.get("OUTREACH_NATS_INBOX_PREFIX"),
        }
    )


def _interrupt(signum: int, frame: object) -> None:  # noqa: ARG001
    """SIGTERM stops the foreground server as Ctrl-C does."""
    raise KeyboardInterrupt


def cmd_publish(args: argparse.Namespace) -> int:
    from consumers.replay import Progress
    from outreach.publishing import agency_of, publish
    from runtime.interpreter import tune_gc

    tune_gc()
    settings = settings_from(args)
    if args.wait is not None:
        agency_of(settings)  # refuse before publishing when receipts could not be asked for
    wait = None if args.dry_run else args.wait
    printer = ProgressPrinter(sys.stderr, label="publish")
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        printer(Progress(done, total, done, time.monotonic() - started))

    files, skip = args.files, args.skip_invalid
    report = _run(publish(settings, files, skip, wait, args.retract_missing, args.dry_run, progress))
    return _print_publish_report(report)


def _print_publish_report(report: Any) -> int:
    from schemas.files import where as file_where

    for loaded in report.files:
        for problem in loaded.problems:
            print(f"skipped: {loaded.path}: {problem}", file=sys.stderr)
    for plan in report.plans:
        for line in plan.lines():
            print(line)
        for line in plan.warnings():
            print(line, file=sys.stderr)
    if not report.sent:
        sends = sum(len(plan.sends()) for plan in report.plans)
        refused = sum(len(plan.refused()) for plan in report.plans)
        print(f"dry run: nothing was sent; {sends} event(s) would be sent, {refused} row(s) refused")
        return 1 if refused else 0
    pub = report.published
    print(
        f"{pub.total} event(s): {pub.stored} stored, {pub.duplicates} duplicate(s) already stored, "
        f"{len(pub.failed)} failed"
    )
    for failure in pub.failed:
        where = f"{file_where(failure.line)}: " if failure.line is not None else ""
        print(f"failed: {where}event {failure.event_id}: {failure.reason}", file=sys.stderr)
    if report.receipts is None:
        return 1 if pub.failed else 0
    fates = _count_fates(report.receipts)
    print(
        f"projector: {fates['accepted']} accepted, {fates['duplicate']} duplicate(s), {fates['rejected']} rejected, "
        f"{len(report.unanswered)} without a receipt yet"
    )
    _print_receipts(report.receipts, _sent_origins(report))
    for receipt in report.receipts:
        if receipt.fate == "rejected":
            print(
                f"rejected: event {receipt.event_id} (stream sequence {receipt.stream_seq}): {receipt.reason}",
                file=sys.stderr,
            )
    for event_id in report.unanswered:
        print(f"no receipt yet: event {event_id}; ask later with `outreach status`", file=sys.stderr)
    return 1 if pub.failed or fates["rejected"] or report.unanswered else 0


def _sent_origins(report: Any) -> dict[str, Any]:
    """event_id -> where in a file it came from, for the events this publish sent."""
    from producers.rows import Origin

    return {str(s.event.event_id): Origin.read(s.headers) for plan in report.plans for s in plan.sends() if s.headers}


def _clean_text(text: str, limit: int) -> str:
    from producers.rows import clean

    return clean(text, limit)


def _print_receipts(receipts: Sequence[Any], origin_of: Callable[[Any], Any] | dict[str, Any]) -> None:
    """Receipts as a table: each event's file, sheet and row (or line) and reference beside it."""
    rows = []
    for r in receipts:
        origin = origin_of.get(r.event_id or "") if isinstance(origin_of, dict) else origin_of(r)
        rows.append(
            (
                r.stream_seq,
                r.fate,
                r.event_type or "?",
                r.event_id or "(no event_id)",
                r.reference or "",
                origin.file if origin else "",
                origin.where if origin else "",
                _clean_text(r.reason or r.note or "", 300),
            )
        )
    columns = ["stream_seq", "fate", "event_type", "event_id", "reference", "file", "where", "reason"]
    write_result(columns, rows, "table", sys.stdout)


def _count_fates(receipts: Sequence[Any]) -> dict[str, int]:
    fates = {"accepted": 0, "duplicate": 0, "rejected": 0}
    for receipt in receipts:
        fates[receipt.fate] += 1
    return fates


def cmd_status(args: argparse.Namespace) -> int:
    from outreach.publishing import agency_of, agency_status

    settings = settings_from(args)
    agency = agency_of(settings)
    found = _run(agency_status(settings, agency, args.since, args.after_seq, args.rejected))
    for warning in found.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        for r in found.shown:
            origin = found.origins.get(r.stream_seq)
            extra = {"file": origin.file, "sheet": origin.sheet, "row_or_line": origin.number} if origin else {}
            print(json.dumps({**r.model_dump(mode="json"), **extra}, ensure_ascii=False))
    else:
        _print_receipts(found.shown, lambda r: found.origins.get(r.stream_seq))
    fates = _count_fates(found.found)
    print(
        f"agency {agency}: {fates['accepted']} accepted, {fates['duplicate']} duplicate(s), "
        f"{fates['rejected']} rejected (projector as of stream sequence {found.as_of_seq})",
        file=sys.stderr,
    )
    for pair in found.pairs:
        line = f"possible double report: {pair.action_a} and {pair.action_b} (score {pair.score}): {pair.reason}"
        print(_clean_text(line, 600), file=sys.stderr)
    if found.pairs_refused:
        print(f"warning: {_clean_text(found.pairs_refused, 300)}", file=sys.stderr)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from producers.files import load_files
    from producers.rows import FilePlan

    loaded = load_files(args.files, skip_invalid=True)
    bad = 0
    for one in loaded:
        for problem in one.problems:
            print(f"{one.path}: {problem}")
        invalid = len({(p.sheet, p.line) for p in one.problems})
        bad += invalid
        for warning in FilePlan(one).warnings():
            print(warning, file=sys.stderr)
        print(
            f"{one.path}: {len(one.events)} valid event(s), {invalid} invalid",
            file=sys.stderr,
        )
    return 1 if bad else 0


def cmd_template(args: argparse.Namespace) -> int:
    from producers.template import write_template
    from producers.template_text import language_of

    out = write_template(args.out, args.lang or language_of(args.agency), args.agency)
    print(f"wrote {out}: fill in a row per action on the sheet of its kind, then `outreach validate {out}`")
    return 0


def cmd_project(args: argparse.Namespace) -> int:
    from runtime.memory import data_bound_mib, limit_data, tune_allocators

    tune_allocators()  # before pyarrow is imported
    from consumers.app import run_projector
    from consumers.replay import Progress
    from runtime.interpreter import tune_gc

    tune_gc()
    settings = settings_from(args)
    printer = ProgressPrinter(sys.stderr, label="project")
    started = time.monotonic()

    def progress(projector: Any) -> None:
        printer(Progress(projector.last_seq, 0, projector.stats.messages, time.monotonic() - started))

    def started_at(projector: Any) -> None:
        print(
            f"project: stream {settings.stream} into {settings.db}, from sequence {projector.last_seq + 1}",
            file=sys.stderr,
            flush=True,
        )

    limit_data(data_bound_mib(settings.memory_limit_mb))
    stats = _run(run_projector(settings, until_caught_up=args.until_caught_up, on_batch=progress, on_start=started_at))
    print(
        f"applied {stats.messages} message(s) in {stats.batches} batch(es): {stats.accepted} accepted, "
        f"{stats.rejected} rejected, {stats.duplicates} duplicate(s); database {settings.db}; "
        f"peak memory {peak_rss_mib():.0f} MiB"
    )
    return 0


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r} (e.g. 2018-01-15T00:00:00Z)") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone, e.g. {text}Z for UTC")
    return value


def cmd_replay(args: argparse.Namespace) -> int:
    from consumers.replay import replay
    from runtime.interpreter import tune_gc

    tune_gc()
    settings = settings_from(args)
    started = time.monotonic()
    stats = _run(
        replay(settings, args.db, until_seq=args.until_seq, as_of=args.as_of, progress=ProgressPrinter(sys.stderr))
    )
    seconds = time.monotonic() - started
    rate = stats.messages / seconds if seconds > 0 else 0.0
    print(
        f"replayed {stats.messages} message(s) into {args.db} in {seconds:.1f}s ({rate:,.0f}/s): "
        f"{stats.accepted} accepted, {stats.rejected} rejected, {stats.duplicates} duplicate(s); "
        f"peak memory {peak_rss_mib():.0f} MiB"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from consumers.verify import verify, verify_submission
    from runtime.interpreter import tune_gc

    tune_gc()
    settings = settings_from(args)
    if args.submission:
        check = _run(verify_submission(settings, args.submission))
        s = check.submission
        if check.matches:
            print(
                f"OK: submission {s.submission_id} ({s.label}): the figures recomputed from stream {settings.stream} "
                f"up to sequence {s.as_of_seq} have the digest submitted, {s.figures_sha256}"
            )
            return 0
        print(
            f"DIFFERENT: submission {s.submission_id} ({s.label}) states the digest {s.figures_sha256}, but the "
            f"figures recomputed from stream {settings.stream} up to sequence {s.as_of_seq} have "
            f"{check.recomputed_sha256}"
        )
        return 1
    source = _readable(settings)  # beside a running projector: a whole copy, so that every table is compared
    report = _run(verify(settings, source))
    if report.ok:
        what = "the totals of the snapshot" if report.snapshot else str(source)
        print(
            f"OK: {what} equal a fresh fold of stream {settings.stream} up to sequence {report.last_seq}, "
            f"and the stream's digest matches the one the projector recorded"
        )
        return 0
    print(f"DIFFERENCES between {source} and stream {settings.stream} up to sequence {report.last_seq}:")
    for problem in report.problems:
        print(f"- {problem}" if not problem.startswith("    ") else problem)
    return 1


def cmd_export_log(args: argparse.Namespace) -> int:
    from consumers.export import export_log

    settings = settings_from(args)
    count = _run(export_log(settings, args.out, args.format))
    print(f"wrote {count} message(s) of stream {settings.stream} to {args.out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from projections.exports import export_view, format_for
    from projections.snapshot import SNAPSHOT_VIEWS

    settings = settings_from(args)
    fmt = format_for(args.out, args.format)
    source = _readable(settings, carries=lambda _: args.view in SNAPSHOT_VIEWS)
    sep = {"tab": "\t", None: ";" if args.lang in ("sq", "pl") else ","}.get(args.sep, args.sep)
    count, as_of = export_view(source, args.view, fmt, args.out, excel=args.excel, sep=sep, note=args.note)
    if fmt == "hxl" or args.excel:
        print(f"note: {NEUTRALISED_NOTE}", file=sys.stderr)
    print(f"note: {as_of.sentence(args.view)}", file=sys.stderr)
    print(f"wrote {count} row(s) of {args.view} to {args.out} ({fmt}{', for Excel' if args.excel else ''})")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from projections.report import Filters, Heading, has_figures, write_report
    from projections.submission import has_coordination

    settings = settings_from(args)
    if args.submission:
        from projections.submission import write_submission_report

        s = write_submission_report(_readable(settings), args.out, args.submission)
        print(f"wrote {args.out}: {s.label}, as submitted (digest {s.figures_sha256}), and the changes since")
        return 0
    filters = Filters(
        country=args.country.strip().upper() if args.country else None,
        campaign=args.campaign,
        start=_report_day("--from", args.start, 0),
        end=_report_day("--to", args.end, 1),
    )
    heading = Heading(title=args.title, organisation=args.organisation)
    lang = write_report(
        _readable(settings, carries=lambda db: has_figures(db) and has_coordination(db)),
        args.out,
        filters,
        lang=args.lang,
        heading=heading,
        measure=args.measure,
    )
    print(f"wrote {args.out} (in {LANGUAGE_NAMES[lang]}); open it in any browser (it needs no network)")
    return 0


LANGUAGE_NAMES = {"en": "English", "sq": "Albanian", "pl": "Polish"}


def _report_day(option: str, text: str | None, end: int) -> date | None:
    """The first (``end`` 0) or last (1) day of a report's date option: ``--to 2025`` is 2025-12-31."""
    from schemas.dates import DateInvalid, span

    if text is None:
        return None
    try:
        return span(text)[end]
    except DateInvalid as exc:
        raise SettingsInvalid(f"{option} {text}: {exc}") from None


def _readable(settings: Settings, carries: Callable[[Path], bool] | None = None) -> Path:
    """The projection to read (``outreach.reading.readable``); which one is said on stderr."""
    from outreach.reading import readable

    source = readable(settings, carries)
    if source.note is not None:
        print(f"note: {source.note}", file=sys.stderr)
    return source.path


def cmd_sql(args: argparse.Namespace) -> int:
    from outreach.reading import run_sql

    result = run_sql(settings_from(args), args.query)
    neutralised = write_result(result.columns, result.rows, args.format, sys.stdout, terminal=sys.stdout.isatty())
    if neutralised:
        print(f"note: {neutralised} cell(s): {NEUTRALISED_NOTE}", file=sys.stderr)
    print(f"({result.as_of})", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from importlib import resources

    from consumers.app import run_projector
    from outreach.publishing import ensure_stream, publish
    from projections.query import run_query
    from runtime.server import EmbeddedServer

    use_embedded = args.nats_url is None and "OUTREACH_NATS_URL" not in os.environ
    db = args.db or (Path(args.data_dir) / "outreach.duckdb" if use_embedded else None)
    server = EmbeddedServer(Path(args.data_dir) / "nats", port=0).start() if use_embedded else None
    try:
        overrides: dict[str, Any] = {"nats_url": server.url} if server else {}
        if db is not None:
            overrides["db"] = db
        settings = settings_from(args, **overrides)
        where = f"embedded nats-server at {server.url} (data in {args.data_dir})" if server else settings.nats_url
        print(f"NATS: {where}")
        _run(ensure_stream(settings))
        seeds = resources.files("schemas.data").joinpath("seed_events.jsonl")
        with resources.as_file(seeds) as seed_path:
            report = _run(publish(settings, [seed_path], False))
        pub = report.published
        print(
            f"published the seed reports: {pub.total} event(s), {pub.stored} stored, "
            f"{pub.duplicates} already stored, {len(pub.failed)} failed"
        )
        if pub.failed:
            return _print_publish_report(report)
        stats = _run(run_projector(settings, until_caught_up=True))
        print(f"projected {stats.messages} new message(s): {stats.accepted} accepted, {stats.rejected} rejected")
        for title, query in DEMO_QUERIES.items():
            result = run_query(settings.db, query)
            print(f"\n{title}")
            write_result(result.columns, result.rows, "table", sys.stdout)
        print(
            f"\nThe projection is in {settings.db}. Query it with, for example:\n"
            f'  {_this_program()} sql --db {settings.db} "SELECT * FROM totals_by_county"'
        )
        return 0
    finally:
        if server:
            server.stop()


def _this_program() -> str:
    """How to run this ``outreach`` again from the current directory, venv activated or not: the
    ``outreach`` on PATH when it is this one, else its path (e.g. .venv/bin/outreach)."""
    import shutil

    here = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if here is None or here.name != "outreach" or not here.exists():  # python -m outreach
        return f"{_relative(Path(sys.executable))} -m outreach"
    found = shutil.which("outreach")
    if found and Path(found).resolve() == here.resolve():
        return "outreach"
    return str(_relative(here))


def _relative(path: Path) -> Path:
    try:
        return path.absolute().relative_to(Path.cwd())
    except ValueError:
        return path.absolute()


def cmd_bench(args: argparse.Namespace) -> int:
    from outreach.bench import main as bench

    if args.events < 1_000 or args.sample < 100 or args.latency_rate < 100:
        raise SettingsInvalid("bench needs --events >= 1000, --sample >= 100 and --latency-rate >= 100")
    bench(args.events, args.sample, args.latency_rate, args.latency_seconds, args.out, args.workdir, args.memory)
    return 0


def _event_counts(text: str) -> list[int]:
    """``--memory``'s sizes: whole numbers of events, at least 1,000 each."""
    try:
        counts = [int(part.replace("_", "")) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of event counts such as 1000000,3000000") from None
    if not counts or min(counts) < 1_000:
        raise argparse.ArgumentTypeError(f"{text!r}: each size needs at least 1,000 events")
    return counts


def cmd_auth_init(args: argparse.Namespace) -> int:
    from outreach import auth

    config = auth.init(args.dir, args.agency, stream=args.stream, nats_url=args.nats_url)
    print(f"wrote {config} and {len(args.agency) + 4} credential file(s) in {args.dir / 'credentials'} (mode 0600)")
    print(f"start the server:  outreach server --config {config} --data-dir nats-data")
    print(f"create the stream: env $(cat {args.dir / 'credentials' / 'admin.env'} | xargs) outreach stream")
    return 0


def cmd_auth_change(args: argparse.Namespace) -> int:
    from outreach import auth
    from outreach.publishing import publish_events

    coordinates = tuple(c.strip().upper() for c in getattr(args, "coordinates", []))
    if args.change == "add":
        config = auth.add_agency(args.dir, args.name, coordinates)
    elif args.change == "add-analyst":
        config = auth.add_analyst(args.dir, args.name)
    else:
        config = auth.revoke(args.dir, args.name)
    done = "revoked" if args.change == "revoke" else "added"
    print(
        f"{done} {args.name}; rewrote {config}. Reload the server to apply it: nats-server --signal reload "
        f"(or restart `outreach server`)"
    )
    if coordinates:
        state = json.loads((args.dir / auth.STATE).read_text())
        url = args.nats_url or state["nats_url"]
        admin = _credentials_settings(args.dir / "credentials" / "admin.env", url, settings_from(args))
        for event in auth.appointments(args.dir, args.name):
            country = event["country"]
            report = _run(publish_events(admin, [event]))
            if report.failed:
                raise SettingsInvalid(
                    f"{args.name} may now submit {country}'s figures at the broker, but the appointment was not "
                    f"published to {url}: {report.failed[0].reason}. Run this command again once the server runs"
                )
            new = "published" if report.stored else "already in the log"
            print(f"appointment of {args.name} as a coordinator of {country}: {new} (coordinator_appointed)")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from outreach.publishing import agency_of, publish_events
    from outreach.submitting import read_figures, submission_event
    from schemas.dates import DateInvalid, span

    settings = settings_from(args)
    agency = agency_of(settings)
    country = args.country.strip().upper()
    try:
        start, end = span(args.period)
    except DateInvalid as exc:
        raise SettingsInvalid(f"--period {args.period}: {exc}") from None
    found = read_figures(_readable(settings), country, start, end, args.plan)
    print(f"{len(found.rows)} figure row(s) of {country}, {start} to {end}, as of stream sequence {found.as_of_seq}")
    print(f"figures_sha256 {found.digest}")
    if args.dry_run:
        from schemas.submission import FIGURE_COLUMNS

        write_result(list(FIGURE_COLUMNS), found.rows, "table", sys.stdout)
        return 0
    event = submission_event(agency, found, args.title, args.submitted_to)
    report = _run(publish_events(settings, [event]))
    if report.failed:
        raise SettingsInvalid(f"the submission was not published: {report.failed[0].reason}")
    print(f"submitted: submission {event['event_id']} (stream sequence {report.last_seq})")
    print(f"reproduce it: outreach report --submission {event['event_id']}; check it: outreach verify --submission ID")
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    from outreach.publishing import ensure_stream

    settings = settings_from(args)
    _run(ensure_stream(settings))
    print(f"stream {settings.stream} is in place, with immutable history")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from pydantic import TypeAdapter

    from schemas.events import EVENT_TYPES, Event

    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, model in EVENT_TYPES.items():
            path = args.out / f"{name}.schema.json"
            path.write_text(json.dumps(model.model_json_schema(), indent=2, ensure_ascii=False) + "\n", "utf-8")
            print(path)
        return 0
    schema = TypeAdapter(Event).json_schema()
    schema["title"] = "Outreach Ledger event"
    print(json.dumps(schema, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
