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

-- collections: for an organization's item, the collections it is in (before a deletion, those
-- it was in); for an organization's bulk event, every collection its items were or are in; null
-- for a personal event, and for an organization's event that reaches every member. moved_from:
-- the collections an item was in before an update that changed them, else null. The hub routes
-- an organization's event with them (wshub/memberships.py).
CREATE OR REPLACE FUNCTION pgwarden_notify(
    push_type integer, user_id uuid, org_id uuid, item_id uuid, date timestamptz, device_identifier text,
    collections uuid[], moved_from uuid[])
RETURNS void LANGUAGE sql AS $$
    SELECT pg_notify(pgwarden_channel(), json_build_object(
        'type', push_type, 'user', user_id, 'org', org_id, 'item', item_id,
        'date', to_char(date AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'device', device_identifier, 'collections', collections, 'moved_from', moved_from)::text)
$$;

-- Strictly forward, at the millisecond resolution the clients compare.
CREATE OR REPLACE FUNCTION pgwarden_next_revision(previous timestamptz) RETURNS timestamptz
LANGUAGE sql VOLATILE AS $$
    SELECT GREATEST(date_trunc('milliseconds', clock_timestamp()),
                    previous + interval '1 millisecond')
$$;

-- Users' revision dates, as /api/accounts/revision-date and the hub's gap recovery read them:
-- the one definition of what a user's revision date is. It combines two narrow rows, so that
-- moving either writes a small row instead of a new version of a wide one:
-- - user_revisions (migration 0006), one per user, moved by the user's own changes;
-- - organization_revisions (migration 0010), one per organization, moved once per change of the
--   organization's items however many members it has;
-- as GREATEST(the user's row, the rows of the enabled organizations the user is a confirmed
-- member of), member_access's rule.
CREATE OR REPLACE FUNCTION pgwarden_user_revisions(user_ids uuid[])
RETURNS TABLE (user_id uuid, revision_date timestamptz) LANGUAGE sql STABLE AS $$
    SELECT r.user_id,
           GREATEST(r.revision_date,
                    (SELECT max(o.revision_date) FROM organization_revisions o
                      WHERE o.organization_id IN (SELECT a.organization_id FROM member_access a
                                                   WHERE a.user_id = r.user_id)))
      FROM user_revisions r WHERE r.user_id = ANY(user_ids)
$$;

-- A user's own row moves past the user's combined date, so that what clients read moves strictly
-- forward. The organizations counted here are all the user's memberships, whatever their status:
-- a membership being revoked still counts, and the API publishes a removal before it deletes
-- the row, so leaving an organization never moves the date back. (Inlined in pgwarden_publish,
-- which skips the memberships for a user never in an organization: user_revisions.in_organizations.)
CREATE OR REPLACE FUNCTION pgwarden_touch_users(user_ids uuid[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE user_revisions r
       SET revision_date = pgwarden_next_revision(GREATEST(r.revision_date,
               (SELECT max(o.revision_date) FROM memberships m
                  JOIN organization_revisions o ON o.organization_id = m.organization_id
                 WHERE m.user_id = r.user_id)))
     WHERE r.user_id = ANY(user_ids);
END
$$;

-- Publishes what one statement changed for one recipient, a user or an organization: moves the
-- recipient's revision date forward, then notifies. One changed item gives that item's event
-- (push_type, item_id, date); several, or a transaction that set pgwarden.bulk to 'on' (an import,
-- even of one item), give one bulk_type event.
--
-- An organization's event names collections (see pgwarden_notify): after and before are the
-- collections of the changed items after and before the statement. An item event names the
-- item only with all its collections; past pgwarden_event_collections_limit() it becomes the
-- bulk event, naming no item and no collection, which the hub sends to every member: the
-- payload stays far under NOTIFY's 8000 bytes, and no one hears of an item it cannot see.
CREATE OR REPLACE FUNCTION pgwarden_publish(
    user_id uuid, org_id uuid, items bigint, push_type integer, item_id uuid, date timestamptz,
    bulk_type integer, device_identifier text, after uuid[], before uuid[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    single boolean := items = 1 AND current_setting('pgwarden.bulk', true) IS DISTINCT FROM 'on';
    collections uuid[];
    moved_from uuid[];
BEGIN
    IF user_id IS NOT NULL THEN
        -- pgwarden_touch_users inline: one query fewer on every statement. A user who never was
        -- in an organization, most users, is moved past the own row without the membership
        -- probe (which costs as much as the move): two plans, since a plan starts every subquery
        -- it holds whether or not it runs it.
        UPDATE user_revisions r SET revision_date = pgwarden_next_revision(r.revision_date)
         WHERE r.user_id = pgwarden_publish.user_id AND NOT r.in_organizations;
        IF NOT FOUND THEN
            UPDATE user_revisions r
               SET revision_date = pgwarden_next_revision(GREATEST(r.revision_date,
                       (SELECT max(o.revision_date) FROM memberships m
                          JOIN organization_revisions o ON o.organization_id = m.organization_id
                         WHERE m.user_id = r.user_id)))
             WHERE r.user_id = pgwarden_publish.user_id;
        END IF;
    ELSE
        -- one row whatever the organization's size: its members read it through pgwarden_user_revisions
        UPDATE organization_revisions r SET revision_date = pgwarden_next_revision(r.revision_date)
         WHERE r.organization_id = org_id;
        IF NOT single THEN
            collections := ARRAY(SELECT DISTINCT c FROM unnest(after || before) c);
        ELSIF push_type = pgwarden_push_type('sync_login_delete') THEN
            collections := before;
        ELSE
            collections := after;
            IF push_type = pgwarden_push_type('sync_cipher_update') AND NOT (after @> before AND before @> after) THEN
                moved_from := before;
            END IF;
        END IF;
        IF cardinality(collections) > pgwarden_event_collections_limit()
           OR cardinality(moved_from) > pgwarden_event_collections_limit() THEN
            single := false;
            collections := NULL;
            moved_from := NULL;
        END IF;
    END IF;
    IF single THEN
        PERFORM pgwarden_notify(push_type, user_id, org_id, item_id, date, device_identifier,
                                collections, moved_from);
    ELSE
        PERFORM pgwarden_notify(bulk_type, user_id, org_id, NULL, now(), device_identifier, collections, NULL);
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

-- Each branch reads a statement of one item first, without grouping: the count gates the read,
-- which never goes past one row, and the item goes to pgwarden_publish as it is. Otherwise it
-- groups the changed rows by recipient in one query and calls pgwarden_publish once per group,
-- in recipient order. (array_agg(id))[1] is the item when the group has only one. An
-- organization's group also passes the collections of its rows, after and before the
-- statement: each is one subquery per organization group over one transition table, and none
-- for a personal group (its filter on the group's organization is decided once, before any row
-- is read).
-- Trigger: ciphers_inserted, ciphers_updated, ciphers_deleted (AFTER, each statement).
CREATE OR REPLACE FUNCTION pgwarden_ciphers_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    device text := pgwarden_device_identifier();
    one record;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT n.user_id, n.organization_id, n.id, n.revision_date, n.collection_ids INTO one
          FROM new_rows n WHERE (SELECT count(*) FROM new_rows) = 1;
        IF FOUND THEN
            PERFORM pgwarden_publish(one.user_id, one.organization_id, 1, pgwarden_push_type('sync_cipher_create'),
                                     one.id, one.revision_date, pgwarden_push_type('sync_vault'), device,
                                     one.collection_ids, '{}');
            RETURN NULL;
        END IF;
        -- several new items at once is an import: a full sync
        PERFORM pgwarden_publish(g.user_id, g.organization_id, g.items, pgwarden_push_type('sync_cipher_create'),
                                 g.id, g.date, pgwarden_push_type('sync_vault'), device,
                                 (SELECT coalesce(array_agg(DISTINCT c), '{}') FROM new_rows n, unnest(n.collection_ids) c
                                   WHERE g.organization_id IS NOT NULL AND n.organization_id = g.organization_id),
                                 '{}')
           FROM (SELECT user_id, organization_id, count(*) AS items, (array_agg(id))[1] AS id,
                        max(revision_date) AS date
                   FROM new_rows GROUP BY user_id, organization_id) g
          ORDER BY g.user_id, g.organization_id;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT o.user_id, o.organization_id, o.id, o.collection_ids INTO one
          FROM old_rows o WHERE (SELECT count(*) FROM old_rows) = 1;
        IF FOUND THEN
            PERFORM pgwarden_publish(one.user_id, one.organization_id, 1, pgwarden_push_type('sync_login_delete'),
                                     one.id, now(), pgwarden_push_type('sync_ciphers'), device,
                                     '{}', one.collection_ids);
            RETURN NULL;
        END IF;
        PERFORM pgwarden_publish(g.user_id, g.organization_id, g.items, pgwarden_push_type('sync_login_delete'),
                                 g.id, now(), pgwarden_push_type('sync_ciphers'), device, '{}',
                                 (SELECT coalesce(array_agg(DISTINCT c), '{}') FROM old_rows o, unnest(o.collection_ids) c
                                   WHERE g.organization_id IS NOT NULL AND o.organization_id = g.organization_id))
           FROM (SELECT user_id, organization_id, count(*) AS items, (array_agg(id))[1] AS id
                   FROM old_rows GROUP BY user_id, organization_id) g
          ORDER BY g.user_id, g.organization_id;
    ELSE
        -- an item that stays with its owner (one that changes owner is grouped below)
        SELECT n.user_id, n.organization_id, n.id, n.revision_date,
               n.collection_ids AS after, o.collection_ids AS before INTO one
          FROM new_rows n JOIN old_rows o USING (id)
         WHERE (SELECT count(*) FROM new_rows) = 1
           AND (n.user_id, n.organization_id) IS NOT DISTINCT FROM (o.user_id, o.organization_id);
        IF FOUND THEN
            PERFORM pgwarden_publish(one.user_id, one.organization_id, 1, pgwarden_push_type('sync_cipher_update'),
                                     one.id, one.revision_date, pgwarden_push_type('sync_ciphers'), device,
                                     one.after, one.before);
            RETURN NULL;
        END IF;
        -- An item that changes owner is deleted for one and created for the other. Each row is
        -- an (item, owner) side: a side found both before and after is an update (dated by the
        -- row after), one found only after a create, one found only before a delete (now).
        PERFORM pgwarden_publish(s.user_id, s.org_id, count(*), min(s.push_type),
                                 (array_agg(s.id))[1], max(s.date), pgwarden_push_type('sync_ciphers'), device,
                                 (SELECT coalesce(array_agg(DISTINCT c), '{}') FROM new_rows n, unnest(n.collection_ids) c
                                   WHERE s.org_id IS NOT NULL AND n.organization_id = s.org_id),
                                 (SELECT coalesce(array_agg(DISTINCT c), '{}') FROM old_rows o, unnest(o.collection_ids) c
                                   WHERE s.org_id IS NOT NULL AND o.organization_id = s.org_id))
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
                                 (array_agg(id))[1], max(revision_date), pgwarden_push_type('sync_vault'), device, NULL, NULL)
           FROM new_rows
          GROUP BY user_id ORDER BY user_id;
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM pgwarden_publish(user_id, NULL, count(*), pgwarden_push_type('sync_folder_update'),
                                 (array_agg(id))[1], max(revision_date), pgwarden_push_type('sync_vault'), device, NULL, NULL)
           FROM new_rows
          GROUP BY user_id ORDER BY user_id;
    ELSE
        PERFORM pgwarden_publish(user_id, NULL, count(*), pgwarden_push_type('sync_folder_delete'),
                                 (array_agg(id))[1], now(), pgwarden_push_type('sync_vault'), device, NULL, NULL)
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
    PERFORM pgwarden_notify(e.push_type, e.user_id, NULL, e.item_id, now(), e.device_identifier, NULL, NULL)
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

-- Each changed Send publishes its own event, grouped by Send (a statement touches one Send, or
-- the few of a scheduled deletion, each of which the owner's devices remove on its own).
-- Trigger: sends_inserted, sends_updated, sends_deleted (AFTER, each statement).
CREATE OR REPLACE FUNCTION pgwarden_sends_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    device text := pgwarden_device_identifier();
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM pgwarden_publish(user_id, NULL, count(*), pgwarden_push_type('sync_send_create'), id, max(revision_date),
                                 pgwarden_push_type('sync_send_create'), device, NULL, NULL)
           FROM new_rows GROUP BY user_id, id ORDER BY user_id, id;
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM pgwarden_publish(user_id, NULL, count(*), pgwarden_push_type('sync_send_update'), id, max(revision_date),
                                 pgwarden_push_type('sync_send_update'), device, NULL, NULL)
           FROM new_rows GROUP BY user_id, id ORDER BY user_id, id;
    ELSE
        PERFORM pgwarden_publish(user_id, NULL, count(*), pgwarden_push_type('sync_send_delete'), id, now(),
                                 pgwarden_push_type('sync_send_delete'), device, NULL, NULL)
           FROM old_rows GROUP BY user_id, id ORDER BY user_id, id;
    END IF;
    RETURN NULL;
END
$$;

-- Every organization has a revision row from the start.
-- Trigger: organizations_added (AFTER INSERT, each statement).
CREATE OR REPLACE FUNCTION pgwarden_organizations_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO organization_revisions (organization_id) SELECT id FROM new_rows;
    RETURN NULL;
END
$$;
