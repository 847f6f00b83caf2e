"""Statements rendered once. peewee builds a query's SQL anew on every execution; where that costs more
than the statement itself (the inbox's INSERT, once per delivery: 252 µs of CPU rendered by the query
builder, 97 µs rendered once, BENCHMARKS.md), the SQL is rendered by peewee on first use, per database,
and only the values change after that. The values still go through each field's `db_value`, so what
is written is what `Model.create` would write (encryption, UTC datetimes, JSON)."""

from __future__ import annotations

import peewee

from models.db import database


class RenderedInsert:
    """`INSERT INTO <model> (<columns>) VALUES (...)`, returning the new row's id."""

    def __init__(self, model: type[peewee.Model], columns: tuple[str, ...]):
        if hasattr(model, "hashed_address"):  # its hash column is filled in by create(), not here
            raise TypeError(f"{model.__name__} is written with create()")
        self.model = model
        self.fields = tuple(model._meta.fields[name] for name in columns)
        self._rendered: tuple[peewee.Database, str] | None = None

    def _sql(self, db: peewee.Database, values: dict) -> str:
        if self._rendered is None or self._rendered[0] is not db:
            # Rendered with this call's values; only the text is kept. The columns are explicit and
            # every field with a default is among them, so no default is added and the text holds one
            # placeholder per column, in their order.
            row = tuple(values[field.name] for field in self.fields)
            query = self.model.insert_many([row], fields=self.fields)
            if db.returning_clause:  # PostgreSQL, SQLite 3.35 on; otherwise the cursor's lastrowid
                query = query.returning(self.model._meta.primary_key)
            sql, rendered = db.get_sql_context().sql(query).query()
            if len(rendered) != len(self.fields):
                raise RuntimeError(f"{self.model.__name__}: the INSERT has defaults beyond its columns")
            self._rendered = (db, sql)
        return self._rendered[1]

    def execute(self, **values) -> int:
        if set(values) != {field.name for field in self.fields}:
            raise TypeError(f"expected exactly {[field.name for field in self.fields]}")
        params = [field.db_value(values[field.name]) for field in self.fields]
        db = database.obj
        cursor = db.execute_sql(self._sql(db, values), params)
        return cursor.fetchone()[0] if db.returning_clause else cursor.lastrowid

    def instance(self, row_id: int, **values) -> peewee.Model:
        """The row as a model instance, as `Model.create` would have returned it."""
        row = self.model(**{self.model._meta.primary_key.name: row_id}, **values)
        row._dirty.clear()
        return row


class RenderedLookup:
    """`SELECT <field> FROM <model> WHERE <key> = ? LIMIT 1`: one value by a unique key (a booking's
    version by its id, on every status poll), or None when there is no such row."""

    def __init__(self, field: peewee.Field, key: peewee.Field):
        self.field, self.key = field, key
        self._rendered: tuple[peewee.Database, str, list] | None = None

    def get(self, key_value):
        if key_value is None:  # no row has a null key; peewee would render IS NULL, not a placeholder
            return None
        db = database.obj
        if self._rendered is None or self._rendered[0] is not db:
            query = self.field.model.select(self.field).where(self.key == key_value).limit(1)
            sql, params = db.get_sql_context().sql(query).query()
            if len(params) != 2:
                raise RuntimeError(f"unexpected parameters for {sql}")
            self._rendered = (db, sql, params[1:])  # after the key: the LIMIT
        _, sql, rest = self._rendered
        row = db.execute_sql(sql, [self.key.db_value(key_value), *rest]).fetchone()
        return None if row is None else self.field.python_value(row[0])


class RenderedById:
    """`SELECT * FROM <model> WHERE <primary key> = ? LIMIT 1`, rendered once per database: the read
    the jobs make most, of the widest table (a booking has some forty columns, and rendering each
    one's name was a quarter of the workers' CPU). Rows come back as model instances, as from select()."""

    def __init__(self, model: type[peewee.Model]):
        self.model = model
        self._rendered: tuple[peewee.Database, peewee.Query, str, list] | None = None

    def get(self, pk) -> peewee.Model | None:
        if pk is None:  # no row has a null key; peewee would render IS NULL, not a placeholder
            return None
        db = database.obj
        key = self.model._meta.primary_key
        if self._rendered is None or self._rendered[0] is not db:
            query = self.model.select().where(key == pk).limit(1)
            sql, params = db.get_sql_context().sql(query).query()
            if len(params) != 2:
                raise RuntimeError(f"unexpected parameters for {sql}")
            self._rendered = (db, query, sql, params[1:])
        _, query, sql, rest = self._rendered
        rows = query._get_cursor_wrapper(db.execute_sql(sql, [key.db_value(pk), *rest]))
        return next(iter(rows), None)
