"""`RefuseChanges`: the migration operation that makes a table refuse edits in
the database itself, on SQLite and PostgreSQL, whatever path the write takes
(the ORM, raw SQL, a shell).

Three shapes, one operation:

- `RefuseChanges(table)`: an append-only history; every UPDATE and DELETE is
  refused ("<table> is append-only").
- `RefuseChanges(table, finished=("completed", "failed"))`: a sealed run; an
  UPDATE or DELETE of a row whose `status` is one of `finished` is refused
  (sealing itself updates a row that is not finished yet).
- `RefuseChanges(table, finished=(...), parent=("parent_table", "run_id"))`: the
  rows of a sealed run; an INSERT, UPDATE or DELETE of a row whose parent's
  status is finished is refused.

The trigger names derive from the table (`<table>_refuse_update`, ...): one
set per table. On SQLite a migration that rebuilds the table (most AlterField
and AddField with a default) drops its triggers: run `RefuseChanges` again
after such an operation (its SQLite triggers are created IF NOT EXISTS).
"""

from __future__ import annotations

from typing import Any

from django.db import router
from django.db.migrations.operations.base import Operation


class RefuseChanges(Operation):
    reversible = True
    reduces_to_sql = True

    def __init__(self, table: str, *, finished: tuple[str, ...] = (), parent: tuple[str, str] | None = None):
        if parent is not None and not finished:
            raise ValueError("refusing the rows of a parent needs the parent's finished statuses")
        self.table = table
        self.finished = tuple(finished)
        self.parent = tuple(parent) if parent is not None else None

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        kwargs: dict[str, Any] = {}
        if self.finished:
            kwargs["finished"] = self.finished
        if self.parent is not None:
            kwargs["parent"] = self.parent
        return (self.__class__.__qualname__, [self.table], kwargs)

    def state_forwards(self, app_label: str, state: Any) -> None:
        pass  # triggers are not part of Django's model state

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if router.allow_migrate(schema_editor.connection.alias, app_label):
            for statement in self.forwards_sql(schema_editor.connection.vendor):
                schema_editor.execute(statement, params=None)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if router.allow_migrate(schema_editor.connection.alias, app_label):
            for statement in self.backwards_sql(schema_editor.connection.vendor):
                schema_editor.execute(statement, params=None)

    def describe(self) -> str:
        return f"Refuse changes to {self.what} in {self.table}"

    @property
    def migration_name_fragment(self) -> str:
        return f"refuse_changes_{self.table}"

    # -- the SQL -------------------------------------------------------------

    @property
    def what(self) -> str:
        if not self.finished:
            return "any row"
        return "the rows of a finished record" if self.parent else "a finished record"

    @property
    def message(self) -> str:
        if not self.finished:
            return f"{self.table} is append-only"
        if self.parent:
            return f"{self.table}: the rows of a finished record are immutable"
        return f"{self.table}: a finished record is immutable"

    @property
    def verbs(self) -> tuple[str, ...]:
        return ("INSERT", "UPDATE", "DELETE") if self.parent else ("UPDATE", "DELETE")

    def condition(self, row: str) -> str:
        """SQL true when `row` (OLD or NEW) may not change."""
        if not self.finished:
            return "1 = 1"
        statuses = ", ".join(f"'{status}'" for status in self.finished)
        if self.parent is None:
            return f"{row}.status IN ({statuses})"
        parent, column = self.parent
        return f"EXISTS (SELECT 1 FROM {parent} p WHERE p.id = {row}.{column} AND p.status IN ({statuses}))"

    def forwards_sql(self, vendor: str) -> list[str]:
        if vendor == "sqlite":
            return [self._sqlite_trigger(verb) for verb in self.verbs]
        if vendor == "postgresql":
            return self._postgres()
        raise RuntimeError(f"no append-only triggers for database {vendor}")

    def backwards_sql(self, vendor: str) -> list[str]:
        if vendor == "sqlite":
            return [f"DROP TRIGGER IF EXISTS {self.table}_refuse_{verb.lower()}" for verb in self.verbs]
        if vendor == "postgresql":
            name = f"{self.table}_refuse_changes"
            return [f"DROP TRIGGER IF EXISTS {name} ON {self.table}", f"DROP FUNCTION IF EXISTS {name}()"]
        raise RuntimeError(f"no append-only triggers for database {vendor}")

    def _sqlite_trigger(self, verb: str) -> str:
        if not self.finished:
            when = ""
        elif verb == "INSERT":
            when = f"WHEN {self.condition('NEW')}"
        elif verb == "UPDATE" and self.parent:
            when = f"WHEN {self.condition('OLD')} OR {self.condition('NEW')}"
        else:
            when = f"WHEN {self.condition('OLD')}"
        return (
            f"CREATE TRIGGER IF NOT EXISTS {self.table}_refuse_{verb.lower()} "
            f"BEFORE {verb} ON {self.table} {when} "
            f"BEGIN SELECT RAISE(ABORT, '{self.message}'); END"
        )

    def _postgres(self) -> list[str]:
        name = f"{self.table}_refuse_changes"
        new_too = " OR (TG_OP = 'UPDATE' AND {})".format(self.condition("NEW")) if self.parent else ""
        function = f"""CREATE OR REPLACE FUNCTION {name}() RETURNS trigger AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            IF {self.condition("NEW")} THEN RAISE EXCEPTION '{self.message}'; END IF;
            RETURN NEW;
        END IF;
        IF {self.condition("OLD")}{new_too} THEN RAISE EXCEPTION '{self.message}'; END IF;
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
        RETURN NEW;
    END $$ LANGUAGE plpgsql"""
        trigger = (
            f"CREATE TRIGGER {name} BEFORE {' OR '.join(self.verbs)} ON {self.table} "
            f"FOR EACH ROW EXECUTE FUNCTION {name}()"
        )
        return [function, f"DROP TRIGGER IF EXISTS {name} ON {self.table}", trigger]
