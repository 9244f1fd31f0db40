-- The functions that keep organization data consistent: their current definition.
-- db/routines.py applies this file after db/sql/events.sql. The tables, the trigger bindings
-- and the views that say who reaches what (member_access, collection_access, cipher_access) are
-- schema, made by migration 0006.
--
-- An organization item names its collections in ciphers.collection_ids, so the statement that
-- writes an item also carries its collections, and the ciphers trigger that publishes the item's
-- event sees them in the same row.


-- A deleted collection leaves no trace in its items, whoever deletes it (the API, psql, the
-- cascade of an organization's deletion). One statement for all the items it held, so the
-- ciphers trigger publishes one item's update, or one bulk event for several.
-- Trigger: collections_deleted (AFTER DELETE, each statement).
CREATE OR REPLACE FUNCTION pgwarden_collections_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ciphers c
       SET collection_ids = ARRAY(SELECT kept.id
                                    FROM unnest(c.collection_ids) WITH ORDINALITY AS kept(id, position)
                                   WHERE kept.id <> ALL (gone.ids)
                                   ORDER BY kept.position)
      FROM (SELECT organization_id, array_agg(id) AS ids FROM old_rows GROUP BY organization_id) gone
     WHERE c.organization_id = gone.organization_id AND c.collection_ids && gone.ids;
    RETURN NULL;
END
$$;


-- A user who joins an organization, however (the API, psql), is marked in user_revisions: from
-- then on the user's own changes take their next revision date past the organization's too
-- (pgwarden_publish). The mark stays when the membership goes; it only costs that lookup.
-- Trigger: memberships_joined (AFTER INSERT OR UPDATE OF user_id, each row naming a user).
CREATE OR REPLACE FUNCTION pgwarden_member_joined() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE user_revisions SET in_organizations = true WHERE user_id = NEW.user_id AND NOT in_organizations;
    RETURN NULL;
END
$$;
