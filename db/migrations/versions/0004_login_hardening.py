"""Login limits, refresh token lifetimes and families, and server-side secrets.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

- login_limits: one token bucket per (scope, key), e.g. ("address", "192.0.2.7") or
  ("account", "alice@example.com"), shared by every API replica (vaultapi/limits.py).
- devices: when the refresh token expires, the security stamp it was issued under, when it was
  issued, and the hashes of the tokens it replaced (a replayed one revokes the device).
- server_secrets: random keys only the API uses (the stand-in KDF of unknown emails).
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- Unlogged: attempts are written on every login, and losing them in a crash only
        -- forgives the attempts of the last few minutes.
        CREATE UNLOGGED TABLE login_limits (
            scope               text NOT NULL,
            key                 text NOT NULL CHECK (length(key) <= 320),
            -- when the bucket is full again (the "theoretical arrival time" of the next attempt)
            tat                 timestamptz NOT NULL,
            PRIMARY KEY (scope, key)
        );
        CREATE INDEX login_limits_tat ON login_limits (tat);

        ALTER TABLE devices
            ADD COLUMN refresh_token_expires_at      timestamptz,
            ADD COLUMN refresh_token_stamp           uuid,
            ADD COLUMN refresh_token_issued_at       timestamptz,
            ADD COLUMN previous_refresh_token_hashes text[] NOT NULL DEFAULT '{}';
        -- tokens out there before this migration keep working, for one lifetime (the default)
        UPDATE devices d
           SET refresh_token_expires_at = now() + interval '30 days',
               refresh_token_stamp = u.security_stamp,
               refresh_token_issued_at = d.updated_at
          FROM users u
         WHERE u.id = d.user_id AND d.refresh_token_hash IS NOT NULL;
        ALTER TABLE devices ADD CONSTRAINT devices_refresh_token_complete CHECK (
            refresh_token_hash IS NULL OR (refresh_token_expires_at IS NOT NULL
                                           AND refresh_token_stamp IS NOT NULL
                                           AND refresh_token_issued_at IS NOT NULL));
        CREATE INDEX devices_previous_refresh_token_hashes ON devices USING gin (previous_refresh_token_hashes);

        CREATE TABLE server_secrets (
            name                text PRIMARY KEY,
            value               bytea NOT NULL CHECK (length(value) >= 32),
            created_at          timestamptz NOT NULL DEFAULT now()
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE server_secrets;
        ALTER TABLE devices
            DROP CONSTRAINT devices_refresh_token_complete,
            DROP COLUMN previous_refresh_token_hashes,
            DROP COLUMN refresh_token_issued_at,
            DROP COLUMN refresh_token_stamp,
            DROP COLUMN refresh_token_expires_at;
        DROP TABLE login_limits;
        """
    )
