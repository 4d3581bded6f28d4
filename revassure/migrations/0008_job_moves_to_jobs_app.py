"""The Job model moves to the `jobs` app (the job API's own app), so the core
no longer models the apps built on it. Only Django's idea of the model moves
here; the table stays, and jobs/migrations/0001_initial takes it over."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("revassure", "0007_roles_for_backfill")]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="Job")]),
    ]
