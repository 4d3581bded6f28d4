"""The outbox of alert notifications, and which announcement claimed each
inbox notice (revassure/outbox.py)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("observability", "0007_inbox_backfill_plans"),
        ("revassure", "0012_waiting_announcements"),
    ]

    operations = [
        migrations.AddField(
            model_name="inboxnotice",
            name="announcement",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="revassure.waitingannouncement",
            ),
        ),
        migrations.CreateModel(
            name="AlertSend",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "state",
                    models.CharField(
                        choices=[("pending", "to send"), ("sent", "Sent"), ("failed", "Failed")],
                        default="pending",
                        max_length=16,
                    ),
                ),
                ("attempts", models.PositiveSmallIntegerField(default=0)),
                ("holder", models.CharField(blank=True, max_length=255)),
                ("lease_until", models.DateTimeField(blank=True, null=True)),
                ("queued_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                (
                    "kind",
                    models.CharField(
                        choices=[("firing", "Firing"), ("repeat", "firing again"), ("resolved", "Resolved")],
                        max_length=16,
                    ),
                ),
                (
                    "channel",
                    models.CharField(choices=[("email", "Email"), ("webhook", "Webhook")], max_length=16),
                ),
                (
                    "alert",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="sends",
                        to="observability.alert",
                    ),
                ),
            ],
            options={
                "ordering": ["created_at", "id"],
                "abstract": False,
                "indexes": [
                    models.Index(
                        condition=models.Q(("state", "pending")),
                        fields=["queued_at"],
                        name="alertsend_pending",
                    )
                ],
            },
        ),
    ]
