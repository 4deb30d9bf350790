"""Accounts and their API keys.

A key reads ``me_<key_id>_<secret>``: ``key_id`` is 16 hex digits, public, and finds the account;
``secret`` is 256 random bits (``secrets.token_urlsafe(32)``). The database keeps only the
``key_id`` and the hex HMAC-SHA-256 of the secret, so a leaked database does not yield a usable
key, and the key itself is shown once, when it is created. A fast keyed hash is the right tool
here: the secrets are random and long, so nothing is gained by a slow password hash, which would
cost every request milliseconds.

The HMAC key is ``ME_KEY_SECRET`` when set. Otherwise it is generated on first use and stored in
``server_secrets``, beside the hashes it protects, so that the server and the CLI (separate
processes sharing one database) always agree on it.

``authenticate`` caches each account row it has read, keyed by ``key_id`` together with its hash;
a ``key_id`` it has not seen is looked up in the database, so a key created by the CLI while the
server runs is accepted at once.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from matching_engine.schema import accounts, server_secrets
from matching_engine.settings import Settings

__all__ = ["AccountRecord", "AccountStore", "Principal", "Role"]

logger = logging.getLogger(__name__)

_KEY_PATTERN = re.compile(r"me_(?P<key_id>[0-9a-f]{16})_(?P<secret>[A-Za-z0-9_-]{43})")
_KEY_LENGTH = len("me_") + 16 + len("_") + 43
_HMAC_SECRET_NAME = "api_key_hmac"
_MAX_NAME_LENGTH = 200


class Role(StrEnum):
    TRADER = "trader"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: what the API needs to authorize a request."""

    account_id: str
    name: str
    role: Role


@dataclass(frozen=True, slots=True)
class AccountRecord:
    account_id: str
    name: str
    role: Role
    created_at: int  # nanoseconds since the epoch

    @property
    def principal(self) -> Principal:
        return Principal(account_id=self.account_id, name=self.name, role=self.role)


