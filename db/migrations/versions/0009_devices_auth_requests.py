"""Login with device (auth requests), personal API keys, and deactivated devices.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

- auth_requests: a device that is not signed in asks one of the account's signed-in devices for
  the user key. It holds the waiting device's public key and a hash of its access code (the code
  is what the waiting device logs in with, so the database keeps no usable copy); the answering
  device fills in the approval, its id and the user key encrypted to that public key.
- users.api_key: the client secret of the personal API key (client_credentials grant). Stored as
  the clients are shown it, as Bitwarden does: the account settings show it again on request.
- devices.active: a deactivated device keeps its row (its history stays readable) but holds no
  refresh token, and its access tokens are refused (core/access.py) until it logs in again.
  Every token check reads it, the hub's too: a role that was given the hub's grants (it reads
  users.security_stamp) gets the new one here, so a hub keeps working without a new grant-hub.
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE auth_requests (
            id                          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            user_id                     uuid NOT NULL REFERENCES users ON DELETE CASCADE,
            -- AuthenticateAndUnlock 0, Unlock 1 (AdminApproval 2 is trusted-device encryption's)
            type                        smallint NOT NULL CHECK (type IN (0, 1)),
            request_device_identifier   text NOT NULL CHECK (length(request_device_identifier) BETWEEN 1 AND 255),
            request_device_type         smallint NOT NULL,
            request_ip                  text CHECK (length(request_ip) <= 64),
            -- base64 SubjectPublicKeyInfo of the waiting device's one-off key pair
            public_key                  text NOT NULL,
            -- sha256 hex of the access code
            access_code_hash            text NOT NULL,
            approved                    boolean,
            response_device_id          uuid REFERENCES devices ON DELETE SET NULL,
            -- the user key encrypted to public_key (EncString type 4), once approved
            key                         text,
            master_password_hash        text,
            created_at                  timestamptz NOT NULL DEFAULT now(),
            response_date               timestamptz,
            authentication_date         timestamptz,
            CHECK ((approved IS NULL) = (response_date IS NULL)),
            CHECK (approved IS TRUE OR key IS NULL)
        );
        CREATE INDEX auth_requests_user_id ON auth_requests (user_id, created_at);
        CREATE INDEX auth_requests_created_at ON auth_requests (created_at);

        ALTER TABLE users ADD COLUMN api_key text CHECK (length(api_key) = 30);
        ALTER TABLE devices ADD COLUMN active boolean NOT NULL DEFAULT true;

        -- the hub roles (db/roles.py) read the device of each token from now on
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
                EXECUTE format('GRANT SELECT (id, user_id, identifier, active) ON devices TO %I', hub_role);
            END LOOP;
        END $$;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE devices DROP COLUMN active;
        ALTER TABLE users DROP COLUMN api_key;
        DROP TABLE auth_requests;
        """
    )
