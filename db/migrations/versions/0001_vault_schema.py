"""The tables of a personal vault.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE users (
            id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            email               text NOT NULL CHECK (email <> ''),
            name                text,
            email_verified      boolean NOT NULL DEFAULT true,
            -- the client's master password hash, hashed again here (argon2)
            password_hash       text NOT NULL,
            password_hint       text,
            kdf_type            smallint NOT NULL DEFAULT 0,
            kdf_iterations      integer NOT NULL DEFAULT 600000,
            kdf_memory          integer,
            kdf_parallelism     integer,
            key                 text NOT NULL,
            private_key         text,
            public_key          text,
            user_key_id         text,
            security_stamp      uuid NOT NULL DEFAULT gen_random_uuid(),
            culture             text NOT NULL DEFAULT 'en-US',
            avatar_color        text,
            equivalent_domains  jsonb NOT NULL DEFAULT '[]',
            excluded_global_equivalent_domains jsonb NOT NULL DEFAULT '[]',
            -- what clients poll before a full sync; the triggers move it forward
            revision_date       timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
            created_at          timestamptz NOT NULL DEFAULT now(),
            updated_at          timestamptz NOT NULL DEFAULT now()
        );
        CREATE UNIQUE INDEX users_email_key ON users (lower(email));

        CREATE TABLE devices (
            id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            user_id             uuid NOT NULL REFERENCES users ON DELETE CASCADE,
            identifier          text NOT NULL CHECK (length(identifier) BETWEEN 1 AND 255),
            type                smallint NOT NULL,
            name                text NOT NULL,
            refresh_token_hash  text UNIQUE,
            created_at          timestamptz NOT NULL DEFAULT now(),
            updated_at          timestamptz NOT NULL DEFAULT now(),
            UNIQUE (user_id, identifier)
        );

        CREATE TABLE folders (
            id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            user_id             uuid NOT NULL REFERENCES users ON DELETE CASCADE,
            name                text NOT NULL,
            revision_date       timestamptz NOT NULL DEFAULT now(),
            created_at          timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX folders_user_id ON folders (user_id);

        CREATE TABLE ciphers (
            id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            user_id             uuid REFERENCES users ON DELETE CASCADE,
            organization_id     uuid,
            type                smallint NOT NULL,
            -- the client's encrypted fields, stored as it sent them
            data                jsonb NOT NULL,
            key                 text,
            reprompt            smallint NOT NULL DEFAULT 0,
            -- per-user placement: {"<user id>": "<folder id>"} and {"<user id>": true}
            folders             jsonb NOT NULL DEFAULT '{}',
            favorites           jsonb NOT NULL DEFAULT '{}',
            deleted_date        timestamptz,
            revision_date       timestamptz NOT NULL DEFAULT now(),
            creation_date       timestamptz NOT NULL DEFAULT now(),
            CHECK (user_id IS NOT NULL OR organization_id IS NOT NULL)
        );
        CREATE INDEX ciphers_user_id ON ciphers (user_id);
        CREATE INDEX ciphers_organization_id ON ciphers (organization_id);
        CREATE INDEX ciphers_folders ON ciphers USING gin (folders jsonb_path_ops);

        -- One row per user-level event (full sync, settings, log out, ...); the row is the message.
        CREATE TABLE sync_events (
            id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            user_id             uuid NOT NULL REFERENCES users ON DELETE CASCADE,
            push_type           smallint NOT NULL
                                CHECK (push_type IN (4, 5, 6, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19)),
            -- the send or auth request the event is about, when it is about one
            item_id             uuid,
            context_id          text CHECK (length(context_id) <= 255),
            created_at          timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX sync_events_created_at ON sync_events (created_at);

        -- The key pair that signs access tokens, made once per database (see core.tokens).
        CREATE TABLE signing_keys (
            id                  smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
            private_key_pem     text NOT NULL,
            public_key_pem      text NOT NULL,
            created_at          timestamptz NOT NULL DEFAULT now()
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE signing_keys, sync_events, ciphers, folders, devices, users")
