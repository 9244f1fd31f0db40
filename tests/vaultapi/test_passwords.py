"""Server-side hashing of the client's master password hash."""

from __future__ import annotations

from vaultapi.passwords import hash_password, verify_password


async def test_stored_hash_verifies_only_the_same_master_password_hash() -> None:
    stored = await hash_password("client-hash")
    assert stored.startswith("$argon2id$") and "client-hash" not in stored
    assert await verify_password(stored, "client-hash")
    assert not await verify_password(stored, "other-hash")


async def test_unknown_account_never_verifies() -> None:
    assert not await verify_password(None, "client-hash")
    assert not await verify_password("", "client-hash")
    assert not await verify_password("not an argon2 hash", "client-hash")
