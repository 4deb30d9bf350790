"""Accounts and API keys, on PostgreSQL and on SQLite."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from matching_engine.accounts import AccountStore, Role
from matching_engine.db import create_engine
from matching_engine.migrate import upgrade
from matching_engine.schema import accounts, server_secrets
from matching_engine.settings import Settings
from tests.service.factories import settings_for


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database of each kind; the PostgreSQL one is shared by the session."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("migrated_pg_url")
        return url
    url = request.getfixturevalue("sqlite_url")
    upgrade(settings_for(url, tmp_path))
    return url


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database of each kind that no test has used: no server secret in it yet."""
    url: str = request.getfixturevalue(
        "fresh_pg_url" if request.param == "postgresql" else "sqlite_url"
    )
    upgrade(settings_for(url, tmp_path))
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return settings_for(database_url, tmp_path)


@pytest_asyncio.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    yield engine
    await engine.dispose()


@pytest.fixture
def store(engine: AsyncEngine, settings: Settings) -> AccountStore:
    return AccountStore(engine, settings)


def _split(api_key: str) -> tuple[str, str]:
    prefix, key_id, secret = api_key.split("_", 2)
    assert prefix == "me"
    return key_id, secret


class TestCreate:
    @pytest.mark.asyncio
    async def test_returns_the_principal_and_a_key_of_the_documented_shape(
        self, store: AccountStore
    ) -> None:
        principal, api_key = await store.create("desk one", Role.TRADER)

        assert principal.name == "desk one"
        assert principal.role is Role.TRADER
        assert principal.account_id.startswith("acc_")
        key_id, secret = _split(api_key)
        assert len(key_id) == 16
        assert set(key_id) <= set("0123456789abcdef")
        assert len(secret) == 43

    @pytest.mark.asyncio
    async def test_the_database_holds_no_plain_key(
        self, store: AccountStore, engine: AsyncEngine
    ) -> None:
        principal, api_key = await store.create("desk two", Role.TRADER)
        key_id, secret = _split(api_key)

        async with engine.connect() as connection:
            row = (
                await connection.execute(
                    select(accounts).where(accounts.c.account_id == principal.account_id)
                )
            ).one()

        assert row.key_id == key_id
        for value in row:
            assert secret not in str(value)

    @pytest.mark.asyncio
    @pytest.mark.parametrize("name", ["", "x" * 201])
    async def test_refuses_a_name_outside_1_to_200_characters(
        self, store: AccountStore, name: str
    ) -> None:
        with pytest.raises(ValueError, match="1 to 200"):
            await store.create(name, Role.TRADER)

    @pytest.mark.asyncio
    async def test_refuses_a_role_that_is_not_a_role(self, store: AccountStore) -> None:
        with pytest.raises(ValueError, match="role"):
            await store.create("desk", "superuser")  # type: ignore[arg-type]


