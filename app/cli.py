"""Command line: `serve` the API, and create / list / revoke API keys."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

import anyio
import uvicorn

from app.accounting.usage_report import usage_command
from app.api.auth import Authenticator, KeyFile
from app.logs import configure_logging
from app.main import create_app
from app.settings import Settings, load_settings


def _ensure_a_key(settings: Settings) -> None:
    """First run: with auth on and no key anywhere, create one and show it once."""
    authenticator = Authenticator(
        KeyFile(settings.keys_path), settings.api_keys, allow_unauthenticated=settings.allow_unauthenticated
    )
    if settings.allow_unauthenticated or authenticator.has_keys():
        return
    secret = authenticator.key_file.create("default")
    print(
        "\nNo API key existed, so one was created (name 'default'). It is shown only this once:\n\n"
        f"    {secret}\n\nUse it as: Authorization: Bearer <key>   (stored hashed in {settings.keys_path})\n",
        flush=True,
    )


def realtime_message_limit(settings: Settings) -> int:
    """Largest WebSocket message: one append of the largest audio, base64-encoded, plus its envelope."""
    return 4 * -(-settings.realtime.max_append_bytes // 3) + 64 * 1024


def _serve(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    settings = load_settings(args.config, **overrides)
    configure_logging(settings.log_level, settings.log_format)
    _ensure_a_key(settings)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        ws_max_size=realtime_message_limit(settings),
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    """A dedicated job worker: the server's app with its job workers, its lifespan run without an HTTP listener."""
    settings = load_settings(args.config)
    configure_logging(settings.log_level, settings.log_format)
    if not settings.jobs.enabled:
        print("error: jobs.enabled is false: there are no jobs to run", file=sys.stderr)
        return 1
    # By default as many jobs as a model has slots: a worker serves no interactive requests to leave room for.
    slots = max((model.max_concurrency for model in settings.models.values()), default=1)
    workers = args.workers or max(1, settings.jobs.workers, slots)
    if args.nice:
        # Jobs are batch work: on a host shared with servers, their decodes get the cores' leftovers.
        os.nice(args.nice)
    app = create_app(settings, job_workers=workers, job_worker=True)

    async def run() -> None:
        async with app.router.lifespan_context(app):
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for received in signals:
                    print(f"worker: {signal.Signals(received).name}, stopping", file=sys.stderr, flush=True)
                    return

    anyio.run(run)
    return 0


def _keys(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    key_file = KeyFile(settings.keys_path)
    if args.action == "create":
        try:
            secret = key_file.create(args.name, admin=args.admin)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(secret)
        print(f"created key {args.name!r}; the secret above is not stored and will not be shown again", file=sys.stderr)
        return 0
    if args.action == "list":
        for record in [*settings.api_keys, *key_file.records()]:
            print(f"{record.name}\tcreated {record.created or '-'}\tsha256:{record.sha256[:12]}…")
        return 0
    if key_file.revoke(args.name):
        print(f"revoked key {args.name!r}", file=sys.stderr)
        return 0
    print(f"error: no key named {args.name!r} in {settings.keys_path}", file=sys.stderr)
    return 1


def _usage(args: argparse.Namespace) -> int:
    return usage_command(load_settings(args.config).ledger, args.key, args.since, as_json=args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    parser.add_argument("--config", help="YAML config file (default: $STT_CONFIG or configs/default.yaml)")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the HTTP server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(handler=_serve)
    worker = commands.add_parser("worker", help="run async jobs only (no HTTP listener)")
    worker.add_argument(
        "--workers", type=int, help="jobs run at once (default: the most slots of a model, or jobs.workers if more)"
    )
    worker.add_argument(
        "--nice", type=int, default=10, help="lower this process's CPU priority by this much (default 10; 0: none)"
    )
    worker.set_defaults(handler=_worker)
    keys = commands.add_parser("keys", help="manage API keys")
    key_actions = keys.add_subparsers(dest="action", required=True)
    create = key_actions.add_parser("create", help="create a key and print its secret once")
    create.add_argument("name")
    create.add_argument("--admin", action="store_true", help="may use the /admin views")
    key_actions.add_parser("list", help="list key names (never secrets)")
    revoke = key_actions.add_parser("revoke", help="revoke a key by name")
    revoke.add_argument("name")
    keys.set_defaults(handler=_keys)
    usage = commands.add_parser("usage", help="per-key usage totals from the ledger")
    usage.add_argument("--key", help="only this key")
    usage.add_argument("--since", help="ISO 8601 date or date-time (UTC if naive)")
    usage.add_argument("--json", action="store_true", help="print JSON instead of a table")
    usage.set_defaults(handler=_usage)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = args.handler
    return int(handler(args))
