"""The notifications hub's own PostgreSQL role: the grants it needs, and nothing more.

The hub checks tokens (the public keys; a user's id and security stamp; whether the token's
device was deactivated), LISTENs (which needs no privilege), reads what its connected users
reach in organizations (the member_access view, to route organization events: wshub.memberships)
and, after its LISTEN link was lost, asks which connected users' revision date moved
(wshub.ingress). It never writes and never signs, so its role may read exactly that: a copy of
its credentials forges no token and reads no vault. `pgwarden db grant-hub ROLE` applies these
grants (again after a migration that recreates a table); ``--print`` shows them for a DBA.
"""

from __future__ import annotations

import re

import asyncpg

__all__ = ["RoleError", "grant_hub", "hub_grants"]

#: Plain lowercase identifiers only: the name is written into SQL.
_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class RoleError(Exception):
    """Raised when a role cannot be given the hub's grants; the message says why and what to do."""


def hub_grants(role: str) -> str:
    """The SQL that lets ``role`` run a hub on the current database: one statement a line."""
    _check_name(role)
    return f"""\
-- what the notifications hub reads; nothing it may write, and no private key
DO $$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO "{role}"', current_database()); END $$;
GRANT USAGE ON SCHEMA public TO "{role}";
-- token checks (core.access.find_stamp)
GRANT SELECT (id, security_stamp) ON users TO "{role}";
GRANT SELECT (id, user_id, identifier, active) ON devices TO "{role}";
-- the LISTEN gap recovery (wshub.ingress, through pgwarden_user_revisions)
GRANT SELECT ON user_revisions TO "{role}";
-- who reaches an organization's items: the connected members' grants (wshub.memberships), and
-- their organizations' revision dates in pgwarden_user_revisions; the view, never the tables under it
GRANT SELECT ON organization_revisions, member_access TO "{role}";
-- the keys that verify tokens; token_private_keys stays out of reach
GRANT SELECT ON token_public_keys TO "{role}";
"""


async def grant_hub(database_url: str, role: str, password: str | None = None) -> None:
    """Give ``role`` the hub's grants; with a password, make the role (LOGIN) when it is missing
    and set its password when it exists."""
    _check_name(role)
    conn = await asyncpg.connect(database_url)
    try:
        found = await conn.fetchrow("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1", role)
        if found is not None and (found["rolsuper"] or found["rolbypassrls"]):
            raise RoleError(f"role {role} is a superuser or bypasses row security: it can read everything;"
                            " give the hub a role of its own")
        if found is None and password is None:
            raise RoleError(f"role {role} does not exist: create it (CREATE ROLE {role} LOGIN PASSWORD '...')"
                            " or pass --password-env to have it made")
        async with conn.transaction():
            if password is not None:
                verb = "ALTER" if found is not None else "CREATE"
                # a utility statement takes no parameters: let the server quote the password
                statement = await conn.fetchval(
                    "SELECT format('%s ROLE %I LOGIN PASSWORD %L', $1::text, $2::text, $3::text)",
                    verb, role, password)
                await conn.execute(statement)
            await conn.execute(hub_grants(role))
    finally:
        await conn.close()


def _check_name(role: str) -> None:
    if not _ROLE_NAME.fullmatch(role):
        raise RoleError(f"{role!r} is no plain role name (lowercase letters, digits and _)")