class TestAuthenticate:
    @pytest.mark.asyncio
    async def test_the_key_authenticates_as_its_account(self, store: AccountStore) -> None:
        principal, api_key = await store.create("ops", Role.ADMIN)

        assert await store.authenticate(api_key) == principal

    @pytest.mark.asyncio
    async def test_a_wrong_secret_with_a_valid_key_id_is_refused(self, store: AccountStore) -> None:
        _, api_key = await store.create("desk", Role.TRADER)
        key_id, secret = _split(api_key)
        wrong = f"me_{key_id}_{'B' if secret[0] == 'A' else 'A'}{secret[1:]}"

        assert await store.authenticate(wrong) is None
        # Refused again once the account row is cached; the right key still works.
        assert await store.authenticate(wrong) is None
        assert await store.authenticate(api_key) is not None

    @pytest.mark.asyncio
    async def test_an_unknown_key_id_is_refused(self, store: AccountStore) -> None:
        _, api_key = await store.create("desk", Role.TRADER)
        _, secret = _split(api_key)

        assert await store.authenticate(f"me_0123456789abcdef_{secret}") is None

    @pytest.mark.asyncio
    async def test_a_key_created_elsewhere_is_accepted_at_once(
        self, store: AccountStore, settings: Settings
    ) -> None:
        _, own_key = await store.create("server side", Role.TRADER)
        assert await store.authenticate(own_key) is not None  # the cache is warm
        other_engine = create_engine(settings)
        try:
            principal, api_key = await AccountStore(other_engine, settings).create(
                "cli side", Role.ADMIN
            )
        finally:
            await other_engine.dispose()

        assert await store.authenticate(api_key) == principal


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "api_key",
    [
        "",
        "me_",
        "me_0123456789abcdef",
        "me_0123456789abcdef_" + "a" * 42,
        "me_0123456789abcdef_" + "a" * 44,
        "me_0123456789ABCDEF_" + "a" * 43,
        "mk_0123456789abcdef_" + "a" * 43,
        "me_0123456789abcdef_" + "a" * 42 + "=",
        "me_0123456789abcdef_" + "a" * 42 + "\n",
        "Bearer me_0123456789abcdef_" + "a" * 43,
    ],
)
async def test_a_malformed_key_is_refused_without_touching_the_database(
    tmp_path: Path, api_key: str
) -> None:
    # Any query on this engine would fail: its database file cannot be created.
    unreachable = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'x.db'}")
    try:
        store = AccountStore(unreachable, settings_for("sqlite+aiosqlite://", tmp_path))
        assert await store.authenticate(api_key) is None
    finally:
        await unreachable.dispose()


@pytest.mark.asyncio
async def test_two_processes_agree_on_the_generated_secret(
    empty_database_url: str, tmp_path: Path
) -> None:
    settings = settings_for(empty_database_url, tmp_path)
    engine_a, engine_b = create_engine(settings), create_engine(settings)
    try:
        store_a, store_b = AccountStore(engine_a, settings), AccountStore(engine_b, settings)
        # Both reach for the secret at once, as two processes starting together would.
        (principal_a, key_a), (principal_b, key_b) = await asyncio.gather(
            store_a.create("a", Role.TRADER), store_b.create("b", Role.TRADER)
        )

        assert await store_b.authenticate(key_a) == principal_a
        assert await store_a.authenticate(key_b) == principal_b
        async with engine_a.connect() as connection:
            secrets_stored = (await connection.execute(select(server_secrets))).all()
        assert [name for name, _ in secrets_stored] == ["api_key_hmac"]
    finally:
        await engine_a.dispose()
        await engine_b.dispose()


@pytest.mark.asyncio
async def test_a_configured_key_secret_is_the_hmac_key(
    database_url: str, tmp_path: Path, engine: AsyncEngine
) -> None:
    settings = settings_for(database_url, tmp_path, key_secret="configured-secret")
    principal, api_key = await AccountStore(engine, settings).create("desk", Role.TRADER)
    _, secret = _split(api_key)

    async with engine.connect() as connection:
        stored = (
            await connection.execute(
                select(accounts.c.key_hash).where(accounts.c.account_id == principal.account_id)
            )
        ).scalar_one()

    assert stored == hmac.new(b"configured-secret", secret.encode(), hashlib.sha256).hexdigest()
    assert await AccountStore(engine, settings).authenticate(api_key) == principal


class TestListAndGet:
    @pytest.mark.asyncio
    async def test_list_is_newest_first_and_get_finds_one(self, store: AccountStore) -> None:
        first, _ = await store.create("first", Role.ADMIN)
        second, _ = await store.create("second", Role.TRADER)

        listed = await store.list()
        ids = [record.account_id for record in listed]
        assert ids.index(second.account_id) < ids.index(first.account_id)
        record = await store.get(second.account_id)
        assert record is not None
        assert record.principal == second
        assert record.created_at > 0
        assert await store.get("acc_0000000000000000") is None
