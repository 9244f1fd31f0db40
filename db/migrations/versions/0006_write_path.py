"""Revision dates move to a narrow table of their own; the triggers cost a write far less.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

Measured in docs/performance.md ("Write path"): per single-item statement the 0003 triggers
spent most of their time parsing and planning two SQL functions again on every call
(pgwarden_touch_users and pgwarden_device_identifier, which the planner could not inline) and
writing a new version of the wide users row; a statement updating many items after single-item
ones on the same connection took seconds, its cached plan joining the transition tables in a
nested loop.

- users.revision_date becomes user_revisions (user_id, revision_date), one narrow row per
  user, made by a trigger on users; pgwarden_user_revisions() is how it is read.
- pgwarden_publish publishes one recipient's changes, called once per recipient by each trigger
  branch's single grouping query; the composite type pgwarden_change is no longer used.
- An inserted item's revision date comes from its column default; the stamping trigger runs for
  a new row only when it brought a date of its own.
"""

from alembic import op

from db import routines

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

#: The routines' text this migration was written for (db.routines.fingerprint()).
ROUTINES = "1138a30ecbf6"


def upgrade() -> None:
    op.execute(
        """
        -- no writer moves a revision date between the copy and the switch
        LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE;
        CREATE TABLE user_revisions (
            user_id             uuid PRIMARY KEY REFERENCES users ON DELETE CASCADE,
            -- what clients poll before a full sync; the triggers move it forward
            revision_date       timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now())
        );
        INSERT INTO user_revisions (user_id, revision_date) SELECT id, revision_date FROM users;
        -- the new pgwarden_publish takes one recipient's changes, not an array of them
        DROP FUNCTION pgwarden_publish(pgwarden_change[], integer);
        DROP TYPE pgwarden_change;
        """
    )
    routines.apply(op.execute)
    op.execute(
        """
        ALTER TABLE users DROP COLUMN revision_date;
        CREATE TRIGGER users_added AFTER INSERT ON users
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION pgwarden_users_added();
        """
    )
    for table in ("ciphers", "folders"):
        op.execute(
            f"""
            -- a new row takes its date from the default, and the stamp runs only for a row that
            -- brought another one (or crossed a millisecond between the two): an import of
            -- thousands of items makes no call per row
            ALTER TABLE {table} ALTER COLUMN revision_date
                SET DEFAULT date_trunc('milliseconds', clock_timestamp());
            DROP TRIGGER {table}_stamp_revision ON {table};
            CREATE TRIGGER {table}_stamp_inserted BEFORE INSERT ON {table}
                FOR EACH ROW
                WHEN (NEW.revision_date IS DISTINCT FROM date_trunc('milliseconds', clock_timestamp()))
                EXECUTE FUNCTION pgwarden_stamp_revision();
            CREATE TRIGGER {table}_stamp_updated BEFORE UPDATE ON {table}
                FOR EACH ROW EXECUTE FUNCTION pgwarden_stamp_revision();
            """
        )


def downgrade() -> None:
    for table in ("ciphers", "folders"):
        op.execute(
            f"""
            DROP TRIGGER {table}_stamp_inserted ON {table};
            DROP TRIGGER {table}_stamp_updated ON {table};
            CREATE TRIGGER {table}_stamp_revision BEFORE INSERT OR UPDATE ON {table}
                FOR EACH ROW EXECUTE FUNCTION pgwarden_stamp_revision();
            ALTER TABLE {table} ALTER COLUMN revision_date SET DEFAULT now();
            """
        )
    op.execute(
        """
        LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE;
        DROP TRIGGER users_added ON users;
        ALTER TABLE users
            ADD COLUMN revision_date timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now());
        UPDATE users u SET revision_date = r.revision_date FROM user_revisions r WHERE r.user_id = u.id;
        -- on a database migrated from scratch to here, these are the newest text's (0010's signatures)
        DROP FUNCTION IF EXISTS pgwarden_users_added(), pgwarden_user_revisions(uuid[]),
            pgwarden_publish(uuid, uuid, bigint, integer, uuid, timestamptz, integer, text),
            pgwarden_publish(uuid, uuid, bigint, integer, uuid, timestamptz, integer, text, uuid[], uuid[]),
            pgwarden_notify(integer, uuid, uuid, uuid, timestamptz, text, uuid[], uuid[]),
            pgwarden_organizations_added(), pgwarden_event_collections_limit();
        CREATE TYPE pgwarden_change AS (
            user_id uuid, org_id uuid, item_id uuid, push_type smallint, date timestamptz);
        """
    )
    op.execute(PREVIOUS_EVENTS_SQL)
    op.execute("DROP TABLE user_revisions")


