from django.db import migrations, models


def fill_sources(apps, schema_editor):
    """Sources were inferred from other fields; say them: an upload kept a file
    name, a stored replay reads the database, the rest came from a command."""
    DataMigration = apps.get_model("backfill", "DataMigration")
    DataMigration.objects.filter(kind="replay_stored").update(source="database")
    DataMigration.objects.filter(parameters__has_key="name").exclude(kind="replay_stored").update(
        source="upload"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("backfill", "0003_migration_heartbeat"),
    ]

    operations = [
        migrations.AlterField(
            model_name="datamigration",
            name="kind",
            field=models.CharField(
                choices=[
                    ("replay_file", "replay of an export"),
                    ("replay_stored", "replay of stored deliveries"),
                    ("reversal_csv", "reversals from finance's CSV"),
                ],
                max_length=32,
            ),
        ),
        migrations.AddField(
            model_name="datamigration",
            name="source",
            field=models.CharField(
                choices=[
                    ("upload", "uploaded in the admin"),
                    ("command", "a file on the command line"),
                    ("database", "deliveries stored in the database"),
                ],
                default="command",
                max_length=16,
            ),
            preserve_default=False,
        ),
        migrations.RunPython(fill_sources, migrations.RunPython.noop),
        migrations.AddField(
            model_name="datamigration",
            name="lease",
            field=models.CharField(blank=True, default="", max_length=32),
            preserve_default=False,
        ),
    ]
