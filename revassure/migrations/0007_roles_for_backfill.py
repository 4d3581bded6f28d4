"""Once: gave the roles what the backfill needs.

Its grants moved to the apps' declarations, synced after every migrate
(revassure/grants.py): it is kept, empty, so that databases that applied it and
the migrations after it keep their history.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("revassure", "0006_backfill_jobs")]

    operations: list = []
