"""The SQLite database: one file in WAL mode, writers serialized with ``BEGIN IMMEDIATE``.

``synchronous=FULL`` makes every commit durable before it returns, which is what lets the
ingestor remove an inbox file right after committing its sample.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.schema import CreateColumn

from tailord.storage.models import Base

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000
_BEGIN_OPTION = "tailord_begin"


def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself: pysqlite's implicit BEGIN is always
    # DEFERRED, which lets two writers both read and then fail to upgrade their lock.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


def _on_begin(connection: Any) -> None:
    mode = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")


class Database:
    """Sessions on one SQLite file: ``read()`` for snapshots, ``write()`` for transactions."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.engine: Engine = create_engine(
            f"sqlite+pysqlite:///{path}",
            connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
        )
        event.listen(self.engine, "connect", _on_connect)
        event.listen(self.engine, "begin", _on_begin)
        writer = self.engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        self._readers = sessionmaker(self.engine, expire_on_commit=False)
        self._writers = sessionmaker(writer, expire_on_commit=False)

    def create_schema(self) -> None:
        Base.metadata.create_all(self.engine)
        self._add_columns()

    def _add_columns(self) -> None:
        """Additive migration: a nullable column a model gained since the file was made is
        added with ``ALTER TABLE ... ADD COLUMN`` (SQLite adds it in place, as NULL in the
        existing rows). create_all only creates missing tables."""
        with self.engine.begin() as conn:
            for table in Base.metadata.sorted_tables:
                have = {
                    row[1] for row in conn.exec_driver_sql(f'PRAGMA table_info("{table.name}")')
                }
                for column in table.columns:
                    if column.name in have:
                        continue
                    if not column.nullable or column.primary_key:
                        raise RuntimeError(
                            f"table {table.name} lacks column {column.name}, which cannot be "
                            "added in place; this database needs a migration script"
                        )
                    ddl = CreateColumn(column).compile(dialect=self.engine.dialect)
                    logger.info("adding column %s.%s to the database", table.name, column.name)
                    conn.exec_driver_sql(f'ALTER TABLE "{table.name}" ADD COLUMN {ddl}')

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only snapshot; never blocks writers (WAL)."""
        with self._readers() as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction, committed durably on exit and rolled back on error."""
        with self._writers() as session, session.begin():
            yield session

    def integrity_check(self) -> str:
        with self.engine.connect() as conn:
            return str(conn.exec_driver_sql("PRAGMA integrity_check").scalar_one())

    def close(self) -> None:
        self.engine.dispose()


def open_database(path: Path) -> Database:
    """Open (and create if needed) the database file at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = Database(path)
    db.create_schema()
    logger.debug("database ready at %s", path)
    return db
