"""Token keys get ids, several may verify at once, and the private key has a table of its own.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

The single-row signing_keys table becomes token_public_keys (what anyone verifying may read) and
token_private_keys (what only the API may read); see core.keystore. The existing key stays the
signing key under an id computed from its public key, and is marked with this moment in
no_kid_before: tokens it signed until now carry no kid and keep verifying until they expire.
"""

from alembic import op
from sqlalchemy import text

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE token_public_keys (
            -- core.tokens.key_id: the first 16 hex digits of the SHA-256 of public_key_pem
            kid                 text PRIMARY KEY CHECK (length(kid) BETWEEN 1 AND 64),
            public_key_pem      text NOT NULL,
            created_at          timestamptz NOT NULL DEFAULT now(),
            -- NULL: the signing key; else it verifies tokens until then (the last it signed expired)
            retires_at          timestamptz,
            -- the tokens it signed before then carry no kid: they predate key ids
            no_kid_before       timestamptz
        );
        -- one signing key at a time; also what lets one of several starting processes make the first
        CREATE UNIQUE INDEX token_public_keys_signing ON token_public_keys ((true)) WHERE retires_at IS NULL;

        CREATE TABLE token_private_keys (
            kid                 text PRIMARY KEY REFERENCES token_public_keys ON DELETE CASCADE,
            -- PKCS#8 PEM, encrypted when SIGNING_KEY_PASSPHRASE is set
            private_key_pem     text NOT NULL
        );

        INSERT INTO token_public_keys (kid, public_key_pem, created_at, no_kid_before)
            SELECT left(encode(sha256(convert_to(public_key_pem, 'UTF8')), 'hex'), 16), public_key_pem,
                   created_at, now()
            FROM signing_keys;
        INSERT INTO token_private_keys (kid, private_key_pem)
            SELECT k.kid, s.private_key_pem FROM signing_keys s JOIN token_public_keys k USING (public_key_pem);
        DROP TABLE signing_keys;
        """
    )


def downgrade() -> None:
    # 0003 keeps one plaintext key: the signing key, decrypted when it is stored encrypted.
    row = op.get_bind().execute(text(
        "SELECT k.kid, k.public_key_pem, p.private_key_pem, k.created_at"
        " FROM token_public_keys k JOIN token_private_keys p USING (kid) WHERE k.retires_at IS NULL"
    )).first()
    op.execute(
        """
        CREATE TABLE signing_keys (
            id                  smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
            private_key_pem     text NOT NULL,
            public_key_pem      text NOT NULL,
            created_at          timestamptz NOT NULL DEFAULT now()
        );
        """
    )
    if row is not None:
        op.get_bind().execute(
            text("INSERT INTO signing_keys (private_key_pem, public_key_pem, created_at) VALUES (:private, :public, :at)"),
            {"private": _plaintext(row.kid, row.private_key_pem), "public": row.public_key_pem, "at": row.created_at})
    op.execute("DROP TABLE token_private_keys, token_public_keys")


def _plaintext(kid: str, private_key_pem: str) -> str:
    from core.config import Config
    from core.tokens import SigningKey, SigningKeyError, is_encrypted

    if not is_encrypted(private_key_pem):
        return private_key_pem
    try:
        return SigningKey.from_pem(kid, private_key_pem, Config.from_env().signing_key_secret()).private_pem()
    except SigningKeyError as error:
        raise SigningKeyError(f"cannot downgrade below 0004: {error} (0003 stores the key unencrypted)") from None
