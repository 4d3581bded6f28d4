"""Settlement reports refuse changes in the database too, as reconciliation
reports do (reconciliation 0002): a finished run, the rows of a finished run,
and every follow-up (append-only), whoever sends the UPDATE or DELETE."""

from django.db import migrations

from revassure.sealing.operations import RefuseChanges

FINISHED = ("completed", "failed")


class Migration(migrations.Migration):
    dependencies = [("settlement", "0005_dry_run_status")]

    operations = [
        RefuseChanges("settlement_settlementrun", finished=FINISHED),
        RefuseChanges(
            "settlement_settlementrow", finished=FINISHED, parent=("settlement_settlementrun", "run_id")
        ),
        RefuseChanges("settlement_followup"),
    ]
