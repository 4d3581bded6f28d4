"""Once: gave the roles what breaks need.

Its grants moved to the apps' declarations, synced after every migrate
(revassure/grants.py): it is kept, empty, so that databases that applied it and
the migrations after it keep their history.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("revassure", "0009_append_only_freeze_and_flag_history")]

    operations: list = []