class AccountStore:
    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        guard: Callable[[], AbstractAsyncContextManager[object]] = contextlib.nullcontext,
    ) -> None:
        self._engine = engine
        # Wraps every database access (the service passes its circuit breaker), so a dead
        # database fails fast here too; keys already known are checked without it.
        self._guard = guard
        self._hmac_key: bytes | None = (
            settings.key_secret.get_secret_value().encode()
            if settings.key_secret is not None
            else None
        )
        self._hmac_key_lock = asyncio.Lock()
        self._by_key_id: dict[str, tuple[str, Principal]] = {}

    async def create(self, name: str, role: Role) -> tuple[Principal, str]:
        """Create an account; return it with its API key, which exists nowhere else afterwards."""
        if not isinstance(name, str) or not 1 <= len(name) <= _MAX_NAME_LENGTH:
            raise ValueError(f"an account name has 1 to {_MAX_NAME_LENGTH} characters")
        if not isinstance(role, Role):
            raise ValueError(f"role must be one of {', '.join(Role)}")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        key_hash = _hash(await self._key(), secret)
        principal = Principal(account_id="acc_" + secrets.token_hex(8), name=name, role=role)
        async with self._guard(), self._engine.begin() as connection:
            await connection.execute(
                accounts.insert().values(
                    account_id=principal.account_id,
                    name=name,
                    role=role.value,
                    key_id=key_id,
                    key_hash=key_hash,
                    created_at=time.time_ns(),
                )
            )
        self._by_key_id[key_id] = (key_hash, principal)
        logger.info("account created", extra={"account_id": principal.account_id, "role": role})
        return principal, f"me_{key_id}_{secret}"

    async def authenticate(self, api_key: str) -> Principal | None:
        """The account the key belongs to, or ``None`` for a malformed, unknown or wrong key."""
        match = _parse(api_key)
        if match is None:
            return None
        await self._key()
        if match["key_id"] not in self._by_key_id:
            # Not seen since start: perhaps created on the command line meanwhile.
            await self._load(match["key_id"])
        return self._check(match)

    def authenticate_known(self, api_key: str) -> Principal | None:
        """Like :meth:`authenticate`, but only among keys seen before: never a database query.

        For callers that must not cost a lookup (a client address over its failed-login limit).
        """
        match = _parse(api_key)
        return None if match is None or self._hmac_key is None else self._check(match)

    async def prepare(self) -> None:
        """Load the hashing secret and every key's hash now, while the database answers, so
        that every key that exists keeps working if the database goes away later."""
        await self._key()
        await self._load()

    def _check(self, match: re.Match[str]) -> Principal | None:
        cached = self._by_key_id.get(match["key_id"])
        if cached is None or self._hmac_key is None:
            return None
        stored_hash, principal = cached
        key_hash = _hash(self._hmac_key, match["secret"])
        return principal if hmac.compare_digest(stored_hash, key_hash) else None

    async def _load(self, key_id: str | None = None) -> None:
        """Cache the hashes of one key, or of every key."""
        query = select(
            accounts.c.key_id,
            accounts.c.key_hash,
            accounts.c.account_id,
            accounts.c.name,
            accounts.c.role,
        )
        if key_id is not None:
            query = query.where(accounts.c.key_id == key_id)
        async with self._guard(), self._engine.connect() as connection:
            for row in await connection.execute(query):
                principal = Principal(row.account_id, row.name, Role(row.role))
                self._by_key_id[row.key_id] = (row.key_hash, principal)

    async def list(self) -> builtins.list[AccountRecord]:
        """Every account, newest first."""
        async with self._guard(), self._engine.connect() as connection:
            rows = await connection.execute(
                select(
                    accounts.c.account_id, accounts.c.name, accounts.c.role, accounts.c.created_at
                ).order_by(accounts.c.created_at.desc(), accounts.c.account_id.desc())
            )
            return [_record(*row) for row in rows]

    async def get(self, account_id: str) -> AccountRecord | None:
        async with self._guard(), self._engine.connect() as connection:
            row = (
                await connection.execute(
                    select(
                        accounts.c.account_id,
                        accounts.c.name,
                        accounts.c.role,
                        accounts.c.created_at,
                    ).where(accounts.c.account_id == account_id)
                )
            ).one_or_none()
        return None if row is None else _record(*row)

    async def _key(self) -> bytes:
        if self._hmac_key is None:
            async with self._hmac_key_lock:
                if self._hmac_key is None:
                    self._hmac_key = await self._stored_key()
        return self._hmac_key

    async def _stored_key(self) -> bytes:
        """The stored HMAC key, created by whichever process asks first."""
        async with self._engine.begin() as connection:
            value = await _read_secret(connection)
            if value is None:
                # Another process may be inserting at this very moment: the insert yields to a
                # row already there, and both then read the one that won.
                await connection.execute(
                    _insert_if_absent(connection.dialect.name).values(
                        name=_HMAC_SECRET_NAME, value=secrets.token_urlsafe(32)
                    )
                )
                value = await _read_secret(connection)
        if value is None:
            raise RuntimeError("the API key secret could neither be read nor stored")
        return value.encode()


def _parse(api_key: str) -> re.Match[str] | None:
    if len(api_key) != _KEY_LENGTH:
        return None
    return _KEY_PATTERN.fullmatch(api_key)


def _hash(key: bytes, secret: str) -> str:
    return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()


def _record(account_id: str, name: str, role: str, created_at: int) -> AccountRecord:
    return AccountRecord(account_id=account_id, name=name, role=Role(role), created_at=created_at)


async def _read_secret(connection: AsyncConnection) -> str | None:
    value: str | None = (
        await connection.execute(
            select(server_secrets.c.value).where(server_secrets.c.name == _HMAC_SECRET_NAME)
        )
    ).scalar_one_or_none()
    return value


def _insert_if_absent(dialect_name: str) -> Insert:
    if dialect_name == "postgresql":
        return postgresql.insert(server_secrets).on_conflict_do_nothing(
            index_elements=[server_secrets.c.name]
        )
    if dialect_name == "sqlite":
        return sqlite.insert(server_secrets).on_conflict_do_nothing(
            index_elements=[server_secrets.c.name]
        )
    raise RuntimeError(f"unsupported database dialect: {dialect_name}")
