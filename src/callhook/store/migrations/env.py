"""Alembic environment: runs on the connection callhook hands over (see store/migrate.py)."""

from __future__ import annotations

from alembic import context

from callhook.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `callhook migrate`, not the alembic command")

context.configure(
    connection=connection,
    target_metadata=metadata,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
