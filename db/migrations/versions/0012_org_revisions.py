"""Organizations get a revision date of their own; their items' events name their collections.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03

- organization_revisions (organization_id, revision_date): one narrow row per organization, made
  by a trigger on organizations, moved once per change of the organization's items, whatever
  the number of members. pgwarden_user_revisions() combines it with the user's own row for the
  organizations the user reaches (docs/architecture.md, "Organizations: who reaches what").
- The hub's roles (those given db/roles.py's grants) may read organization_revisions and the
  member_access view, which the hub now reads, without a new grant-hub.
- pgwarden_publish and pgwarden_notify take the collections of an organization's changed items
  (after and before the statement), and the NOTIFY payload gains "collections" and "moved_from"
  (db/events.py), which the hub routes by.
"""

from alembic import op

from db import routines

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

#: The routines' text this migration was written for (db.routines.fingerprint()).
ROUTINES = "2c4ddf2378dd"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE organization_revisions (
            organization_id     uuid PRIMARY KEY REFERENCES organizations ON DELETE CASCADE,
            -- what the members' clients poll, combined with their own (pgwarden_user_revisions)
            revision_date       timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now())
        );
        INSERT INTO organization_revisions (organization_id) SELECT id FROM organizations;
        -- both take the collections now: new signatures, not replacements (a database migrated
        -- from scratch got the new ones already, from an earlier migration's routines.apply)
        DROP FUNCTION IF EXISTS pgwarden_publish(uuid, uuid, bigint, integer, uuid, timestamptz, integer, text);
        DROP FUNCTION IF EXISTS pgwarden_notify(integer, uuid, uuid, uuid, timestamptz, text);
        """
    )
    routines.apply(op.execute)
    op.execute(
        """
        CREATE TRIGGER organizations_added AFTER INSERT ON organizations
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION pgwarden_organizations_added();

        -- the hub roles (db/roles.py) route organization events and read revision dates through
        -- these from now on: a hub keeps working without a new grant-hub
        DO $$
        DECLARE hub_role text;
        BEGIN
            FOR hub_role IN
                SELECT DISTINCT grantee FROM information_schema.column_privileges
                 WHERE table_schema = current_schema() AND table_name = 'users'
                   AND column_name = 'security_stamp' AND privilege_type = 'SELECT'
                   AND grantee NOT IN ('PUBLIC', current_user)
                   AND NOT has_table_privilege(grantee, 'users', 'SELECT')
            LOOP
                EXECUTE format('GRANT SELECT ON organization_revisions, member_access TO %I', hub_role);
            END LOOP;
        END $$;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TRIGGER organizations_added ON organizations;
        DROP FUNCTION pgwarden_organizations_added(), pgwarden_event_collections_limit(),
            pgwarden_publish(uuid, uuid, bigint, integer, uuid, timestamptz, integer, text, uuid[], uuid[]),
            pgwarden_notify(integer, uuid, uuid, uuid, timestamptz, text, uuid[], uuid[]);
        """
    )
    op.execute(PREVIOUS_EVENTS_SQL)
    op.execute(PREVIOUS_SENDS_SQL)
    op.execute("DROP TABLE organization_revisions")


# pgwarden_sends_changed as migration 0011 applied it, through the publish function restored above.
PREVIOUS_SENDS_SQL = r"""
CREATE OR REPLACE FUNCTION pgwarden_sends_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    device text := pgwarden_device_identifier();
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM pgwarden_publish(user_id, NULL, count(*), pgwarden_push_type('sync_send_create'), id, max(revision_date),
                                 pgwarden_push_type('sync_send_create'), device)
           FROM new_rows GROUP BY user_id, id ORDER BY user_id, id;
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM pgwarden_publish(user_id, NULL, count(*), pgwarden_push_type('sync_send_update'), id, max(revision_date),
                                 pgwarden_push_type('sync_send_update'), device)
           FROM new_rows GROUP BY user_id, id ORDER BY user_id, id;
    ELSE
        PERFORM pgwarden_publish(user_id, NULL, count(*), pgwarden_push_type('sync_send_delete'), id, now(),
                                 pgwarden_push_type('sync_send_delete'), device)
           FROM old_rows GROUP BY user_id, id ORDER BY user_id, id;
    END IF;
    RETURN NULL;
END
$$;
"""


# db/sql/events.sql as migration 0007 applied it (and 0008 to 0011 left it, but for the Sends function above), verbatim: the definitions the downgrade restores
# (the contract part lost only pgwarden_event_collections_limit(), dropped above).
PREVIOUS_EVENTS_SQL = r"""
-- The functions that publish every committed vault change as one NOTIFY event: their current
-- definition. db/routines.py applies this file (after the contract it renders from
-- db/events.py: pgwarden_channel(), pgwarden_device_identifier_limit(), pgwarden_push_type()).
--
-- An event's life in SQL: a statement changes rows of ciphers, folders or sync_events; that
-- table's statement trigger groups the changed rows by recipient and calls pgwarden_publish once
-- per recipient, which moves the recipient's revision date forward and calls pgwarden_notify,
-- whose payload db/events.py decodes.
--
-- Three rules shape it:
-- - Statement granularity: a statement that touches one item publishes that item's event; one
--   that touches several items of a user publishes a single bulk event for that user.
-- - The owner's revision date moves forward in the same transaction, so a client that reacts to
--   the event by polling /api/accounts/revision-date sees the change.
-- - pg_notify is transactional: nothing leaves before COMMIT, nothing leaves on ROLLBACK, and
--   identical payloads within one transaction collapse into one (an import that inserts folders
--   and ciphers in two statements yields a single SyncVault, both carrying the same now()).
--
-- What a write costs is in docs/performance.md ("Write path"). In short: every statement pays
-- for its trigger, so the trigger functions are PL/pgSQL (whose plans are kept per session) and
-- call only SQL functions that the planner inlines (a SQL function it cannot inline is parsed and
-- planned again on every call); the revision date is a narrow row of its own; and no query joins
-- two transition tables (a plan cached for one row would stay a nested loop for thousands).


-- The acting device, set by the API with set_config('pgwarden.device_identifier', ..., true).
-- Null when unset, and when oversized, so a payload stays far under NOTIFY's 8000 bytes.
-- One expression without FROM, so that it is inlined wherever it is called.
CREATE OR REPLACE FUNCTION pgwarden_device_identifier() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN length(current_setting('pgwarden.device_identifier', true))
                     <= pgwarden_device_identifier_limit()
                THEN NULLIF(current_setting('pgwarden.device_identifier', true), '') END
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

-- Users' revision dates, as /api/accounts/revision-date and the hub's gap recovery read them:
-- the one definition of what a user's revision date is. It lives in user_revisions (made in
-- migration 0004), one narrow row per user, so that moving it writes a small row instead of a
-- new version of the wide users row.
--
-- Extension point for organizations: give them a row of their own (organization_revisions,
-- moved when an organization's items change, once per change instead of once per member) and
-- combine it here, GREATEST(the user's row, the rows of the organizations the user belongs to).
-- pgwarden_touch_users must then take the next date from that combined date, so that what
-- clients read still moves strictly forward.
CREATE OR REPLACE FUNCTION pgwarden_user_revisions(user_ids uuid[])
RETURNS TABLE (user_id uuid, revision_date timestamptz) LANGUAGE sql STABLE AS $$
    SELECT r.user_id, r.revision_date FROM user_revisions r WHERE r.user_id = ANY(user_ids)
$$;

CREATE OR REPLACE FUNCTION pgwarden_touch_users(user_ids uuid[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE user_revisions r SET revision_date = pgwarden_next_revision(r.revision_date)
     WHERE r.user_id = ANY(user_ids);
END
$$;

-- Publishes what one statement changed for one recipient (a user and an organization, either
-- may be null): moves the user's revision date forward, then notifies. One changed item gives
-- that item's event (push_type, item_id, date); several, or a transaction that set
-- pgwarden.bulk to 'on' (an import, even of one item), give one bulk_type event.
CREATE OR REPLACE FUNCTION pgwarden_publish(
    user_id uuid, org_id uuid, items bigint, push_type integer, item_id uuid, date timestamptz,
    bulk_type integer, device_identifier text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- pgwarden_touch_users inline: one query fewer on every statement
    UPDATE user_revisions r SET revision_date = pgwarden_next_revision(r.revision_date)
     WHERE r.user_id = pgwarden_publish.user_id;
    IF items = 1 AND current_setting('pgwarden.bulk', true) IS DISTINCT FROM 'on' THEN
        PERFORM pgwarden_notify(push_type, user_id, org_id, item_id, date, device_identifier);
    ELSE
        PERFORM pgwarden_notify(bulk_type, user_id, org_id, NULL, now(), device_identifier);
    END IF;
END
$$;

-- Any writer, SQL sessions included, moves an item's revision date forward.
-- Trigger: ciphers_stamp_updated, folders_stamp_updated (BEFORE UPDATE, each row), and
-- ciphers_stamp_inserted, folders_stamp_inserted (BEFORE INSERT, each row), which run only for a
-- row that came with a date other than its column default, the same expression: a new row
-- usually costs no call at all.
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

-- Each branch groups the changed rows by recipient in one query and calls pgwarden_publish once
-- per group, in recipient order (the UPDATE branch first reads a lone edited item without
-- grouping). (array_agg(id))[1] is the item when the group has only one.
-- Trigger: ciphers_inserted, ciphers_updated, ciphers_deleted (AFTER, each statement).
CREATE OR REPLACE FUNCTION pgwarden_ciphers_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    device text := pgwarden_device_identifier();
    edited record;
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- several new items at once is an import: a full sync
        PERFORM pgwarden_publish(user_id, organization_id, count(*), pgwarden_push_type('sync_cipher_create'),
                                 (array_agg(id))[1], max(revision_date), pgwarden_push_type('sync_vault'), device)
           FROM new_rows
          GROUP BY user_id, organization_id ORDER BY user_id, organization_id;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM pgwarden_publish(user_id, organization_id, count(*), pgwarden_push_type('sync_login_delete'),
                                 (array_agg(id))[1], now(), pgwarden_push_type('sync_ciphers'), device)
           FROM old_rows
          GROUP BY user_id, organization_id ORDER BY user_id, organization_id;
    ELSE
        -- The common case first: one item edited by its owner, read without grouping. The count
        -- gates the join, which never runs over more than one row.
        SELECT n.user_id, n.organization_id, n.id, n.revision_date INTO edited
          FROM new_rows n JOIN old_rows o USING (id)
         WHERE (SELECT count(*) FROM new_rows) = 1
           AND (n.user_id, n.organization_id) IS NOT DISTINCT FROM (o.user_id, o.organization_id);
        IF FOUND THEN
            PERFORM pgwarden_publish(edited.user_id, edited.organization_id, 1, pgwarden_push_type('sync_cipher_update'),
                                     edited.id, edited.revision_date, pgwarden_push_type('sync_ciphers'), device);
            RETURN NULL;
        END IF;
        -- An item that changes owner is deleted for one and created for the other. Each row is
        -- an (item, owner) side: a side found both before and after is an update (dated by the
        -- row after), one found only after a create, one found only before a delete (now).
        PERFORM pgwarden_publish(s.user_id, s.org_id, count(*), min(s.push_type),
                                 (array_agg(s.id))[1], max(s.date), pgwarden_push_type('sync_ciphers'), device)
           FROM (SELECT user_id, org_id, id, coalesce(max(date), now()) AS date,
                        CASE WHEN count(*) = 2 THEN pgwarden_push_type('sync_cipher_update')
                             WHEN bool_or(after) THEN pgwarden_push_type('sync_cipher_create')
                             ELSE pgwarden_push_type('sync_login_delete') END AS push_type
                   FROM (SELECT user_id, organization_id, id, revision_date, true FROM new_rows
                         UNION ALL
                         SELECT user_id, organization_id, id, NULL, false FROM old_rows
                        ) side (user_id, org_id, id, date, after)
                  GROUP BY id, user_id, org_id) s
          GROUP BY s.user_id, s.org_id ORDER BY s.user_id, s.org_id;
    END IF;
    RETURN NULL;
END
$$;

-- Trigger: folders_inserted, folders_updated, folders_deleted (AFTER, each statement).
CREATE OR REPLACE FUNCTION pgwarden_folders_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    device text := pgwarden_device_identifier();
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM pgwarden_publish(user_id, NULL, count(*), pgwarden_push_type('sync_folder_create'),
                                 (array_agg(id))[1], max(revision_date), pgwarden_push_type('sync_vault'), device)
           FROM new_rows
          GROUP BY user_id ORDER BY user_id;
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM pgwarden_publish(user_id, NULL, count(*), pgwarden_push_type('sync_folder_update'),
                                 (array_agg(id))[1], max(revision_date), pgwarden_push_type('sync_vault'), device)
           FROM new_rows
          GROUP BY user_id ORDER BY user_id;
    ELSE
        PERFORM pgwarden_publish(user_id, NULL, count(*), pgwarden_push_type('sync_folder_delete'),
                                 (array_agg(id))[1], now(), pgwarden_push_type('sync_vault'), device)
           FROM old_rows
          GROUP BY user_id ORDER BY user_id;
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

-- Every user has a revision row from the start: the revision date is never missing.
-- Trigger: users_added (AFTER INSERT, each statement).
CREATE OR REPLACE FUNCTION pgwarden_users_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO user_revisions (user_id) SELECT id FROM new_rows;
    RETURN NULL;
END
$$;
"""
