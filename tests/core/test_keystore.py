"""The keys in the database: public keys for anyone verifying, the private key for the API alone."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from core.keystore import (
    ensure_signing_key,
    list_keys,
    load_signing_key,
    load_verifying_keys,
    rotate,
    signing_kid,
)
from core.tokens import SigningKeyError, is_encrypted, key_id


async def private_pems(db: asyncpg.Connection) -> dict[str, str]:
    return {r["kid"]: r["private_key_pem"] for r in await db.fetch("SELECT kid, private_key_pem FROM token_private_keys")}


async def no_keys(db: asyncpg.Connection) -> None:
    await db.execute("DELETE FROM token_public_keys")


async def test_prepared_database_has_one_signing_key_named_by_its_id(db) -> None:
    rows = await db.fetch("SELECT kid, public_key_pem, retires_at FROM token_public_keys")
    assert len(rows) == 1
    assert rows[0]["retires_at"] is None, "the one key signs"
    assert rows[0]["kid"] == key_id(rows[0]["public_key_pem"])
    assert list(await private_pems(db)) == [rows[0]["kid"]]
    assert not is_encrypted((await private_pems(db))[rows[0]["kid"]])


async def test_ensure_keeps_the_existing_key(db) -> None:
    kid = await signing_kid(db)
    assert await ensure_signing_key(db) == kid
    assert await db.fetchval("SELECT count(*) FROM token_public_keys") == 1


async def test_processes_starting_together_make_one_first_key(db, database_url) -> None:
    await no_keys(db)
    conns = [await asyncpg.connect(database_url) for _ in range(4)]
    try:
        kids = await asyncio.gather(*(ensure_signing_key(conn) for conn in conns))
    finally:
        for conn in conns:
            await conn.close()
    assert len(set(kids)) == 1
    assert await db.fetchval("SELECT count(*) FROM token_public_keys") == 1
    assert await db.fetchval("SELECT count(*) FROM token_private_keys") == 1


async def test_rotate_signs_with_a_new_key_and_the_old_one_verifies_for_the_grace(db) -> None:
    old = await signing_kid(db)
    new = await rotate(db, grace=timedelta(hours=2))
    assert new != old and await signing_kid(db) == new
    assert list(await private_pems(db)) == [new], "the old private key signs nothing again: gone"
    retires_at = await db.fetchval("SELECT retires_at FROM token_public_keys WHERE kid = $1", old)
    assert abs(retires_at - datetime.now(timezone.utc) - timedelta(hours=2)) < timedelta(minutes=1)
    assert {key.kid for key in await load_verifying_keys(db)} == {old, new}
    assert (await load_signing_key(db, None)).kid == new


async def test_rotate_with_no_grace_retires_every_older_key_at_once(db) -> None:
    first = await signing_kid(db)
    second = await rotate(db, grace=timedelta(hours=2))
    third = await rotate(db, grace=timedelta(0))
    assert {key.kid for key in await load_verifying_keys(db)} == {third}
    states = {key.kid: key.state for key in await list_keys(db)}
    assert states == {first: "retired", second: "retired", third: "signing"}


async def test_a_later_rotation_never_extends_an_older_keys_grace(db) -> None:
    first = await signing_kid(db)
    await rotate(db, grace=timedelta(minutes=10))
    await rotate(db, grace=timedelta(hours=5))
    retires_at = await db.fetchval("SELECT retires_at FROM token_public_keys WHERE kid = $1", first)
    assert retires_at - datetime.now(timezone.utc) < timedelta(minutes=11)


async def test_list_shows_ids_dates_and_states_never_private_keys(db) -> None:
    old = await signing_kid(db)
    new = await rotate(db, grace=timedelta(hours=1))
    listed = await list_keys(db)
    assert [key.kid for key in listed] == [new, old], "newest first"
    assert [key.state for key in listed] == ["signing", "verifying"]
    assert listed[0].retires_at is None and listed[1].retires_at is not None
    assert all(isinstance(key.created_at, datetime) for key in listed)
    assert "PRIVATE" not in repr(listed)
    assert not hasattr(listed[0], "private_key_pem")


async def test_first_key_made_with_a_passphrase_is_stored_encrypted(db) -> None:
    await no_keys(db)
    kid = await ensure_signing_key(db, "correct horse")
    assert is_encrypted((await private_pems(db))[kid])
    assert (await load_signing_key(db, "correct horse")).kid == kid
    with pytest.raises(SigningKeyError, match="encrypted.*SIGNING_KEY_PASSPHRASE"):
        await load_signing_key(db, None)
    with pytest.raises(SigningKeyError, match="does not decrypt"):
        await load_signing_key(db, "wrong")


async def test_rotate_keeps_an_encrypted_database_encrypted(db) -> None:
    await no_keys(db)
    await ensure_signing_key(db, "correct horse")
    with pytest.raises(SigningKeyError, match="SIGNING_KEY_PASSPHRASE"):
        await rotate(db, grace=timedelta(hours=1))
    with pytest.raises(SigningKeyError, match="does not decrypt"):
        await rotate(db, grace=timedelta(hours=1), passphrase="wrong")
    assert await db.fetchval("SELECT count(*) FROM token_public_keys") == 1, "a refused rotation changes nothing"
    new = await rotate(db, grace=timedelta(hours=1), passphrase="correct horse")
    assert is_encrypted((await private_pems(db))[new])


async def test_rotate_with_a_passphrase_encrypts_a_plain_database_from_then_on(db) -> None:
    new = await rotate(db, grace=timedelta(hours=1), passphrase="correct horse")
    assert is_encrypted((await private_pems(db))[new])
    assert [key.encrypted for key in await list_keys(db)] == [True, None]


async def test_loading_keys_of_a_database_without_any_says_what_to_do(db) -> None:
    await no_keys(db)
    with pytest.raises(SigningKeyError, match="pgwarden migrate"):
        await load_signing_key(db, None)
    assert await load_verifying_keys(db) == []
