"""Bringing a database made by an earlier release up to the models: columns added since.

``create_all`` makes missing tables but never alters an existing one. A column added to a
model later is nullable or has a server default (SQLite's rule for ``ADD COLUMN``: old rows
need a value), so ``ALTER TABLE ... ADD COLUMN`` is all an existing file needs; anything
more would be a real migration, not this.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine, MetaData, inspect
from sqlalchemy.schema import CreateColumn

from tailord.storage.errors import StorageError

logger = logging.getLogger(__name__)


def add_missing_columns(engine: Engine, metadata: MetaData) -> list[str]:
    """Add each model column its table lacks (nullable, or with a server default); returns
    ``table.column`` of each."""
    added: list[str] = []
    with engine.begin() as conn:
        inspector = inspect(conn)
        for table in metadata.sorted_tables:
            have = {column["name"] for column in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in have:
                    continue
                if not column.nullable and column.server_default is None:
                    raise StorageError(
                        f"{table.name}.{column.name} is missing, NOT NULL and without a server "
                        "default: it needs a migration of its own"
                    )
                ddl = CreateColumn(column).compile(dialect=engine.dialect)
                conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {ddl}")
                added.append(f"{table.name}.{column.name}")
    if added:
        logger.info("database brought up to date: added %s", ", ".join(added))
    return added
