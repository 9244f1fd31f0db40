"""Stored files, attachments and Sends.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

- stored_files, stored_file_chunks: the files of FILE_STORAGE=postgresql, by key, in chunks of
  about a MiB (vaultapi/storage/postgres.py); not compressed, as the clients encrypt them.
- released_files: keys of files whose row went (db/sql/files.sql), removed from whichever store
  holds them by vaultapi/housekeeping.py.
- attachments: an item's files. The name and the file's key are the client's EncStrings; size is
  what the client announced until the upload is in (uploaded), then what was stored.
- sends: a user's Sends; their content (name, notes, text, file name) as the client sent it, a
  file Send's file by key. The statement triggers publish SyncSendCreate/Update/Delete.
"""

from alembic import op

from db import routines

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

#: The routines' text this migration was written for (db.routines.fingerprint()).
ROUTINES = "e1c499bf59d5"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE stored_files (
            key         text PRIMARY KEY CHECK (length(key) <= 200),
            size        bigint NOT NULL DEFAULT 0,
            complete    boolean NOT NULL DEFAULT false,
            created_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE stored_file_chunks (
            key         text NOT NULL REFERENCES stored_files ON DELETE CASCADE,
            seq         integer NOT NULL,
            data        bytea NOT NULL,
            PRIMARY KEY (key, seq)
        );
        ALTER TABLE stored_file_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
        CREATE TABLE released_files (
            key         text PRIMARY KEY,
            released_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE attachments (
            id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9]{32}$'),
            cipher_id   uuid NOT NULL REFERENCES ciphers ON DELETE CASCADE,
            file_name   text NOT NULL,
            key         text,
            size        bigint NOT NULL CHECK (size >= 0),
            uploaded    boolean NOT NULL DEFAULT false,
            file_key    text NOT NULL UNIQUE,
            created_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX attachments_cipher_id ON attachments (cipher_id);

        -- type: Text 0, File 1.
        CREATE TABLE sends (
            id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            user_id          uuid NOT NULL REFERENCES users ON DELETE CASCADE,
            type             smallint NOT NULL CHECK (type IN (0, 1)),
            data             jsonb NOT NULL,
            key              text NOT NULL,
            password_hash    text,
            max_access_count integer CHECK (max_access_count >= 0),
            access_count     integer NOT NULL DEFAULT 0 CHECK (access_count >= 0),
            disabled         boolean NOT NULL DEFAULT false,
            hide_email       boolean NOT NULL DEFAULT false,
            file_id          text CHECK (file_id ~ '^[a-z0-9]{32}$'),
            file_size        bigint CHECK (file_size >= 0),
            file_uploaded    boolean NOT NULL DEFAULT false,
            file_key         text UNIQUE,
            expiration_date  timestamptz,
            deletion_date    timestamptz NOT NULL,
            creation_date    timestamptz NOT NULL DEFAULT date_trunc('milliseconds', clock_timestamp()),
            revision_date    timestamptz NOT NULL DEFAULT date_trunc('milliseconds', clock_timestamp()),
            CHECK ((type = 1) = (file_id IS NOT NULL)),
            CHECK (max_access_count IS NULL OR access_count <= max_access_count)
        );
        CREATE INDEX sends_user_id ON sends (user_id);
        CREATE INDEX sends_deletion_date ON sends (deletion_date);
        """
    )
    routines.apply(op.execute)
    op.execute(
        """
        CREATE TRIGGER attachments_released AFTER DELETE ON attachments
            REFERENCING OLD TABLE AS old_rows
            FOR EACH STATEMENT EXECUTE FUNCTION pgwarden_files_released();
        CREATE TRIGGER sends_released AFTER DELETE ON sends
            REFERENCING OLD TABLE AS old_rows
            FOR EACH STATEMENT EXECUTE FUNCTION pgwarden_files_released();

        CREATE TRIGGER sends_stamp_updated BEFORE UPDATE ON sends
            FOR EACH ROW EXECUTE FUNCTION pgwarden_stamp_revision();
        CREATE TRIGGER sends_inserted AFTER INSERT ON sends
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION pgwarden_sends_changed();
        CREATE TRIGGER sends_updated AFTER UPDATE ON sends
            REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION pgwarden_sends_changed();
        CREATE TRIGGER sends_deleted AFTER DELETE ON sends
            REFERENCING OLD TABLE AS old_rows
            FOR EACH STATEMENT EXECUTE FUNCTION pgwarden_sends_changed();
        """
    )


def downgrade() -> None:
    # before 0011 a sync_events row could still carry the Send types (12-14), which nothing sent
    row_types = ", ".join(map(str, sorted({*routines.row_push_types(), 12, 13, 14})))
    op.execute(
        f"""
        DROP TABLE sends, attachments, released_files, stored_file_chunks, stored_files;
        DROP FUNCTION pgwarden_sends_changed(), pgwarden_files_released();
        ALTER TABLE sync_events
            DROP CONSTRAINT sync_events_push_type_check,
            ADD CONSTRAINT sync_events_push_type_check CHECK (push_type IN ({row_types}));
        """
    )
