"""Loading new rows fast, inside the caller's transaction (the busy-block writer's events
and blocks, a fan-out's deliveries)."""

from __future__ import annotations

from sqlalchemy import FromClause, insert
from sqlalchemy.orm import Session


def insert_rows(session: Session, table: FromClause, columns: tuple[str, ...], rows: list) -> None:
    """Plain INSERT of new rows (tuples in `columns` order; keys known absent). On
    PostgreSQL with psycopg 3 this is COPY, the driver's fastest load (a full sync of 10,000
    events wrote 5x faster than with ORM bulk inserts; a fan-out's deliveries are one round
    trip); elsewhere executemany. COPY skips the column types' bind processing and Python
    defaults: callers pass every column they need, times timezone-aware UTC, enums as
    strings."""
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        quote = dialect.identifier_preparer.quote
        sql = (
            f"COPY {dialect.identifier_preparer.format_table(table)} "
            f"({', '.join(quote(name) for name in columns)}) FROM STDIN"
        )
        # The session's own connection, so the rows commit (or not) with the transaction.
        raw = connection.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor, cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
        return
    statement = insert(table)  # type: ignore[arg-type]  # always a Table
    connection.execute(statement, [dict(zip(columns, row, strict=True)) for row in rows])
