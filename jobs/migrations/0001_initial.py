"""Take over the Job model from the `revassure` app, rows and all.

Until now the job API's model lived in revassure (migrations 0005 and 0006
created its table, `revassure_job`). This migration declares the same model in
Django's state without touching the database, moves its content type (and with
it the permissions and admin history that point at it), then renames the table
to this app's own name. On a fresh database the same steps run after
revassure's migrations have created the table, so both paths end alike.
"""

import django.db.models.deletion
from django.db import migrations, models


def move_content_type(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="jobs", model="job").exists():
        ContentType.objects.filter(app_label="revassure", model="job").update(app_label="jobs")


def restore_content_type(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="revassure", model="job").exists():
        ContentType.objects.filter(app_label="jobs", model="job").update(app_label="revassure")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("revassure", "0008_job_moves_to_jobs_app"),
        ("reconciliation", "0001_initial"),
        ("backfill", "0002_data_migrations"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Job",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        (
                            "kind",
                            models.CharField(
                                choices=[("reconcile", "Reconcile"), ("backfill", "Backfill")], max_length=32
                            ),
                        ),
                        ("idempotency_key", models.CharField(max_length=200)),
                        ("caller", models.EmailField(max_length=254)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "run",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="+",
                                to="reconciliation.reconciliationrun",
                            ),
                        ),
                        (
                            "migration",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="+",
                                to="backfill.datamigration",
                            ),
                        ),
                    ],
                    options={
                        "ordering": ["-created_at", "-id"],
                        "db_table": "revassure_job",
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("kind", "idempotency_key"), name="one_job_per_key"
                            )
                        ],
                    },
                ),
            ],
        ),
        migrations.RunPython(move_content_type, restore_content_type),
        # From here on the table has this app's name, like every other table.
        migrations.AlterModelTable(name="job", table=None),
    ]
