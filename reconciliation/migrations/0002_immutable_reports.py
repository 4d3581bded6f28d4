"""Database triggers that refuse changes to finished runs and their violations,
whatever path the write takes (the ORM, raw SQL, a shell)."""

from django.db import migrations

RUNS = "reconciliation_reconciliationrun"
VIOLATIONS = "reconciliation_violation"
FINISHED = "('completed', 'failed')"

SQLITE = [
    f"""CREATE TRIGGER run_finished_no_update BEFORE UPDATE ON {RUNS}
        WHEN OLD.status IN {FINISHED}
        BEGIN SELECT RAISE(ABORT, 'finished reconciliation runs are immutable'); END""",
    f"""CREATE TRIGGER run_finished_no_delete BEFORE DELETE ON {RUNS}
        WHEN OLD.status IN {FINISHED}
        BEGIN SELECT RAISE(ABORT, 'finished reconciliation runs are immutable'); END""",
    f"""CREATE TRIGGER violation_finished_no_insert BEFORE INSERT ON {VIOLATIONS}
        WHEN (SELECT status FROM {RUNS} WHERE id = NEW.run_id) IN {FINISHED}
        BEGIN SELECT RAISE(ABORT, 'violations of a finished run are immutable'); END""",
    f"""CREATE TRIGGER violation_finished_no_update BEFORE UPDATE ON {VIOLATIONS}
        WHEN (SELECT status FROM {RUNS} WHERE id = OLD.run_id) IN {FINISHED}
        BEGIN SELECT RAISE(ABORT, 'violations of a finished run are immutable'); END""",
    f"""CREATE TRIGGER violation_finished_no_delete BEFORE DELETE ON {VIOLATIONS}
        WHEN (SELECT status FROM {RUNS} WHERE id = OLD.run_id) IN {FINISHED}
        BEGIN SELECT RAISE(ABORT, 'violations of a finished run are immutable'); END""",
]
SQLITE_REVERSE = [
    "DROP TRIGGER run_finished_no_update",
    "DROP TRIGGER run_finished_no_delete",
    "DROP TRIGGER violation_finished_no_insert",
    "DROP TRIGGER violation_finished_no_update",
    "DROP TRIGGER violation_finished_no_delete",
]

POSTGRES = [
    f"""CREATE FUNCTION revassure_refuse_finished_run() RETURNS trigger AS $$
    BEGIN
        IF OLD.status IN {FINISHED} THEN
            RAISE EXCEPTION 'finished reconciliation runs are immutable (run %)', OLD.id;
        END IF;
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
        RETURN NEW;
    END $$ LANGUAGE plpgsql""",
    f"""CREATE TRIGGER run_finished_immutable BEFORE UPDATE OR DELETE ON {RUNS}
        FOR EACH ROW EXECUTE FUNCTION revassure_refuse_finished_run()""",
    f"""CREATE FUNCTION revassure_refuse_finished_violation() RETURNS trigger AS $$
    DECLARE run_id bigint;
    BEGIN
        IF TG_OP = 'INSERT' THEN run_id := NEW.run_id; ELSE run_id := OLD.run_id; END IF;
        IF (SELECT status FROM {RUNS} WHERE id = run_id) IN {FINISHED} THEN
            RAISE EXCEPTION 'violations of a finished run are immutable (run %)', run_id;
        END IF;
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
        RETURN NEW;
    END $$ LANGUAGE plpgsql""",
    f"""CREATE TRIGGER violation_finished_immutable BEFORE INSERT OR UPDATE OR DELETE ON {VIOLATIONS}
        FOR EACH ROW EXECUTE FUNCTION revassure_refuse_finished_violation()""",
]
POSTGRES_REVERSE = [
    f"DROP TRIGGER violation_finished_immutable ON {VIOLATIONS}",
    "DROP FUNCTION revassure_refuse_finished_violation()",
    f"DROP TRIGGER run_finished_immutable ON {RUNS}",
    "DROP FUNCTION revassure_refuse_finished_run()",
]


def forwards(apps, schema_editor):
    statements = {"sqlite": SQLITE, "postgresql": POSTGRES}.get(schema_editor.connection.vendor)
    if statements is None:
        raise RuntimeError(f"no immutability triggers for database {schema_editor.connection.vendor}")
    for statement in statements:
        schema_editor.execute(statement, params=None)


def backwards(apps, schema_editor):
    statements = {"sqlite": SQLITE_REVERSE, "postgresql": POSTGRES_REVERSE}[schema_editor.connection.vendor]
    for statement in statements:
        schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("reconciliation", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
