"""Alembic environment: runs on the connection the application hands it."""

from __future__ import annotations

from alembic import context

from billing_desk.db.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("billing-desk runs its migrations through billing_desk.db.migrate")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
