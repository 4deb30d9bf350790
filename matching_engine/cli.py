"""The ``matching-engine`` command line.

Each subcommand (``serve``, ``migrate``, ``accounts``, ``replay``) registers on the
``subparsers`` object and sets a ``handler`` default, which ``main`` calls. Every subcommand reads
the same ``ME_`` settings, so they all work on the same database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

from matching_engine import __version__
from matching_engine.accounts import AccountStore, Principal, Role
from matching_engine.audit import AuditEntry, AuditLog
from matching_engine.db import create_engine
from matching_engine.migrate import upgrade
from matching_engine.replay import replay_journal
from matching_engine.service import database_breaker
from matching_engine.settings import Settings

Handler: TypeAlias = Callable[[argparse.Namespace], int]

if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="matching-engine",
        description="A price-time-priority order-matching engine.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_serve(subparsers)
    _add_migrate(subparsers)
    _add_accounts(subparsers)
    _add_replay(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return handler(args)


def _add_serve(subparsers: Subparsers) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run the REST gateway",
        description="Serve the REST API with uvicorn, in one process: the book lives in its "
        "memory. Pending migrations are applied first unless --no-migrate is given.",
    )
    serve.add_argument("--host", help="the address to listen on (default: ME_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="the port to listen on (default: ME_PORT, 8000)")
    serve.add_argument(
        "--no-migrate",
        action="store_true",
        help="do not apply pending migrations at start-up (`matching-engine migrate` did)",
    )
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    # Imported here: the other subcommands need neither the web stack nor the gateway.
    import uvicorn

    from api.app import create_app
    from api.http_protocol import HttpProtocol
    from matching_engine.logs import configure_logging
    from matching_engine.tracing import configure_tracing

    settings = Settings()
    configure_logging(settings.log_level, json=settings.log_json)
    configure_tracing(settings)
    uvicorn.run(
        create_app(settings, migrate=not args.no_migrate),
        host=settings.host if args.host is None else args.host,
        port=settings.port if args.port is None else args.port,
        # Never more: each worker would hold a book of its own.
        workers=1,
        log_level=settings.log_level,
        # Our logging as configured above, and our own line per request instead of uvicorn's.
        log_config=None,
        access_log=False,
        # httptools, with each answer sent in one write (see api.http_protocol).
        http=HttpProtocol,
        # Forwarded headers only from the proxies named; without any, uvicorn's middleware for
        # them is left out (by default it would trust them from 127.0.0.1).
        proxy_headers=settings.forwarded_allow_ips is not None,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )
    return 0


def _add_migrate(subparsers: Subparsers) -> None:
    migrate = subparsers.add_parser(
        "migrate",
        help="apply pending database migrations",
        description="Apply every pending migration, then print the revision the database is at.",
    )
    migrate.set_defaults(handler=_migrate)


def _migrate(_args: argparse.Namespace) -> int:
    print(upgrade(Settings()))
    return 0


def _add_accounts(subparsers: Subparsers) -> None:
    accounts = subparsers.add_parser("accounts", help="manage accounts and their API keys")
    actions = accounts.add_subparsers(dest="accounts_command", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create",
        help="create an account and print its API key",
        description='Create an account and print {"account_id": ..., "api_key": ...} as one '
        "JSON line. The key is shown this once; only its hash is stored.",
    )
    create.add_argument("name", help="a display name, 1 to 200 characters")
    create.add_argument("--role", required=True, choices=[role.value for role in Role])
    create.set_defaults(handler=_create_account)


def _create_account(args: argparse.Namespace) -> int:
    settings = Settings()
    upgrade(settings)
    try:
        principal, api_key = asyncio.run(_create(settings, args.name, Role(args.role)))
    except ValueError as error:
        print(f"matching-engine accounts create: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"account_id": principal.account_id, "api_key": api_key}))
    return 0


async def _create(settings: Settings, name: str, role: Role) -> tuple[Principal, str]:
    engine = create_engine(settings)
    try:
        principal, api_key = await AccountStore(engine, settings).create(name, role)
        audit = AuditLog(settings.audit_path, engine, database_breaker(settings))
        await audit.record(
            AuditEntry.new(
                actor="cli",
                action="account.create",
                target=principal.account_id,
                before=None,
                after={"name": name, "role": role.value},
                reason="account created on the command line",
            )
        )
        await audit.close()
        return principal, api_key
    finally:
        await engine.dispose()


def _add_replay(subparsers: Subparsers) -> None:
    replay = subparsers.add_parser(
        "replay",
        help="rebuild the state from the journal and print a summary",
        description="Replay every journaled command into a fresh engine, writing nothing, and "
        "print a JSON summary. Exits 1 when the newest snapshot disagrees with the replay.",
    )
    replay.set_defaults(handler=_replay)


def _replay(_args: argparse.Namespace) -> int:
    summary = asyncio.run(replay_journal(Settings()))
    print(json.dumps(summary, indent=2))
    snapshot = summary["snapshot"]
    return 1 if snapshot is not None and snapshot["matches_replay"] is False else 0


if __name__ == "__main__":
    raise SystemExit(main())
