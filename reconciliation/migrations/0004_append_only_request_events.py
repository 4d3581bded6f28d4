"""The request audit trail is append-only in the database too."""

from django.db import migrations

TABLE = "reconciliation_requestevent"
SQLITE = [
    f"""CREATE TRIGGER request_event_no_update BEFORE UPDATE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, 'the request audit trail is append-only'); END""",
    f"""CREATE TRIGGER request_event_no_delete BEFORE DELETE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, 'the request audit trail is append-only'); END""",
]
SQLITE_REVERSE = ["DROP TRIGGER request_event_no_update", "DROP TRIGGER request_event_no_delete"]
POSTGRES = [
    """CREATE FUNCTION revassure_refuse_audit_change() RETURNS trigger AS $$
    BEGIN
        RAISE EXCEPTION 'the request audit trail is append-only';
    END $$ LANGUAGE plpgsql""",
    f"""CREATE TRIGGER request_event_append_only BEFORE UPDATE OR DELETE ON {TABLE}
        FOR EACH ROW EXECUTE FUNCTION revassure_refuse_audit_change()""",
]
POSTGRES_REVERSE = [
    f"DROP TRIGGER request_event_append_only ON {TABLE}",
    "DROP FUNCTION revassure_refuse_audit_change()",
]


def forwards(apps, schema_editor):
    statements = {"sqlite": SQLITE, "postgresql": POSTGRES}.get(schema_editor.connection.vendor)
    if statements is None:
        raise RuntimeError(f"no audit-trail triggers for database {schema_editor.connection.vendor}")
    for statement in statements:
        schema_editor.execute(statement, params=None)


def backwards(apps, schema_editor):
    for statement in {"sqlite": SQLITE_REVERSE, "postgresql": POSTGRES_REVERSE}[
        schema_editor.connection.vendor
    ]:
        schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("reconciliation", "0003_balance_requests")]

    operations = [migrations.RunPython(forwards, backwards)]
