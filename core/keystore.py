"""The token keys in the database: public keys for whoever verifies, private keys for the API alone.

Two tables, so a role can be given one and not the other (docs/security.md):

- ``token_public_keys``: every key's id, public key, creation date and ``retires_at`` (NULL for
  the one signing key; a verifying key stops verifying then). The hub's role reads this.
- ``token_private_keys``: the signing key's private key, a PKCS#8 PEM, encrypted when
  SIGNING_KEY_PASSPHRASE is set. A rotation deletes the old one: it will never sign again.

A key whose ``retires_at`` has passed stays listed as retired and verifies nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from core.tokens import SigningKey, SigningKeyError, VerifyingKey, is_encrypted

__all__ = [
    "Database",
    "StoredKey",
    "ensure_signing_key",
    "list_keys",
    "load_signing_key",
    "load_verifying_keys",
    "rotate",
    "signing_kid",
]

log = logging.getLogger(__name__)

Database = asyncpg.Connection | asyncpg.Pool

_NO_KEY = "the database has no token signing key yet: run `pgwarden migrate` first"


@dataclass(frozen=True)
class StoredKey:
    """What `pgwarden keys list` shows of a key: never its private part."""

    kid: str
    created_at: datetime
    retires_at: datetime | None
    #: "signing", "verifying" (until retires_at) or "retired"
    state: str
    #: Whether its private key is stored encrypted; None once the private key is gone.
    encrypted: bool | None


async def signing_kid(db: Database) -> str | None:
    """The id of the signing key: a cheap check of whether a rotation happened."""
    return await db.fetchval("SELECT kid FROM token_public_keys WHERE retires_at IS NULL")


async def ensure_signing_key(conn: asyncpg.Connection, passphrase: str | None = None) -> str:
    """The signing key's id, the key made first if there is none (race-free; encrypted with the
    passphrase when there is one)."""
    kid = await signing_kid(conn)
    if kid is not None:
        return kid
    fresh = SigningKey.generate()
    async with conn.transaction():
        # the partial unique index lets one first key in; a process that loses the race adds none
        made = await conn.fetchval(
            "INSERT INTO token_public_keys (kid, public_key_pem) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING kid",
            fresh.kid, fresh.public_pem)
        if made is not None:
            await conn.execute("INSERT INTO token_private_keys (kid, private_key_pem) VALUES ($1, $2)",
                               fresh.kid, fresh.private_pem(passphrase))
    kid = await signing_kid(conn)
    assert kid is not None
    return kid


async def rotate(conn: asyncpg.Connection, grace: timedelta, passphrase: str | None = None) -> str:
    """Make a new signing key and return its id; every older key verifies for ``grace`` more at
    most (zero: they stop at once). The passphrase, when the current key is encrypted, must open it,
    so a rotation never stores the next key less protected than the last."""
    fresh = SigningKey.generate()  # before the transaction: RSA generation takes a moment; hold no lock meanwhile
    async with conn.transaction():
        current = await conn.fetchrow(
            "SELECT k.kid, p.private_key_pem FROM token_public_keys k JOIN token_private_keys p USING (kid)"
            " WHERE k.retires_at IS NULL FOR UPDATE")
        if current is not None and is_encrypted(current["private_key_pem"]):
            SigningKey.from_pem(current["kid"], current["private_key_pem"], passphrase)
        await conn.execute(
            "UPDATE token_public_keys SET retires_at = least(coalesce(retires_at, 'infinity'), now() + $1)"
            " WHERE retires_at IS NULL OR retires_at > now()",
            grace)
        await conn.execute("INSERT INTO token_public_keys (kid, public_key_pem) VALUES ($1, $2)",
                           fresh.kid, fresh.public_pem)
        await conn.execute("INSERT INTO token_private_keys (kid, private_key_pem) VALUES ($1, $2)",
                           fresh.kid, fresh.private_pem(passphrase))
        await conn.execute("DELETE FROM token_private_keys WHERE kid <> $1", fresh.kid)
    log.info("token signing key %s made; %s", fresh.kid,
             f"older keys verify for {grace} more" if grace else "older keys retired at once")
    return fresh.kid


async def load_signing_key(db: Database, passphrase: str | None) -> SigningKey:
    row = await db.fetchrow(
        "SELECT k.kid, p.private_key_pem FROM token_public_keys k JOIN token_private_keys p USING (kid)"
        " WHERE k.retires_at IS NULL")
    if row is None:
        raise SigningKeyError(_NO_KEY)
    if passphrase and not is_encrypted(row["private_key_pem"]):
        log.warning("the token signing key %s is stored unencrypted although a passphrase is set;"
                    " `pgwarden keys rotate` replaces it with an encrypted one", row["kid"])
    return SigningKey.from_pem(row["kid"], row["private_key_pem"], passphrase)


async def load_verifying_keys(db: Database) -> list[VerifyingKey]:
    """Every key that verifies now: the signing key and the ones in their grace after a rotation."""
    rows = await db.fetch(
        "SELECT kid, public_key_pem, extract(epoch FROM retires_at)::float8 AS retires_at,"
        " extract(epoch FROM no_kid_before)::float8 AS no_kid_before"
        " FROM token_public_keys WHERE retires_at IS NULL OR retires_at > now()")
    return [VerifyingKey.from_pem(r["kid"], r["public_key_pem"], r["retires_at"], r["no_kid_before"]) for r in rows]


async def list_keys(conn: asyncpg.Connection) -> list[StoredKey]:
    """Every key, newest first (the private key's first line alone is read: is it encrypted)."""
    rows = await conn.fetch(
        """
        SELECT k.kid, k.created_at, k.retires_at, split_part(p.private_key_pem, E'\\n', 1) AS pem_head,
               CASE WHEN k.retires_at IS NULL THEN 'signing'
                    WHEN k.retires_at > now() THEN 'verifying'
                    ELSE 'retired' END AS state
        FROM token_public_keys k LEFT JOIN token_private_keys p USING (kid)
        ORDER BY k.created_at DESC, k.kid
        """)
    return [StoredKey(r["kid"], r["created_at"], r["retires_at"], r["state"],
                      None if r["pem_head"] is None else is_encrypted(r["pem_head"])) for r in rows]
