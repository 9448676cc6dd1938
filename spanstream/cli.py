"""The `spanstream` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime

from pydantic import ValidationError

from spanstream.settings import load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spanstream", description="Observability for LLM agents on Kafka.")
    commands = parser.add_subparsers(dest="command", required=True)
    infra = commands.add_parser("infra", help="start, stop or show Kafka and PostgreSQL on loopback")
    infra.add_argument("action", choices=["up", "down", "status"])
    commands.add_parser("migrate", help="apply pending PostgreSQL and ClickHouse migrations")
    commands.add_parser("worker", help="run the ClickHouse sinks and a fold worker (needs a ClickHouse server)")
    commands.add_parser("api", help="run the HTTP API (needs a ClickHouse server)")
    commands.add_parser("serve", help="run the API, the ClickHouse sinks and a fold worker (the embedded store's way)")
    commands.add_parser("fold", help="run one fold worker: sessions, costs and health tags (no analytics store)")
    commands.add_parser("probe", help="run an MCP server prober alone (health checks to Kafka; no analytics store)")
    commands.add_parser("ingest", help="run the API for ingestion only (no analytics store)")
    commands.add_parser("dev", help="infra, migrations, worker, API and demo spans on the embedded defaults")
    replay = commands.add_parser("replay", help="rebuild the derived views from the retained spans topic")
    replay.add_argument("--reprice", action="store_true",
                        help="rebuild only the views that carry costs, at today's price rows")
    replay.add_argument("--from", dest="since", type=_moment, metavar="TIME",
                        help="rebuild in place only the sessions with spans published since TIME (ISO 8601)")
    key = commands.add_parser("create-key", help="create a project (if needed) and print a new API key for it")
    key.add_argument("project", help="project slug, e.g. default")
    key.add_argument("--role", choices=("admin", "member", "viewer"), default="admin",
                     help="what the key may do: viewer reads, member also writes spans, admin also manages the project")
    user = commands.add_parser("create-user", help="create a user (password from a prompt or stdin) in a project")
    user.add_argument("email")
    user.add_argument("--project", required=True, help="project slug; created if it does not exist")
    user.add_argument("--role", choices=("admin", "member", "viewer"), default="admin")
    sql = commands.add_parser("sql", help="run one read-only ClickHouse query over your project through the API (admin key)")
    sql.add_argument("query", help='e.g. "SELECT health_tag, count() FROM sessions FINAL GROUP BY health_tag"')
    sql.add_argument("--json", action="store_true", help="print the API's JSON answer instead of a table")
    sessions = commands.add_parser("sessions", help="recent sessions of your project as a table, through the API")
    sessions.add_argument("--hours", type=float, default=24, help="how far back (default 24)")
    sessions.add_argument("--limit", type=int, default=20, help="at most this many sessions (default 20)")
    sessions.add_argument("--health-tag", help="only sessions with this health tag")
    for client in (sql, sessions):
        client.add_argument("--url", help="the API's base URL (default http://SPANSTREAM_API_HOST:SPANSTREAM_API_PORT); "
                                          "the key comes from SPANSTREAM_API_KEY or .data/dev-api-key")
    return parser


def _api_command(args, settings) -> None:
    """`spanstream sql` and `spanstream sessions`: HTTP calls, so they work while serve holds the store."""
    import json

    from spanstream.api_client import ApiError, api_key, call_api, default_url, render_table

    try:
        key, url = api_key(settings), args.url or default_url(settings)
        if args.command == "sql":
            answer = call_api(url, key, "POST", "/api/sql", json={"sql": args.query})
            if args.json:
                print(json.dumps(answer, indent=2))
                return
            print(render_table([c["name"] for c in answer["columns"]], answer["rows"]))
            print(f"({answer['row_count']} row{'s' if answer['row_count'] != 1 else ''})")
        else:
            params = {"hours": args.hours, "limit": args.limit, **({"health_tag": args.health_tag} if args.health_tag else {})}
            items = call_api(url, key, "GET", "/api/agents/sessions", params=params)["items"]
            columns = ["session_id", "last_at", "duration_ms", "spans", "agents", "health_tag", "status", "cost_usd"]
            rows = [[item["session_id"], item["last_at"][:19].replace("T", " "), item["duration_ms"], item["spans"],
                     item["agents"], item["health_tag"], item["status"], item["cost_usd"]] for item in items]
            print(render_table(columns, rows))
            print(f"({len(rows)} session{'s' if len(rows) != 1 else ''} in the last {args.hours:g} h)")
    except ApiError as error:
        sys.exit(f"spanstream {args.command}: {error}")


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _require_server(settings, what: str) -> None:
    if settings.clickhouse_embedded:
        sys.exit(
            f"spanstream {what} alone needs a ClickHouse server (set SPANSTREAM_CLICKHOUSE_URL): the embedded "
            "store can be opened by one process only. Use `spanstream serve` to run worker and API together."
        )


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ValidationError as error:
        sys.exit(f"invalid settings:\n{error}")

    if args.command in ("serve", "worker", "dev"):
        from spanstream.metrics_dir import process_dir, use_process_dir

        if process_dir() is None:  # one /metrics for this process and the fold workers it starts
            use_process_dir(settings.data_dir / "metrics")

    # Imported per command so that `spanstream infra status` does not load faust or chdb.
    from spanstream.clickhouse import StoreUnavailable
    from spanstream.infra import InfraError
    from spanstream.kafka import KafkaUnavailable
    from spanstream.migrate import MigrationError

    if args.command in ("sql", "sessions"):
        _api_command(args, settings)
        return
    try:
        if args.command == "infra":
            from spanstream.infra import infra

            running = infra(args.action, settings)
            if args.action == "status" and not all(running.values()):
                sys.exit(3)
        elif args.command == "migrate":
            from spanstream.migrate import migrate_all

            for store, names in migrate_all(settings).items():
                print(f"{store}: " + (", ".join(names) if names else "up to date"))
        elif args.command == "dev":
            from spanstream.dev import dev

            dev(settings)
        elif args.command == "replay":
            from spanstream.clickhouse import ClickHouseStore, StoreHeldElsewhere
            from spanstream.migrate import migrate_clickhouse
            from spanstream.replay import replay
            from spanstream.replay_remote import RemoteReplayError, replay_through_server

            try:
                store = ClickHouseStore(settings).open()
            except StoreHeldElsewhere:
                # `spanstream serve` owns the embedded store: it replays, and keeps serving meanwhile.
                try:
                    replay_through_server(settings, reprice=args.reprice, since=args.since)
                except RemoteReplayError as error:
                    sys.exit(f"spanstream replay: {error}")
                return
            try:
                migrate_clickhouse(store)
                replay(settings, store, reprice=args.reprice, since=args.since)
            finally:
                store.close()
        elif args.command == "ingest":
            from spanstream.serve import run_ingest

            run_ingest(settings)
        elif args.command == "create-key":
            from spanstream.dev import create_key

            print(asyncio.run(create_key(settings, args.project, args.role)))
        elif args.command == "probe":
            from spanstream.kafka import ensure_topics
            from spanstream.migrate import migrate_postgres
            from spanstream.prober import run_prober

            ensure_topics(settings)
            asyncio.run(migrate_postgres(settings.postgres_dsn))
            run_prober(settings)
        elif args.command == "create-user":
            from api.errors import MetadataError
            from spanstream.accounts import create_user

            try:
                print(asyncio.run(create_user(settings, args.email, args.project, args.role)))
            except MetadataError as error:
                sys.exit(f"spanstream create-user: {error.message}")
        elif args.command == "fold":
            from spanstream.fold import run_fold

            run_fold(settings)
        else:
            from spanstream.serve import run

            if args.command in ("worker", "api"):
                _require_server(settings, args.command)
            run(settings, api=args.command != "worker", fold_processes=0 if args.command == "api" else settings.fold_processes)
    except (InfraError, KafkaUnavailable, StoreUnavailable, MigrationError, OSError) as error:
        sys.exit(f"spanstream {args.command}: {error}")


if __name__ == "__main__":
    main()
