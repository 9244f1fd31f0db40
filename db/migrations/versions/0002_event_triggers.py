"""Triggers that publish every committed vault change as one NOTIFY event.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

The payload format and channel are the contract in db/events.py. Three rules shape the SQL:

- Statement granularity: a statement that touches one item publishes that item's event; one
  that touches several items of a user publishes a single bulk event for that user.
- The owner's revision date moves forward in the same transaction, so a client that reacts to
  the event by polling /api/accounts/revision-date sees the change.
- pg_notify is transactional: nothing leaves before COMMIT, nothing leaves on ROLLBACK, and
  identical payloads within one transaction collapse into one (an import that inserts folders
  and ciphers in two statements yields a single SyncVault, both carrying the same now()).
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        r"""
        -- One changed item as seen by one recipient.
        CREATE TYPE pgwarden_change AS (
            user_id uuid, org_id uuid, item_id uuid, push_type smallint, date timestamptz);

        -- The acting device, set by the API with set_config('pgwarden.context_id', ..., true).
        -- Null when unset, and when oversized, so a payload stays far under NOTIFY's 8000 bytes.
        CREATE FUNCTION pgwarden_context_id() RETURNS text LANGUAGE sql STABLE AS $$
            SELECT c FROM (SELECT NULLIF(current_setting('pgwarden.context_id', true), '') AS c) s
             WHERE length(c) <= 255
        $$;

        CREATE FUNCTION pgwarden_notify(
            push_type integer, user_id uuid, org_id uuid, item_id uuid, date timestamptz, context_id text)
        RETURNS void LANGUAGE sql AS $$
            SELECT pg_notify('pgwarden_events', json_build_object(
                'type', push_type, 'user', user_id, 'org', org_id, 'item', item_id,
                'date', to_char(date AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                'context', context_id)::text)
        $$;

        -- Strictly forward, at the millisecond resolution the clients compare.
        CREATE FUNCTION pgwarden_next_revision(previous timestamptz) RETURNS timestamptz
        LANGUAGE sql VOLATILE AS $$
            SELECT GREATEST(date_trunc('milliseconds', clock_timestamp()),
                            previous + interval '1 millisecond')
        $$;

        CREATE FUNCTION pgwarden_touch_users(user_ids uuid[]) RETURNS void LANGUAGE sql AS $$
            UPDATE users SET revision_date = pgwarden_next_revision(revision_date)
             WHERE id = ANY(user_ids)
        $$;

        -- Publishes one statement's changes: the item's own event when a recipient has one
        -- change, else one bulk_type event for that recipient. A transaction that sets
        -- pgwarden.bulk to 'on' (an import, even of one item) gets bulk events only.
        CREATE FUNCTION pgwarden_publish(changes pgwarden_change[], bulk_type integer)
        RETURNS void LANGUAGE plpgsql AS $$
        DECLARE
            context text := pgwarden_context_id();
            bulk_only boolean := coalesce(current_setting('pgwarden.bulk', true) = 'on', false);
        BEGIN
            PERFORM pgwarden_touch_users(ARRAY(
                SELECT DISTINCT c.user_id FROM unnest(changes) c WHERE c.user_id IS NOT NULL));
            PERFORM pgwarden_notify(
                        CASE WHEN g.single THEN g.push_type ELSE bulk_type END,
                        g.user_id, g.org_id,
                        CASE WHEN g.single THEN g.item_id END,
                        CASE WHEN g.single THEN g.date ELSE now() END,
                        context)
               FROM (SELECT c.user_id, c.org_id, count(*) = 1 AND NOT bulk_only AS single,
                            min(c.push_type) AS push_type,
                            (array_agg(c.item_id))[1] AS item_id, max(c.date) AS date
                       FROM unnest(changes) c
                      GROUP BY c.user_id, c.org_id) g
              ORDER BY g.user_id, g.org_id;
        END
        $$;

        -- Any writer, SQL sessions included, moves an item's revision date forward.
        CREATE FUNCTION pgwarden_stamp_revision() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                NEW.revision_date := date_trunc('milliseconds', clock_timestamp());
            ELSE
                NEW.revision_date := pgwarden_next_revision(OLD.revision_date);
            END IF;
            RETURN NEW;
        END
        $$;

        CREATE FUNCTION pgwarden_ciphers_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                -- several new items at once is an import: a full sync
                PERFORM pgwarden_publish(ARRAY(
                    SELECT ROW(user_id, organization_id, id, 1, revision_date)::pgwarden_change
                      FROM new_rows), 5);
            ELSIF TG_OP = 'DELETE' THEN
                PERFORM pgwarden_publish(ARRAY(
                    SELECT ROW(user_id, organization_id, id, 2, now())::pgwarden_change
                      FROM old_rows), 4);
            ELSE
                -- an item that changes owner is deleted for one and created for the other
                PERFORM pgwarden_publish(ARRAY(
                    SELECT ROW(n.user_id, n.organization_id, n.id, 0, n.revision_date)::pgwarden_change
                      FROM new_rows n JOIN old_rows o USING (id)
                     WHERE (n.user_id, n.organization_id) IS NOT DISTINCT FROM (o.user_id, o.organization_id)
                    UNION ALL
                    SELECT ROW(o.user_id, o.organization_id, o.id, 2, now())::pgwarden_change
                      FROM new_rows n JOIN old_rows o USING (id)
                     WHERE (n.user_id, n.organization_id) IS DISTINCT FROM (o.user_id, o.organization_id)
                    UNION ALL
                    SELECT ROW(n.user_id, n.organization_id, n.id, 1, n.revision_date)::pgwarden_change
                      FROM new_rows n JOIN old_rows o USING (id)
                     WHERE (n.user_id, n.organization_id) IS DISTINCT FROM (o.user_id, o.organization_id)
                    ), 4);
            END IF;
            RETURN NULL;
        END
        $$;

        CREATE FUNCTION pgwarden_folders_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                PERFORM pgwarden_publish(ARRAY(
                    SELECT ROW(user_id, NULL, id, 7, revision_date)::pgwarden_change
                      FROM new_rows), 5);
            ELSIF TG_OP = 'UPDATE' THEN
                PERFORM pgwarden_publish(ARRAY(
                    SELECT ROW(user_id, NULL, id, 8, revision_date)::pgwarden_change
                      FROM new_rows), 5);
            ELSE
                PERFORM pgwarden_publish(ARRAY(
                    SELECT ROW(user_id, NULL, id, 3, now())::pgwarden_change
                      FROM old_rows), 5);
                -- the items in a deleted folder become folderless (and notify as changed items)
                UPDATE ciphers c SET folders = c.folders - o.user_id::text
                  FROM old_rows o
                 WHERE c.folders @> jsonb_build_object(o.user_id::text, o.id::text);
            END IF;
            RETURN NULL;
        END
        $$;

        CREATE FUNCTION pgwarden_sync_events_added() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pgwarden_touch_users(ARRAY(SELECT DISTINCT user_id FROM new_rows));
            PERFORM pgwarden_notify(e.push_type, e.user_id, NULL, e.item_id, now(), e.context_id)
               FROM (SELECT push_type, user_id, item_id, context_id, min(id) AS first
                       FROM new_rows GROUP BY push_type, user_id, item_id, context_id) e
              ORDER BY e.first;
            -- a row is only the message: keep a month of them for inspection
            DELETE FROM sync_events WHERE created_at < now() - interval '30 days';
            RETURN NULL;
        END
        $$;

        ALTER TABLE sync_events ALTER COLUMN context_id SET DEFAULT pgwarden_context_id();

        CREATE TRIGGER ciphers_stamp_revision BEFORE INSERT OR UPDATE ON ciphers
            FOR EACH ROW EXECUTE FUNCTION pgwarden_stamp_revision();
        CREATE TRIGGER ciphers_inserted AFTER INSERT ON ciphers
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION pgwarden_ciphers_changed();
        CREATE TRIGGER ciphers_updated AFTER UPDATE ON ciphers
            REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION pgwarden_ciphers_changed();
        CREATE TRIGGER ciphers_deleted AFTER DELETE ON ciphers
            REFERENCING OLD TABLE AS old_rows
            FOR EACH STATEMENT EXECUTE FUNCTION pgwarden_ciphers_changed();

        CREATE TRIGGER folders_stamp_revision BEFORE INSERT OR UPDATE ON folders
            FOR EACH ROW EXECUTE FUNCTION pgwarden_stamp_revision();
        CREATE TRIGGER folders_inserted AFTER INSERT ON folders
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION pgwarden_folders_changed();
        CREATE TRIGGER folders_updated AFTER UPDATE ON folders
            REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION pgwarden_folders_changed();
        CREATE TRIGGER folders_deleted AFTER DELETE ON folders
            REFERENCING OLD TABLE AS old_rows
            FOR EACH STATEMENT EXECUTE FUNCTION pgwarden_folders_changed();

        CREATE TRIGGER sync_events_added AFTER INSERT ON sync_events
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION pgwarden_sync_events_added();
        """
    )


def downgrade() -> None:
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
        ALTER TABLE sync_events ALTER COLUMN context_id DROP DEFAULT;
        DROP FUNCTION pgwarden_sync_events_added(), pgwarden_folders_changed(),
            pgwarden_ciphers_changed(), pgwarden_stamp_revision(),
            pgwarden_publish(pgwarden_change[], integer), pgwarden_touch_users(uuid[]),
            pgwarden_next_revision(timestamptz),
            pgwarden_notify(integer, uuid, uuid, uuid, timestamptz, text), pgwarden_context_id();
        DROP TYPE pgwarden_change;
        """
    )
