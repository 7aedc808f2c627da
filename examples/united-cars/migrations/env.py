"""Alembic environment for United Cars' schema.

rollout passes an open connection in ``config.attributes["connection"]`` (with its lock and
statement timeouts already set, under its migration lock) and sets ``sqlalchemy.url``; run by
hand, the URL comes from ``-x url=...`` or ``UNITED_CARS_DATABASE_URL``. Offline (``--sql``),
the SQL is rendered for PostgreSQL without a database.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection, create_engine

config = context.config


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    url = url or config.get_main_option("sqlalchemy.url")
    url = url or os.environ.get("UNITED_CARS_DATABASE_URL", "postgresql://")
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def _run(connection: Connection) -> None:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(
        url=_url(), literal_binds=True, transaction_per_migration=True, dialect_name="postgresql"
    )
    with context.begin_transaction():
        context.run_migrations()
elif isinstance(given := config.attributes.get("connection"), Connection):
    _run(given)
else:
    engine = create_engine(_url())
    with engine.connect() as connection:
        _run(connection)
        connection.commit()
    engine.dispose()
