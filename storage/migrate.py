"""Bringing a database made by an earlier release up to the models: columns added since.

``create_all`` makes missing tables but never alters an existing one. A column added to a
model later is nullable (old rows have no value for it), so ``ALTER TABLE ... ADD COLUMN``
is all an existing file needs; anything more would be a real migration, not this.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine, MetaData, inspect
from sqlalchemy.schema import CreateColumn

from tailord.storage.errors import StorageError

logger = logging.getLogger(__name__)


def add_missing_columns(engine: Engine, metadata: MetaData) -> list[str]:
    """Add each nullable model column its table lacks; returns ``table.column`` of each."""
    added: list[str] = []
    with engine.begin() as conn:
        inspector = inspect(conn)
        for table in metadata.sorted_tables:
            have = {column["name"] for column in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in have:
                    continue
                if not column.nullable:
                    raise StorageError(
                        f"{table.name}.{column.name} is missing and NOT NULL: it needs a "
                        "migration of its own"
                    )
                ddl = CreateColumn(column).compile(dialect=engine.dialect)
                conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {ddl}")
                added.append(f"{table.name}.{column.name}")
    if added:
        logger.info("database brought up to date: added %s", ", ".join(added))
    return added
