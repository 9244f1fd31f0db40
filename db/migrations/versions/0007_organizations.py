"""Organizations, their members and collections, and the one rule of who reaches which item.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

- organizations: name, billing email, the organization's key pair (the private key wrapped by
  the organization key, which the server never sees).
- memberships: a user's (or, until an account takes it, an invited address's) place in an
  organization; its id is the "organization user id" of the clients. key is the organization
  key wrapped to the member's public key, given when the member is confirmed.
- collections, and collection_members: which member holds which collection, with which rights.
  Both carry the organization, so a grant can never join a collection and a member of two
  different organizations (composite foreign keys).
- ciphers: an organization's item has organization_id and no user_id, and names its collections
  in collection_ids (like the per-user folders column): the statement that writes an item also
  writes its collections, and the trigger that publishes the item's event sees them in the row.
  A deleted collection is taken out of the arrays by a trigger (db/sql/organizations.sql).

The views member_access, collection_access and cipher_access hold the one rule of who reaches
what; sync, every read and write of the API, and the hub's routing of organization events read
them, never the tables on their own.
"""

from alembic import op

from db import routines

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: The routines' text this migration was written for (db.routines.fingerprint()).
ROUTINES = "5bc952c35261"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE organizations (
            id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            -- plaintext: the clients do not encrypt an organization's name
            name                text NOT NULL CHECK (name <> ''),
            billing_email       text NOT NULL,
            -- base64 SubjectPublicKeyInfo, and the private key as an EncString under the
            -- organization key
            public_key          text,
            private_key         text,
            -- a disabled organization's items are out of every member's reach
            enabled             boolean NOT NULL DEFAULT true,
            created_at          timestamptz NOT NULL DEFAULT now(),
            updated_at          timestamptz NOT NULL DEFAULT now(),
            CHECK ((public_key IS NULL) = (private_key IS NULL))
        );

        -- type: Owner 0, Admin 1, User 2, Custom 4 (3 is retired by Bitwarden).
        -- status: Revoked -1, Invited 0, Accepted 1, Confirmed 2.
        CREATE TABLE memberships (
            id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            organization_id     uuid NOT NULL REFERENCES organizations ON DELETE CASCADE,
            user_id             uuid REFERENCES users ON DELETE CASCADE,
            -- the invited address, lowercase, until an account takes the invitation
            email               text CHECK (email = lower(email) AND email <> ''),
            type                smallint NOT NULL CHECK (type IN (0, 1, 2, 4)),
            status              smallint NOT NULL CHECK (status BETWEEN -1 AND 2),
            -- what a restore brings back
            status_before_revoke smallint CHECK (status_before_revoke BETWEEN 0 AND 2),
            -- every item of the organization, whatever the collections (Custom members with
            -- editAnyCollection); Owners and Admins reach every item by their type alone
            access_all          boolean NOT NULL DEFAULT false,
            -- a Custom member's permissions, {"manageUsers": true, ...}; null for other types
            permissions         jsonb,
            -- the organization key wrapped to the member's public key (EncString type 4)
            key                 text,
            external_id         text,
            created_at          timestamptz NOT NULL DEFAULT now(),
            updated_at          timestamptz NOT NULL DEFAULT now(),
            CHECK ((user_id IS NULL) <> (email IS NULL)),
            CHECK ((status = -1) = (status_before_revoke IS NOT NULL)),
            -- only an invitation is without an account, and only a confirmed member has the key
            CHECK (user_id IS NOT NULL OR coalesce(status_before_revoke, status) = 0),
            CHECK (coalesce(status_before_revoke, status) < 2 OR key IS NOT NULL),
            UNIQUE (organization_id, user_id),
            UNIQUE (organization_id, id)
        );
        CREATE UNIQUE INDEX memberships_organization_email ON memberships (organization_id, email);
        CREATE INDEX memberships_user_id ON memberships (user_id);
        CREATE INDEX memberships_email ON memberships (email) WHERE email IS NOT NULL;

        CREATE TABLE collections (
            id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            organization_id     uuid NOT NULL REFERENCES organizations ON DELETE CASCADE,
            -- an EncString under the organization key
            name                text NOT NULL,
            external_id         text,
            created_at          timestamptz NOT NULL DEFAULT now(),
            updated_at          timestamptz NOT NULL DEFAULT now(),
            UNIQUE (organization_id, id)
        );

        CREATE TABLE collection_members (
            organization_id     uuid NOT NULL,
            collection_id       uuid NOT NULL,
            membership_id       uuid NOT NULL,
            read_only           boolean NOT NULL DEFAULT false,
            hide_passwords      boolean NOT NULL DEFAULT false,
            manage              boolean NOT NULL DEFAULT false,
            PRIMARY KEY (collection_id, membership_id),
            FOREIGN KEY (organization_id, collection_id) REFERENCES collections (organization_id, id)
                ON DELETE CASCADE,
            FOREIGN KEY (organization_id, membership_id) REFERENCES memberships (organization_id, id)
                ON DELETE CASCADE
        );
        CREATE INDEX collection_members_membership_id ON collection_members (membership_id);

        -- An item belongs to one user or to one organization; only an organization's item sits
        -- in collections (of that organization: the API checks it, no foreign key reaches into
        -- an array).
        ALTER TABLE ciphers
            ADD COLUMN collection_ids uuid[] NOT NULL DEFAULT '{}',
            DROP CONSTRAINT ciphers_check,
            ADD CONSTRAINT ciphers_one_owner CHECK ((user_id IS NULL) <> (organization_id IS NULL)),
            ADD CONSTRAINT ciphers_collections_of_organization
                CHECK (organization_id IS NOT NULL OR collection_ids = '{}'),
            ADD CONSTRAINT ciphers_organization_id_fkey FOREIGN KEY (organization_id)
                REFERENCES organizations ON DELETE CASCADE;
        CREATE INDEX ciphers_collection_ids ON ciphers USING gin (collection_ids);
        """
    )
    routines.apply(op.execute)
    op.execute(
        """
        CREATE TRIGGER collections_deleted AFTER DELETE ON collections
            REFERENCING OLD TABLE AS old_rows
            FOR EACH STATEMENT EXECUTE FUNCTION pgwarden_collections_deleted();

        -- The rule: a member reaches an organization's items when the membership is confirmed and
        -- the organization enabled; then every item (Owner, Admin, access_all), or the items of
        -- the collections granted. One row per grant: collection_id NULL means every item.
        -- Who sees an item of organization O in collections C:
        --   WHERE organization_id = O AND (collection_id IS NULL OR collection_id = ANY (C))
        CREATE VIEW member_access AS
        SELECT m.organization_id, m.user_id, m.id AS membership_id, NULL::uuid AS collection_id,
               false AS read_only, false AS hide_passwords, true AS manage
          FROM memberships m JOIN organizations o ON o.id = m.organization_id
         WHERE o.enabled AND m.status = 2 AND (m.access_all OR m.type IN (0, 1))
        UNION ALL
        SELECT m.organization_id, m.user_id, m.id, g.collection_id,
               g.read_only, g.hide_passwords, g.manage
          FROM memberships m JOIN organizations o ON o.id = m.organization_id
          JOIN collection_members g ON g.membership_id = m.id
         WHERE o.enabled AND m.status = 2 AND NOT (m.access_all OR m.type IN (0, 1));

        -- The collections a user sees, with the user's rights in each (one row per pair: a user
        -- holds one membership per organization, and it has one row per collection).
        CREATE VIEW collection_access AS
        SELECT a.user_id, a.membership_id, c.organization_id, c.id AS collection_id,
               a.read_only, a.hide_passwords, a.manage, a.collection_id IS NOT NULL AS assigned
          FROM member_access a
          JOIN collections c ON c.organization_id = a.organization_id
                            AND (a.collection_id IS NULL OR c.id = a.collection_id);

        -- The items a user sees: their own, and their organizations' by the rule above. Across
        -- several collections of one item the most generous grant wins; collection_ids are the
        -- item's collections this user may know of.
        CREATE VIEW cipher_access AS
        SELECT g.user_id, g.cipher_id,
               bool_and(g.read_only) AS read_only, bool_and(g.hide_passwords) AS hide_passwords,
               bool_or(g.manage) AS manage,
               -- every_collection is the same in all the item's rows that have it
               coalesce(max(g.every_collection) FILTER (WHERE g.collection_id IS NULL),
                        array_agg(g.collection_id ORDER BY g.collection_id)) AS collection_ids
          FROM (SELECT c.user_id, c.id AS cipher_id, NULL::uuid AS collection_id,
                       c.collection_ids AS every_collection,
                       false AS read_only, false AS hide_passwords, true AS manage
                  FROM ciphers c
                 WHERE c.user_id IS NOT NULL
                UNION ALL
                SELECT a.user_id, c.id, NULL, c.collection_ids, false, false, true
                  FROM member_access a JOIN ciphers c ON c.organization_id = a.organization_id
                 WHERE a.collection_id IS NULL
                UNION ALL
                -- @> with a one-element array: the GIN index on collection_ids finds the items
                SELECT a.user_id, c.id, a.collection_id, NULL, a.read_only, a.hide_passwords, a.manage
                  FROM member_access a
                  JOIN ciphers c ON c.organization_id = a.organization_id
                                AND c.collection_ids @> ARRAY[a.collection_id]
                 WHERE a.collection_id IS NOT NULL) g
         GROUP BY g.user_id, g.cipher_id;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP VIEW cipher_access, collection_access, member_access;
        DELETE FROM ciphers WHERE organization_id IS NOT NULL;
        DROP INDEX ciphers_collection_ids;
        ALTER TABLE ciphers
            DROP CONSTRAINT ciphers_organization_id_fkey,
            DROP CONSTRAINT ciphers_collections_of_organization,
            DROP CONSTRAINT ciphers_one_owner,
            DROP COLUMN collection_ids,
            ADD CONSTRAINT ciphers_check CHECK (user_id IS NOT NULL OR organization_id IS NOT NULL);
        DROP TABLE collection_members, collections, memberships, organizations;
        DROP FUNCTION pgwarden_collections_deleted();
        """
    )
