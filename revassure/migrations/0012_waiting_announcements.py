"""The outbox of "waiting for you" announcements (revassure/outbox.py)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("revassure", "0011_roles_see_rejected_webhooks"),
    ]

    operations = [
        migrations.CreateModel(
            name="WaitingAnnouncement",
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
                ("kind", models.CharField(max_length=32)),
                ("object_id", models.BigIntegerField()),
            ],
            options={
                "ordering": ["-created_at", "-id"],
                "abstract": False,
                "indexes": [
                    models.Index(
                        condition=models.Q(("state", "pending")),
                        fields=["queued_at"],
                        name="waitingannouncement_pending",
                    )
                ],
            },
        ),
    ]