# db/sql/events.sql as migration 0003 applied it, verbatim: the definitions the downgrade restores,
# kept here once (the contract part, rendered from db/events.py, did not change).
PREVIOUS_EVENTS_SQL = r"""
-- The acting device, set by the API with set_config('pgwarden.device_identifier', ..., true).
-- Null when unset, and when oversized, so a payload stays far under NOTIFY's 8000 bytes.
CREATE OR REPLACE FUNCTION pgwarden_device_identifier() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT d FROM (SELECT NULLIF(current_setting('pgwarden.device_identifier', true), '') AS d) s
     WHERE length(d) <= pgwarden_device_identifier_limit()
$$;

CREATE OR REPLACE FUNCTION pgwarden_notify(
    push_type integer, user_id uuid, org_id uuid, item_id uuid, date timestamptz, device_identifier text)
RETURNS void LANGUAGE sql AS $$
    SELECT pg_notify(pgwarden_channel(), json_build_object(
        'type', push_type, 'user', user_id, 'org', org_id, 'item', item_id,
        'date', to_char(date AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'device', device_identifier)::text)
$$;

-- Strictly forward, at the millisecond resolution the clients compare.
CREATE OR REPLACE FUNCTION pgwarden_next_revision(previous timestamptz) RETURNS timestamptz
LANGUAGE sql VOLATILE AS $$
    SELECT GREATEST(date_trunc('milliseconds', clock_timestamp()),
                    previous + interval '1 millisecond')
$$;

CREATE OR REPLACE FUNCTION pgwarden_touch_users(user_ids uuid[]) RETURNS void LANGUAGE sql AS $$
    UPDATE users SET revision_date = pgwarden_next_revision(revision_date)
     WHERE id = ANY(user_ids)
$$;

-- Publishes one statement's changes: the item's own event when a recipient has one
-- change, else one bulk_type event for that recipient. A transaction that sets
-- pgwarden.bulk to 'on' (an import, even of one item) gets bulk events only.
CREATE OR REPLACE FUNCTION pgwarden_publish(changes pgwarden_change[], bulk_type integer)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    device text := pgwarden_device_identifier();
    bulk_only boolean := coalesce(current_setting('pgwarden.bulk', true) = 'on', false);
BEGIN
    PERFORM pgwarden_touch_users(ARRAY(
        SELECT DISTINCT c.user_id FROM unnest(changes) c WHERE c.user_id IS NOT NULL));
    PERFORM pgwarden_notify(
                CASE WHEN g.single THEN g.push_type ELSE bulk_type END,
                g.user_id, g.org_id,
                CASE WHEN g.single THEN g.item_id END,
                CASE WHEN g.single THEN g.date ELSE now() END,
                device)
       FROM (SELECT c.user_id, c.org_id, count(*) = 1 AND NOT bulk_only AS single,
                    min(c.push_type) AS push_type,
                    (array_agg(c.item_id))[1] AS item_id, max(c.date) AS date
               FROM unnest(changes) c
              GROUP BY c.user_id, c.org_id) g
      ORDER BY g.user_id, g.org_id;
END
$$;

-- Any writer, SQL sessions included, moves an item's revision date forward.
-- Trigger: ciphers_stamp_revision, folders_stamp_revision (BEFORE INSERT OR UPDATE, each row).
CREATE OR REPLACE FUNCTION pgwarden_stamp_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.revision_date := date_trunc('milliseconds', clock_timestamp());
    ELSE
        NEW.revision_date := pgwarden_next_revision(OLD.revision_date);
    END IF;
    RETURN NEW;
END
$$;

-- Trigger: ciphers_inserted, ciphers_updated, ciphers_deleted (AFTER, each statement).
CREATE OR REPLACE FUNCTION pgwarden_ciphers_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- several new items at once is an import: a full sync
        PERFORM pgwarden_publish(ARRAY(
            SELECT ROW(user_id, organization_id, id, pgwarden_push_type('sync_cipher_create'),
                       revision_date)::pgwarden_change
              FROM new_rows), pgwarden_push_type('sync_vault'));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM pgwarden_publish(ARRAY(
            SELECT ROW(user_id, organization_id, id, pgwarden_push_type('sync_login_delete'),
                       now())::pgwarden_change
              FROM old_rows), pgwarden_push_type('sync_ciphers'));
    ELSE
        -- an item that changes owner is deleted for one and created for the other
        PERFORM pgwarden_publish(ARRAY(
            SELECT ROW(n.user_id, n.organization_id, n.id, pgwarden_push_type('sync_cipher_update'),
                       n.revision_date)::pgwarden_change
              FROM new_rows n JOIN old_rows o USING (id)
             WHERE (n.user_id, n.organization_id) IS NOT DISTINCT FROM (o.user_id, o.organization_id)
            UNION ALL
            SELECT ROW(o.user_id, o.organization_id, o.id, pgwarden_push_type('sync_login_delete'),
                       now())::pgwarden_change
              FROM new_rows n JOIN old_rows o USING (id)
             WHERE (n.user_id, n.organization_id) IS DISTINCT FROM (o.user_id, o.organization_id)
            UNION ALL
            SELECT ROW(n.user_id, n.organization_id, n.id, pgwarden_push_type('sync_cipher_create'),
                       n.revision_date)::pgwarden_change
              FROM new_rows n JOIN old_rows o USING (id)
             WHERE (n.user_id, n.organization_id) IS DISTINCT FROM (o.user_id, o.organization_id)
            ), pgwarden_push_type('sync_ciphers'));
    END IF;
    RETURN NULL;
END
$$;

-- Trigger: folders_inserted, folders_updated, folders_deleted (AFTER, each statement).
CREATE OR REPLACE FUNCTION pgwarden_folders_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM pgwarden_publish(ARRAY(
            SELECT ROW(user_id, NULL, id, pgwarden_push_type('sync_folder_create'),
                       revision_date)::pgwarden_change
              FROM new_rows), pgwarden_push_type('sync_vault'));
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM pgwarden_publish(ARRAY(
            SELECT ROW(user_id, NULL, id, pgwarden_push_type('sync_folder_update'),
                       revision_date)::pgwarden_change
              FROM new_rows), pgwarden_push_type('sync_vault'));
    ELSE
        PERFORM pgwarden_publish(ARRAY(
            SELECT ROW(user_id, NULL, id, pgwarden_push_type('sync_folder_delete'),
                       now())::pgwarden_change
              FROM old_rows), pgwarden_push_type('sync_vault'));
        -- the items in a deleted folder become folderless (and notify as changed items)
        UPDATE ciphers c SET folders = c.folders - o.user_id::text
          FROM old_rows o
         WHERE c.folders @> jsonb_build_object(o.user_id::text, o.id::text);
    END IF;
    RETURN NULL;
END
$$;

-- A sync_events row is the message: its push type is one the CHECK constraint allows.
-- Trigger: sync_events_added (AFTER INSERT, each statement).
CREATE OR REPLACE FUNCTION pgwarden_sync_events_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pgwarden_touch_users(ARRAY(SELECT DISTINCT user_id FROM new_rows));
    PERFORM pgwarden_notify(e.push_type, e.user_id, NULL, e.item_id, now(), e.device_identifier)
       FROM (SELECT push_type, user_id, item_id, device_identifier, min(id) AS first
               FROM new_rows GROUP BY push_type, user_id, item_id, device_identifier) e
      ORDER BY e.first;
    -- a row is only the message: keep a month of them for inspection
    DELETE FROM sync_events WHERE created_at < now() - interval '30 days';
    RETURN NULL;
END
$$;
"""
