"""The freeze's history and the feature flags' history are append-only in the
database too, as the request audit trail is (reconciliation 0004): an UPDATE or
a DELETE of a row is refused by a trigger, whoever sends it."""

from django.db import migrations

TABLES = {"freeze_event": "revassure_freezeevent", "flag_change": "revassure_featureflagchange"}
SQLITE = [
    statement
    for name, table in TABLES.items()
    for statement in (
        f"""CREATE TRIGGER {name}_no_update BEFORE UPDATE ON {table}
            BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END""",
        f"""CREATE TRIGGER {name}_no_delete BEFORE DELETE ON {table}
            BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END""",
    )
]
SQLITE_REVERSE = [f"DROP TRIGGER {name}_{verb}" for name in TABLES for verb in ("no_update", "no_delete")]
POSTGRES = [
    """CREATE FUNCTION revassure_refuse_history_change() RETURNS trigger AS $$
    BEGIN
        RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
    END $$ LANGUAGE plpgsql""",
    *(
        f"""CREATE TRIGGER {name}_append_only BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION revassure_refuse_history_change()"""
        for name, table in TABLES.items()
    ),
]
POSTGRES_REVERSE = [
    *(f"DROP TRIGGER {name}_append_only ON {table}" for name, table in TABLES.items()),
    "DROP FUNCTION revassure_refuse_history_change()",
]


def forwards(apps, schema_editor):
    statements = {"sqlite": SQLITE, "postgresql": POSTGRES}.get(schema_editor.connection.vendor)
    if statements is None:
        raise RuntimeError(f"no append-only triggers for database {schema_editor.connection.vendor}")
    for statement in statements:
        schema_editor.execute(statement, params=None)


def backwards(apps, schema_editor):
    for statement in {"sqlite": SQLITE_REVERSE, "postgresql": POSTGRES_REVERSE}[
        schema_editor.connection.vendor
    ]:
        schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("revassure", "0008_job_moves_to_jobs_app")]

    operations = [migrations.RunPython(forwards, backwards)]
