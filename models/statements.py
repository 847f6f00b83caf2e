"""Statements rendered once. peewee builds a query's SQL anew on every execution; where that costs more
than the statement itself (the inbox's INSERT, once per delivery: 252 µs of CPU rendered by the query
builder, 97 µs rendered once, BENCHMARKS.md), the SQL is rendered by peewee on first use, per database,
and only the values change after that. The values still go through each field's `db_value`, so what
is written is what `Model.create` would write (encryption, UTC datetimes, JSON)."""

from __future__ import annotations

import peewee

from models.db import database


def _cached(cache: dict, db: peewee.Database, render):
    """What `render(db)` made for this database, rendered on first use. Keyed on whether the database
    returns written rows too: the same SQL text does not serve both."""
    key = (db, db.returning_clause)
    if key not in cache:
        cache[key] = render(db)
    return cache[key]


class RenderedInsert:
    """`INSERT INTO <model> (<columns>) VALUES (...)`, returning the new row's id."""

    def __init__(self, model: type[peewee.Model], columns: tuple[str, ...]):
        if hasattr(model, "hashed_address"):  # its hash column is filled in by create(), not here
            raise TypeError(f"{model.__name__} is written with create()")
        self.model = model
        self.fields = tuple(model._meta.fields[name] for name in columns)
        self._rendered: dict = {}

    def _render(self, db: peewee.Database, values: dict) -> str:
        # Rendered with the first call's values; only the text is kept. The columns are explicit and
        # every field with a default is among them, so no default is added and the text holds one
        # placeholder per column, in their order.
        row = tuple(values[field.name] for field in self.fields)
        query = self.model.insert_many([row], fields=self.fields)
        if db.returning_clause:  # PostgreSQL, SQLite 3.35 on; otherwise the cursor's lastrowid
            query = query.returning(self.model._meta.primary_key)
        sql, rendered = db.get_sql_context().sql(query).query()
        if len(rendered) != len(self.fields):
            raise RuntimeError(f"{self.model.__name__}: the INSERT has defaults beyond its columns")
        return sql

    def execute(self, **values) -> int:
        if set(values) != {field.name for field in self.fields}:
            raise TypeError(f"expected exactly {[field.name for field in self.fields]}")
        params = [field.db_value(values[field.name]) for field in self.fields]
        db = database.obj
        cursor = db.execute_sql(_cached(self._rendered, db, lambda db: self._render(db, values)), params)
        return cursor.fetchone()[0] if db.returning_clause else cursor.lastrowid

    def instance(self, row_id: int, **values) -> peewee.Model:
        """The row as a model instance, as `Model.create` would have returned it."""
        row = self.model(**{self.model._meta.primary_key.name: row_id}, **values)
        row._dirty.clear()
        return row


class RenderedByKey:
    """`SELECT <fields> FROM <model> WHERE <key> = ? LIMIT 1`, as a model instance or None: a row by its
    primary key (`Model.by_id`: the read the jobs make most, of the widest table, whose forty column
    names took a quarter of the workers' CPU to render), or one column of it (a booking's version, on
    every status poll)."""

    def __init__(self, model: type[peewee.Model], key: peewee.Field, fields: tuple[peewee.Field, ...] = ()):
        self.model, self.key, self.fields = model, key, fields
        self._rendered: dict = {}

    def _render(self, db: peewee.Database):
        # A placeholder key of the key's own type: a null would render as IS NULL, with no parameter.
        query = self.model.select(*self.fields).where(self.key == self.key.python_value(0)).limit(1)
        sql, params = db.get_sql_context().sql(query).query()
        if len(params) != 2:
            raise RuntimeError(f"unexpected parameters for {sql}")
        return query, sql, params[1:]  # after the key: the LIMIT

    def get(self, key_value) -> peewee.Model | None:
        if key_value is None:  # no row has a null key
            return None
        db = database.obj
        query, sql, rest = _cached(self._rendered, db, self._render)
        return next(iter(query._get_cursor_wrapper(db.execute_sql(sql, [self.key.db_value(key_value), *rest]))), None)


def updated_row(query: peewee.ModelUpdate, pk) -> peewee.Model | None:
    """Run an UPDATE of the row with primary key `pk` (a compare-and-set: its WHERE may ask more); the
    row as written, or None when the WHERE matched nothing. Where the database returns written rows,
    it is not read again."""
    model = query.model
    if database.obj.returning_clause:
        return next(iter(query.returning(*model._meta.sorted_fields).execute()), None)
    if query.execute() == 0:
        return None
    return model.by_id(pk)
