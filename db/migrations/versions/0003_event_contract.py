"""The event routines speak push type names; the acting device is its device identifier.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

From here on the routines' current definition lives in one place (db/routines.py renders the
contract from db/events.py and applies db/sql/events.sql), and every migration that changes
them applies it again. The acting device, called context_id until now, is named
device_identifier everywhere: the transaction setting pgwarden.device_identifier, the
sync_events column, and the key "device" of the NOTIFY payload.
"""

from alembic import context, op

from db import routines

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

#: The routines' text this migration was written for (db.routines.fingerprint()).
ROUTINES = "255b5ea7e9c1"


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE sync_events RENAME COLUMN context_id TO device_identifier;
        -- both CHECK constraints are the contract's from now on
        ALTER TABLE sync_events DROP CONSTRAINT sync_events_context_id_check,
                                DROP CONSTRAINT sync_events_push_type_check;
        -- a renamed parameter is beyond CREATE OR REPLACE
        DROP FUNCTION pgwarden_notify(integer, uuid, uuid, uuid, timestamptz, text);
        """
    )
    routines.apply(op.execute)
    op.execute(
        """
        ALTER TABLE sync_events ALTER COLUMN device_identifier SET DEFAULT pgwarden_device_identifier();
        DROP FUNCTION pgwarden_context_id();
        """
    )


def downgrade() -> None:
    # Back to the tables as 0001 left them, then 0002 makes its own routines and triggers again:
    # its text is the previous definition, kept once.
    op.execute(
        """
        DROP TRIGGER sync_events_added ON sync_events;
        DROP TRIGGER folders_deleted ON folders;
        DROP TRIGGER folders_updated ON folders;
        DROP TRIGGER folders_inserted ON folders;
        DROP TRIGGER folders_stamp_revision ON folders;
        DROP TRIGGER ciphers_deleted ON ciphers;
        DROP TRIGGER ciphers_updated ON ciphers;
        DROP TRIGGER ciphers_inserted ON ciphers;
        DROP TRIGGER ciphers_stamp_revision ON ciphers;
        ALTER TABLE sync_events ALTER COLUMN device_identifier DROP DEFAULT,
                                DROP CONSTRAINT sync_events_device_identifier_check,
                                DROP CONSTRAINT sync_events_push_type_check;
        DROP FUNCTION pgwarden_sync_events_added(), pgwarden_folders_changed(),
            pgwarden_ciphers_changed(), pgwarden_stamp_revision(),
            pgwarden_publish(pgwarden_change[], integer), pgwarden_touch_users(uuid[]),
            pgwarden_next_revision(timestamptz),
            pgwarden_notify(integer, uuid, uuid, uuid, timestamptz, text), pgwarden_device_identifier(),
            pgwarden_push_type(text), pgwarden_device_identifier_limit(), pgwarden_channel();
        DROP TYPE pgwarden_change;
        ALTER TABLE sync_events RENAME COLUMN device_identifier TO context_id;
        ALTER TABLE sync_events
            ADD CONSTRAINT sync_events_context_id_check CHECK (length(context_id) <= 255),
            ADD CONSTRAINT sync_events_push_type_check
                CHECK (push_type IN (4, 5, 6, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19));
        """
    )
    context.script.get_revision("0002").module.upgrade()
