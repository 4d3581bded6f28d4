"""An alert rule's history is append-only in the database too: an UPDATE or a
DELETE of a change is refused by a trigger, whoever sends it."""

from django.db import migrations

from revassure.sealing.operations import RefuseChanges


class Migration(migrations.Migration):
    dependencies = [("observability", "0003_second_threshold_and_break_rule")]

    operations = [RefuseChanges("observability_alertrulechange")]
