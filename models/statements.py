"""Statements rendered once. peewee builds a query's SQL anew on every execution; where that costs more
than the statement itself (the inbox's INSERT, once per delivery: 252 µs of CPU rendered by the query
builder, 97 µs rendered once, BENCHMARKS.md), the SQL is rendered by peewee on first use, per database,
and only the values change after that. The values still go through each field's `db_value`, so what
is written is what `Model.create` would write (encryption, UTC datetimes, JSON)."""

from __future__ import annotations

import peewee

from models.db import database


def _cached(cache: dict, db: peewee.Database, render, *shape):
    """What `render(db)` made for this database (and this `shape` of statement), rendered on first use.
    Keyed on whether the database returns written rows too: the same SQL text does not serve both."""
    key = (db, db.returning_clause, *shape)
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
        # Every field with a default is among the columns (checked when rendered), so the defaults,
        # which peewee would compute and then overwrite, are skipped.
        row = self.model(__no_default__=True, **{self.model._meta.primary_key.name: row_id}, **values)
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


class _Slot:
    """A parameter's place in a statement rendered once: the name of the value that fills it."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


_KEY, _GUARD = "\0key", "\0guard"  # never a column's name


class RenderedUpdate:
    """`UPDATE <model> SET <columns> = ?, <counter> = <counter> + 1 WHERE <key> = ? [AND <guard> = ?]
    [AND <condition>]` (a condition with no values of its own, such as `processed_at IS NULL`),
    rendered once per set of columns; with `returning`, the row as written (None when the WHERE matched
    nothing), otherwise how many rows were written. A booking's transition writes its forty-odd columns
    back with RETURNING, which took peewee 0.87 ms to render each time. The values go through each
    field's `db_value`, as `Model.update` would send them; a value that is an expression (a column plus
    one), or an address written with its hash, makes its statement the query builder's, as before."""

    def __init__(self, model: type[peewee.Model], key: peewee.Field, guard: peewee.Field | None = None,
                 condition: peewee.Expression | None = None, counter: peewee.Field | None = None,
                 returning: bool = False):
        self.model, self.key, self.guard, self.condition = model, key, guard, condition
        self.counter, self.returning = counter, returning
        # An address column is written with its hash by the query builder (HashesItsAddress).
        self._builder_only = frozenset(model.hashed_address[:1]) if hasattr(model, "hashed_address") else frozenset()
        self._rendered: dict = {}

    def _query(self, values: dict, key_value, guard_value) -> peewee.ModelUpdate:
        fields = self.model._meta.fields
        changes = {fields[name]: value for name, value in values.items()}
        if self.counter is not None:
            changes[self.counter] = self.counter + 1
        condition = self.key == key_value
        if self.guard is not None:
            condition &= self.guard == guard_value
        if self.condition is not None:
            condition &= self.condition
        query = self.model.update(changes).where(condition)
        if self.returning and database.obj.returning_clause:
            query = query.returning(*self.model._meta.sorted_fields)
        return query

    def _render(self, db: peewee.Database, names: tuple[str, ...]):
        slots = {name: peewee.Value(_Slot(name), converter=False) for name in (*names, _KEY, _GUARD)}
        query = self._query({name: slots[name] for name in names}, slots[_KEY], slots[_GUARD])
        sql, params = db.get_sql_context().sql(query).query()
        # Each slot's place, and the constants between them (the counter's 1) as they were rendered.
        return query, sql, [param if isinstance(param, _Slot) else (param,) for param in params]

    def execute(self, key_value, guard_value=None, **values):
        db = database.obj
        if self._builder_only.intersection(values) or any(isinstance(value, peewee.Node) for value in values.values()):
            query = self._query(values, key_value, guard_value)
            cursor = db.execute(query)
        else:
            names = tuple(sorted(values))
            query, sql, places = _cached(self._rendered, db, lambda db: self._render(db, names), names)
            cursor = db.execute_sql(sql, [self._param(place, key_value, guard_value, values) for place in places])
        if query._returning:
            return next(iter(query._get_cursor_wrapper(cursor)), None)
        written = db.rows_affected(cursor)
        if not self.returning:
            return written
        return self.model.by_id(key_value) if written else None

    def _param(self, place, key_value, guard_value, values: dict):
        if isinstance(place, tuple):
            return place[0]
        if place.name == _KEY:
            return self.key.db_value(key_value)
        if place.name == _GUARD:
            return self.guard.db_value(guard_value)
        return self.model._meta.fields[place.name].db_value(values[place.name])
