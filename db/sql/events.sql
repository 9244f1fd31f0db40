-- The functions that publish every committed vault change as one NOTIFY event: their current
-- definition. db/routines.py applies this file (after the contract it renders from
-- db/events.py: pgwarden_channel(), pgwarden_device_identifier_limit(), pgwarden_push_type()).
--
-- An event's life in SQL: a statement changes rows of ciphers, folders or sync_events; that
-- table's statement trigger (bound in migration 0002) collects the changes, moves the owner's
-- revision date forward and calls pgwarden_notify, whose payload db/events.py decodes.
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
-- One changed item as seen by one recipient is the composite type made in migration 0002:
--   pgwarden_change (user_id uuid, org_id uuid, item_id uuid, push_type smallint, date timestamptz)


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
