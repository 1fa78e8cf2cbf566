"""Alembic's environment: always online, on the connection (and inside the transaction) that
storage/database/migrate.py opened and locked."""

from __future__ import annotations

from alembic import context

from storage.database.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, transactional_ddl=True,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
