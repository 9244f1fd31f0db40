"""The event routines at their current definition, as the migrations apply them.

Two parts, both idempotent (``CREATE OR REPLACE``, constraints dropped and added again):

- the contract, rendered here from db/events.py: ``pgwarden_channel()``,
  ``pgwarden_device_identifier_limit()``, ``pgwarden_event_collections_limit()``, ``pgwarden_push_type(name)`` and the CHECK
  constraints of ``sync_events``;
- ``db/sql/events.sql``: the trigger functions, written by hand, naming push types as
  ``pgwarden_push_type('sync_cipher_create')``;
- ``db/sql/organizations.sql``: the functions that keep organization data consistent (a
  deleted collection leaves its items), which publish nothing themselves;
- ``db/sql/files.sql``: the functions that release the stored files of deleted rows.

Migration 0003 applies them, and so does every later migration that changes either part, at its
end: the database then holds exactly this text. Such a migration records the :func:`fingerprint`
it was written for as ``ROUTINES`` (tests/db/test_contract.py fails until the newest one matches),
and its downgrade restores the previous definitions itself. Trigger bindings (``CREATE
TRIGGER``) are schema, and stay in the migrations that create their tables.

``python -m db.routines`` prints what a migration applies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from db.events import CHANNEL, MAX_DEVICE_IDENTIFIER_LENGTH, MAX_EVENT_COLLECTIONS, PushType

__all__ = ["apply", "contract_sql", "events_sql", "files_sql", "fingerprint", "organizations_sql", "row_push_types",
           "text"]

EVENTS_SQL = Path(__file__).with_name("sql") / "events.sql"
ORGANIZATIONS_SQL = Path(__file__).with_name("sql") / "organizations.sql"
FILES_SQL = Path(__file__).with_name("sql") / "files.sql"


def row_push_types() -> list[int]:
    """The push types a sync_events row may carry."""
    return sorted(int(push_type) for push_type in PushType if push_type.by_row)


def contract_sql() -> str:
    branches = "\n".join(
        f"        WHEN {_literal(push_type.sql_name)} THEN RETURN {int(push_type)};" for push_type in PushType
    )
    return f"""
-- Rendered from db/events.py (db/routines.py): change the Python table, not this text.

CREATE OR REPLACE FUNCTION pgwarden_channel() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT {_literal(CHANNEL)}::text $$;

-- Longer device identifiers are published as null.
CREATE OR REPLACE FUNCTION pgwarden_device_identifier_limit() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT {MAX_DEVICE_IDENTIFIER_LENGTH} $$;

-- An event naming more collections goes to every member of the organization, naming no item.
CREATE OR REPLACE FUNCTION pgwarden_event_collections_limit() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT {MAX_EVENT_COLLECTIONS} $$;

-- A push type's number by its name; a misspelt name fails the statement rather than publish null.
CREATE OR REPLACE FUNCTION pgwarden_push_type(name text) RETURNS smallint
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    CASE name
{branches}
        ELSE RAISE EXCEPTION 'unknown push type name: %', name;
    END CASE;
END
$$;

ALTER TABLE sync_events
    DROP CONSTRAINT IF EXISTS sync_events_push_type_check,
    ADD CONSTRAINT sync_events_push_type_check
        CHECK (push_type IN ({", ".join(map(str, row_push_types()))})),
    DROP CONSTRAINT IF EXISTS sync_events_device_identifier_check,
    ADD CONSTRAINT sync_events_device_identifier_check
        CHECK (length(device_identifier) <= {MAX_DEVICE_IDENTIFIER_LENGTH});
"""


def events_sql() -> str:
    return EVENTS_SQL.read_text(encoding="utf-8")


def organizations_sql() -> str:
    return ORGANIZATIONS_SQL.read_text(encoding="utf-8")


def files_sql() -> str:
    return FILES_SQL.read_text(encoding="utf-8")


def text() -> str:
    """Everything :func:`apply` runs, in its order."""
    return contract_sql() + events_sql() + organizations_sql() + files_sql()


def fingerprint() -> str:
    """A short hash of what :func:`apply` runs; comment lines outside the functions do not count."""
    kept = "\n".join(line for line in text().splitlines() if not line.startswith("--"))
    return hashlib.sha256(kept.encode()).hexdigest()[:12]


def apply(execute: Callable[[str], object]) -> None:
    """Run the current definitions through ``execute`` (``op.execute`` in a migration)."""
    # On a fresh database an older migration runs this newest text, which may name columns a
    # later migration adds: bodies are checked when called (the tests call every one).
    execute("SET LOCAL check_function_bodies = off")
    execute(contract_sql())
    execute(events_sql())
    execute(organizations_sql())
    execute(files_sql())
    execute("SET LOCAL check_function_bodies TO DEFAULT")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


if __name__ == "__main__":
    print(contract_sql())
    print(events_sql())
    print(organizations_sql())
    print(files_sql())
