"""Breaks: one wallet's drift tracked across runs (reconciliation/breaks.py).
A break's notes are append-only in the database too, as the request audit
trail is (0004)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

TABLE = "reconciliation_breaknote"
SQLITE = [
    f"""CREATE TRIGGER break_note_no_update BEFORE UPDATE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, 'a break''s notes are append-only'); END""",
    f"""CREATE TRIGGER break_note_no_delete BEFORE DELETE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, 'a break''s notes are append-only'); END""",
]
SQLITE_REVERSE = ["DROP TRIGGER break_note_no_update", "DROP TRIGGER break_note_no_delete"]
POSTGRES = [
    """CREATE FUNCTION revassure_refuse_break_note_change() RETURNS trigger AS $$
    BEGIN
        RAISE EXCEPTION 'a break''s notes are append-only';
    END $$ LANGUAGE plpgsql""",
    f"""CREATE TRIGGER break_note_append_only BEFORE UPDATE OR DELETE ON {TABLE}
        FOR EACH ROW EXECUTE FUNCTION revassure_refuse_break_note_change()""",
]
POSTGRES_REVERSE = [
    f"DROP TRIGGER break_note_append_only ON {TABLE}",
    "DROP FUNCTION revassure_refuse_break_note_change()",
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
    dependencies = [
        ("reconciliation", "0005_approval_reason"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="TrackedRun",
            fields=[
                (
                    "run",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.PROTECT,
                        primary_key=True,
                        related_name="break_tracking",
                        serialize=False,
                        to="reconciliation.reconciliationrun",
                    ),
                ),
                ("tracked_at", models.DateTimeField(auto_now_add=True)),
                ("opened", models.PositiveIntegerField(default=0)),
                ("seen", models.PositiveIntegerField(default=0)),
                ("closed", models.PositiveIntegerField(default=0)),
                ("reopened", models.PositiveIntegerField(default=0)),
            ],
        ),
        migrations.CreateModel(
            name="Break",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("uid", models.CharField(max_length=256)),
                (
                    "status",
                    models.CharField(
                        choices=[("open", "Open"), ("acknowledged", "Acknowledged"), ("closed", "Closed")],
                        default="open",
                        max_length=16,
                    ),
                ),
                (
                    "resolution",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("healed", "healed by a heal request"),
                            ("cleared", "cleared without us"),
                            ("accepted", "accepted by an approver"),
                        ],
                        max_length=16,
                    ),
                ),
                (
                    "kind",
                    models.CharField(choices=[("drift", "Drift"), ("malformed", "Malformed")], max_length=16),
                ),
                ("wallet_points", models.BigIntegerField(blank=True, null=True)),
                ("ledger_sum", models.BigIntegerField()),
                ("delta", models.BigIntegerField(blank=True, null=True)),
                ("size", models.BigIntegerField(default=0)),
                ("entries", models.PositiveIntegerField(default=0)),
                ("first_seen", models.DateTimeField()),
                ("last_seen", models.DateTimeField()),
                ("sightings_count", models.PositiveIntegerField(default=1)),
                ("watching", models.BooleanField(default=True)),
                (
                    "cause",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("missed_entries", "wallet missed its latest entries"),
                            (
                                "extra_in_wallet",
                                "entry missing from the ledger or counted twice in the wallet",
                            ),
                            ("wrong_sign", "sign of an entry applied the wrong way"),
                            ("malformed_amount", "malformed amount"),
                            ("our_entry", "an entry written by revassure"),
                            ("unexplained", "Unexplained"),
                        ],
                        max_length=32,
                    ),
                ),
                ("cause_text", models.TextField(blank=True)),
                ("cause_evidence", models.JSONField(blank=True, default=dict)),
                ("closed_at", models.DateTimeField(blank=True, null=True)),
                ("accepted_at", models.DateTimeField(blank=True, null=True)),
                ("accepted_delta", models.BigIntegerField(blank=True, null=True)),
                ("accepted_reason", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "accepted_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "closed_by_run",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="reconciliation.reconciliationrun",
                    ),
                ),
                (
                    "first_run",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="reconciliation.reconciliationrun",
                    ),
                ),
                (
                    "heal_request",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="healed_breaks",
                        to="reconciliation.balancerequest",
                    ),
                ),
                (
                    "last_run",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="reconciliation.reconciliationrun",
                    ),
                ),
                (
                    "owner",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "permissions": [
                    ("work_break", "Can assign, take, acknowledge and note breaks, and propose their heals"),
                    ("accept_break", "Can accept a break's difference with a reason (a write-off)"),
                    ("export_break", "Can export breaks"),
                ],
            },
        ),
        migrations.CreateModel(
            name="BreakNote",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "action",
                    models.CharField(
                        choices=[
                            ("note", "Note"),
                            ("assign", "assigned"),
                            ("take", "taken"),
                            ("acknowledge", "acknowledged"),
                            ("accept", "accepted"),
                            ("propose_heal", "heal proposed"),
                            ("reopen", "reopened"),
                            ("close", "closed"),
                        ],
                        default="note",
                        max_length=16,
                    ),
                ),
                ("text", models.TextField()),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "author",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "brk",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="notes",
                        to="reconciliation.break",
                    ),
                ),
            ],
            options={
                "ordering": ["created_at", "id"],
            },
        ),
        migrations.CreateModel(
            name="BreakSighting",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("seen_at", models.DateTimeField()),
                (
                    "brk",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="sightings",
                        to="reconciliation.break",
                    ),
                ),
                (
                    "run",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="reconciliation.reconciliationrun",
                    ),
                ),
                (
                    "violation",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="sighting",
                        to="reconciliation.violation",
                    ),
                ),
            ],
            options={
                "ordering": ["seen_at", "id"],
            },
        ),
        migrations.AddIndex(
            model_name="break",
            index=models.Index(fields=["uid"], name="reconciliat_uid_6eac69_idx"),
        ),
        migrations.AddIndex(
            model_name="break",
            index=models.Index(fields=["status", "first_seen"], name="reconciliat_status_645691_idx"),
        ),
        migrations.AddConstraint(
            model_name="break",
            constraint=models.UniqueConstraint(
                condition=models.Q(("watching", True)), fields=("uid",), name="one_watching_break_per_wallet"
            ),
        ),
        migrations.AddConstraint(
            model_name="breaksighting",
            constraint=models.UniqueConstraint(fields=("brk", "run"), name="one_sighting_per_run"),
        ),
        migrations.RunPython(forwards, backwards),
    ]
