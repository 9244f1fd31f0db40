"""A one-item write skips the grouping query, and a user in no organization the membership probe.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29

Measured in docs/performance.md ("Write path"): since migration 0012 a single-item write paid
for a query grouping the transition table by recipient (INSERT), and for a probe of the user's
memberships as costly as the revision move itself.

- pgwarden_ciphers_changed reads a statement of one item (INSERT, UPDATE keeping its owner,
  DELETE) without grouping, gated by the transition table's count, and hands it to
  pgwarden_publish as it is; only a statement of several items is grouped.
- user_revisions.in_organizations marks a user who has joined an organization (set by the
  memberships_joined trigger, whoever writes the membership): pgwarden_publish moves an unmarked
  user's revision date without probing the memberships.
"""

from alembic import op

from db import routines

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

#: The routines' text this migration was written for (db.routines.fingerprint()).
ROUTINES = "0df8b8303703"


def upgrade() -> None:
    op.execute(
        """
        -- no membership is added between the marking and the trigger that keeps it
        LOCK TABLE memberships IN SHARE ROW EXCLUSIVE MODE;
        ALTER TABLE user_revisions
            -- once the user has joined an organization: its revision date counts (pgwarden_publish)
            ADD COLUMN in_organizations boolean NOT NULL DEFAULT false;
        UPDATE user_revisions r SET in_organizations = true
         WHERE EXISTS (SELECT FROM memberships m WHERE m.user_id = r.user_id);
        """
    )
    routines.apply(op.execute)
    op.execute(
        """
        CREATE TRIGGER memberships_joined AFTER INSERT OR UPDATE OF user_id ON memberships
            FOR EACH ROW WHEN (NEW.user_id IS NOT NULL) EXECUTE FUNCTION pgwarden_member_joined();
        """
    )


def downgrade() -> None:
    op.execute(PREVIOUS_CIPHERS_SQL)
    op.execute(
        """
        DROP TRIGGER memberships_joined ON memberships;
        DROP FUNCTION pgwarden_member_joined();
        ALTER TABLE user_revisions DROP COLUMN in_organizations;
        """
    )


# pgwarden_publish and pgwarden_ciphers_changed as migration 0012 applied them, verbatim: the
# definitions the downgrade restores.
PREVIOUS_CIPHERS_SQL = r"""
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
        -- pgwarden_touch_users inline: one query fewer on every statement
        UPDATE user_revisions r
           SET revision_date = pgwarden_next_revision(GREATEST(r.revision_date,
                   (SELECT max(o.revision_date) FROM memberships m
                      JOIN organization_revisions o ON o.organization_id = m.organization_id
                     WHERE m.user_id = r.user_id)))
         WHERE r.user_id = pgwarden_publish.user_id;
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

-- Each branch groups the changed rows by recipient in one query and calls pgwarden_publish once
-- per group, in recipient order (the UPDATE branch first reads a lone edited item without
-- grouping). (array_agg(id))[1] is the item when the group has only one. An organization's group
-- also passes the collections of its rows, after and before the statement: each is one subquery
-- per organization group over one transition table, and none for a personal group (its filter
-- on the group's organization is decided once, before any row is read).
-- Trigger: ciphers_inserted, ciphers_updated, ciphers_deleted (AFTER, each statement).
CREATE OR REPLACE FUNCTION pgwarden_ciphers_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    device text := pgwarden_device_identifier();
    edited record;
BEGIN
    IF TG_OP = 'INSERT' THEN
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
        PERFORM pgwarden_publish(g.user_id, g.organization_id, g.items, pgwarden_push_type('sync_login_delete'),
                                 g.id, now(), pgwarden_push_type('sync_ciphers'), device, '{}',
                                 (SELECT coalesce(array_agg(DISTINCT c), '{}') FROM old_rows o, unnest(o.collection_ids) c
                                   WHERE g.organization_id IS NOT NULL AND o.organization_id = g.organization_id))
           FROM (SELECT user_id, organization_id, count(*) AS items, (array_agg(id))[1] AS id
                   FROM old_rows GROUP BY user_id, organization_id) g
          ORDER BY g.user_id, g.organization_id;
    ELSE
        -- The common case first: one item edited by its owner, read without grouping. The count
        -- gates the join, which never runs over more than one row.
        SELECT n.user_id, n.organization_id, n.id, n.revision_date,
               n.collection_ids AS after, o.collection_ids AS before INTO edited
          FROM new_rows n JOIN old_rows o USING (id)
         WHERE (SELECT count(*) FROM new_rows) = 1
           AND (n.user_id, n.organization_id) IS NOT DISTINCT FROM (o.user_id, o.organization_id);
        IF FOUND THEN
            PERFORM pgwarden_publish(edited.user_id, edited.organization_id, 1, pgwarden_push_type('sync_cipher_update'),
                                     edited.id, edited.revision_date, pgwarden_push_type('sync_ciphers'), device,
                                     edited.after, edited.before);
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
"""
