import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Snapshot",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("project", models.CharField(max_length=100)),
                ("path", models.CharField(max_length=500, unique=True)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("pending", "Pending"),
                            ("running", "Running"),
                            ("completed", "Completed"),
                            ("failed", "Failed"),
                        ],
                        default="pending",
                        max_length=16,
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("wallets_expected", models.PositiveIntegerField(blank=True, null=True)),
                ("wallets_done", models.PositiveIntegerField(default=0)),
                ("seconds", models.FloatField(blank=True, null=True)),
                ("wallets", models.PositiveIntegerField(blank=True, null=True)),
                ("entries", models.PositiveIntegerField(blank=True, null=True)),
                ("documents", models.PositiveIntegerField(blank=True, null=True)),
                ("points_total", models.BigIntegerField(blank=True, null=True)),
                ("ledger_total", models.BigIntegerField(blank=True, null=True)),
                ("manifest_sha256", models.CharField(blank=True, max_length=64)),
                ("manifest", models.JSONField(blank=True, null=True)),
                (
                    "verification",
                    models.CharField(
                        choices=[
                            ("not_verified", "Not verified"),
                            ("intact", "Intact"),
                            ("corrupt", "Corrupt"),
                        ],
                        default="not_verified",
                        max_length=16,
                    ),
                ),
                ("verified_at", models.DateTimeField(blank=True, null=True)),
                ("verification_errors", models.JSONField(blank=True, default=list)),
                ("violations_count", models.PositiveIntegerField(blank=True, null=True)),
                ("violations", models.JSONField(blank=True, default=list)),
                ("error", models.TextField(blank=True)),
                ("managed_export_operation", models.CharField(blank=True, max_length=300)),
                ("managed_export_state", models.CharField(blank=True, max_length=300)),
                (
                    "started_by",
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
                "ordering": ["-created_at", "-id"],
                "permissions": [("take_snapshot", "Can take and verify Firestore snapshots")],
            },
        ),
        migrations.CreateModel(
            name="Restore",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("path", models.CharField(max_length=500)),
                ("project", models.CharField(max_length=100)),
                ("replace", models.BooleanField(default=False)),
                ("started_at", models.DateTimeField(auto_now_add=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("refused", models.BooleanField(default=False)),
                ("deleted", models.PositiveIntegerField(default=0)),
                ("written", models.PositiveIntegerField(default=0)),
                ("error", models.TextField(blank=True)),
                (
                    "started_by",
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
                "ordering": ["-started_at", "-id"],
            },
        ),
    ]
