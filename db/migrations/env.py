"""Alembic environment: online migrations only, each in its own transaction."""

from alembic import context
from sqlalchemy import create_engine, pool

config = context.config

#: pg_advisory_lock key held while migrating, so processes that start together (API replicas,
#: `pgwarden migrate` and `pgwarden up`) migrate one after the other, never side by side.
MIGRATION_LOCK = 0x7067_7761_7264  # "pgward"


def run_migrations_online() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    with engine.connect() as lock:
        lock.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK})")
        lock.commit()  # a session lock outlives the transaction; it ends with this connection
        with engine.connect() as connection:
            context.configure(connection=connection, transaction_per_migration=True)
            with context.begin_transaction():
                context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("pgwarden migrations run online only: give a DATABASE_URL")
run_migrations_online()
