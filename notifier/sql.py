"""Small dialect helpers so the same statements run on PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, cast

import psycopg
from psycopg.adapt import Dumper
from sqlalchemy import CursorResult, Result, Table, any_, bindparam, func, literal
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import UpdateBase
from sqlalchemy.types import UserDefinedType


def insert_ignoring_conflicts(session: Session, table: Table):
    """INSERT … ON CONFLICT DO NOTHING for the session's dialect (both support RETURNING)."""
    return insert_for(session.get_bind().dialect.name, table)


def insert_for(dialect: str, table: Table):
    """insert_ignoring_conflicts for a statement built once per dialect."""
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table).on_conflict_do_nothing()


def rows_changed(result: Result) -> int:
    """The rows an UPDATE or DELETE run through Session.execute changed: it returns a
    CursorResult, which has the count, though it is typed as any Result."""
    return cast(CursorResult, result).rowcount


class IdArray(list):
    """Ids bound as one PostgreSQL bigint[] (what `among` and `among_bound` bind there):
    delivery ids are 64-bit, and a 32-bit id column compared with it still uses its index."""


class _IdArrayDumper(Dumper):
    """The ids as a bigint[] literal, in one join. psycopg's own list dumper handles each
    element in Python: about 40 µs for the 50 ids a group of outcomes records, 250 µs for a
    chunk's 500, and the send path binds a dozen such lists per chunk (4 µs here)."""

    oid = psycopg.postgres.types["int8"].array_oid

    def dump(self, obj) -> bytes:
        listed = ",".join(map(str, obj))
        if "N" in listed:  # a None among the ids (digits never hold an N): SQL NULL
            listed = listed.replace("None", "NULL")
        return b"{" + listed.encode() + b"}"


psycopg.adapters.register_dumper(IdArray, _IdArrayDumper)


class _Ids(UserDefinedType):
    """An array of ids as a bound parameter, `= ANY(%(ids)s::BIGINT[])`, handed to psycopg
    as an IdArray. (ARRAY's own bind processor copies the value into a plain list, which
    psycopg dumps element by element.)"""

    cache_ok = True
    render_bind_cast = True

    def get_col_spec(self, **_kw) -> str:
        return "BIGINT[]"

    def bind_processor(self, dialect):
        def process(value):
            return value if value is None or type(value) is IdArray else IdArray(value)

        return process


def among(session: Session, column, ids: Iterable[int]):
    """`column IN ids` for a chunk of ids. On PostgreSQL `column = ANY(:array)`: one bound
    array, so the statement text is the same for every chunk size and is compiled, parsed
    and prepared once, not once per distinct length. (Bound as text and cast in SQL, the
    array skips psycopg's per-element dumping, but PostgreSQL then used 60 % more CPU in a
    fan-out: bench/fanout.py --readers 50000, 16.8 s against 10.7 s. It stays typed.)"""
    values = list(ids)
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(literal(IdArray(values), _Ids()))
    return column.in_(values)


def dialect_of(session: Session) -> str:
    return session.get_bind().dialect.name


def among_bound(dialect: str, column, name: str = "ids"):
    """`column IN :name`, the ids given when the statement runs, as `among` binds them: for a
    statement built once per dialect and run for every chunk. Building a statement with
    SQLAlchemy's API cost more worker CPU than running it (about 270 of 420 µs for the
    UPDATE that records 50 sent messages), and the send path runs a dozen per chunk."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=_Ids()))
    return column.in_(bindparam(name, expanding=True))


def unindexed(column):
    """A string column as an expression no index is on, for a filter that must only narrow rows
    found another way. PostgreSQL plans a statement prepared for reuse (psycopg prepares
    one after five runs) without its parameters' values: `id = ANY(:ids) AND status =
    'sending'` then looked cheaper through ix_deliveries_due, which walks every sending row
    of a fan-out (and the dead index entries of earlier claims) instead of the chunk's ids
    by primary key: at a million readers that was most of the database's CPU."""
    return func.coalesce(column, "")


class DriverStatement:
    """A statement compiled once and run on PostgreSQL with `Connection.exec_driver_sql`:
    for the statement the send path runs for every few messages (recording a group of sent
    ones), where `Session.execute` spent more of the worker's CPU looking the statement up
    in its cache and processing its parameters than psycopg spent running it (400-430 µs
    of CPU a statement of 50 ids against 304-328 µs, the two ways alternated in one
    bench/send_path.py run). The statement still runs in the session's transaction,
    through SQLAlchemy's events and its error handling
    (an outage is an OperationalError, a dead connection is invalidated), and every value
    goes through its column type's bind processing, as with `Session.execute` (an aware
    datetime is stored as naive UTC, an enum as its value). Its constants are processed
    once; the values without one are given on each run, all of them. Elsewhere than
    PostgreSQL, `Session.execute`."""

    def __init__(self, statement: UpdateBase) -> None:
        self.statement = statement
        self._compiled: _Compiled | None = None

    def rows_changed(self, session: Session, values: dict[str, Any]) -> int:
        if dialect_of(session) != "postgresql":
            return rows_changed(session.execute(self.statement, values))
        connection = session.connection()
        compiled = self._compiled or self._compile(connection.dialect)
        if values.keys() != compiled.required:
            raise TypeError(f"values for {sorted(compiled.required)} expected, "
                            f"got {sorted(values)}")  # fmt: skip
        parameters = dict(compiled.constants)
        for name, value in values.items():
            process = compiled.processors.get(name)
            parameters[name] = value if process is None else process(value)
        return connection.exec_driver_sql(compiled.sql, parameters).rowcount

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect)
        processors = {
            name: process
            for name, bind in compiled.binds.items()
            if (process := bind.type.bind_processor(dialect)) is not None
        }
        required = frozenset(name for name, bind in compiled.binds.items() if bind.required)
        constants = {
            name: processors[name](value) if name in processors else value
            for name, value in compiled.params.items()
            if name not in required
        }
        self._compiled = _Compiled(compiled.string, constants, processors, required)
        return self._compiled


class _Compiled(NamedTuple):
    sql: str
    constants: dict[str, Any]  # bound as processed
    processors: Mapping[str, Callable[[Any], Any]]  # per bind name, where its type has one
    required: frozenset[str]  # the names each run gives values for
