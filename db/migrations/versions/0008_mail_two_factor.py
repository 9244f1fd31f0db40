"""Outgoing mail and two-step login.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29

- mail_outbox: one row per mail. The transaction that decides a mail must go out inserts it,
  so a rolled-back change sends nothing; a sender task in each API replica claims due rows with
  FOR UPDATE SKIP LOCKED, sends them outside any transaction, and marks them sent (the body is
  then blanked: it may hold a code). A claim is a lease: a replica that dies mid-send leaves the
  row to be retried by another once the lease ends.
- users.two_factor_providers: the enabled two-step providers, keyed by the Bitwarden provider
  type ("0" authenticator, "1" email, "7" WebAuthn), each with what it needs (the TOTP key, the
  address, the credentials); users.two_factor_recovery_code: the code that turns them all off.
- one_time_codes: codes and challenges that work once and expire (an emailed two-step code, a
  WebAuthn challenge, an email change token), one per user and purpose; using one deletes it.
- used_totp_codes: authenticator codes already accepted, refused again until they expire (the
  Bitwarden server's replay rule: two minutes).
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE mail_outbox (
            id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            recipient           text NOT NULL CHECK (recipient <> ''),
            subject             text NOT NULL,
            body                text NOT NULL,
            -- tries so far; a claim counts as one
            attempts            integer NOT NULL DEFAULT 0,
            -- when the row is due (again): now, after a backoff, or when a claim's lease ends
            next_attempt_at     timestamptz NOT NULL DEFAULT now(),
            sent_at             timestamptz,
            -- given up after the last attempt
            failed_at           timestamptz,
            -- the SMTP server's last refusal, for the operator
            last_error          text,
            created_at          timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at)
            WHERE sent_at IS NULL AND failed_at IS NULL;

        ALTER TABLE users
            ADD COLUMN two_factor_providers jsonb NOT NULL DEFAULT '{}'
                CHECK (jsonb_typeof(two_factor_providers) = 'object'),
            ADD COLUMN two_factor_recovery_code text;

        CREATE TABLE one_time_codes (
            user_id             uuid NOT NULL REFERENCES users ON DELETE CASCADE,
            purpose             text NOT NULL,
            -- a code's SHA-256, or a challenge's state
            secret              text NOT NULL,
            expires_at          timestamptz NOT NULL,
            PRIMARY KEY (user_id, purpose)
        );

        CREATE TABLE used_totp_codes (
            user_id             uuid NOT NULL REFERENCES users ON DELETE CASCADE,
            code                text NOT NULL,
            expires_at          timestamptz NOT NULL,
            PRIMARY KEY (user_id, code)
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE used_totp_codes, one_time_codes, mail_outbox;
        ALTER TABLE users DROP COLUMN two_factor_providers, DROP COLUMN two_factor_recovery_code;
        """
    )
