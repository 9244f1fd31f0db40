"""An old attachment's file re-encrypted for an organization, held until its item is shared.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29

- attachment_shares: an attachment without a key of its own (an old one) must be re-encrypted
  before its item moves to an organization, whose members could not open it otherwise. The
  client uploads it again first (POST /api/ciphers/<item>/attachment/<id>/share), with a new key
  and name encrypted for the organization; the row holds them and the new file's key until the
  share swaps them in (vaultapi/models/attachments.py). A row that goes releases its file, as an
  attachment's does (pgwarden_files_released, db/sql/files.sql); one the share took has no file
  of its own any more (file_key NULL).
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE attachment_shares (
            attachment_id   text PRIMARY KEY REFERENCES attachments ON DELETE CASCADE,
            organization_id uuid NOT NULL REFERENCES organizations ON DELETE CASCADE,
            file_name       text NOT NULL,
            key             text NOT NULL,
            size            bigint NOT NULL CHECK (size >= 0),
            file_key        text UNIQUE,
            created_at      timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX attachment_shares_organization_id ON attachment_shares (organization_id);
        CREATE TRIGGER attachment_shares_released AFTER DELETE ON attachment_shares
            REFERENCING OLD TABLE AS old_rows
            FOR EACH STATEMENT EXECUTE FUNCTION pgwarden_files_released();
        """
    )


def downgrade() -> None:
    # the held files are released first, so that the store does not keep them for nothing
    op.execute("DELETE FROM attachment_shares")
    op.execute("DROP TABLE attachment_shares")
