"""Alembic environment: runs the migrations on the connection `seatsync db upgrade` gives it."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from connector.adapters.database import make_engine
from connector.adapters.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        # Alembic's advice for migrations with an autocommit block (0009): what precedes
        # the block is committed anyway, so each migration is its own unit.
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:  # the plain `alembic` command, with sqlalchemy.url set in the config
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        run_migrations(conn)
