"""Cutover records join the sealing kernel (revassure.sealing): a place in a
chain of their own, and database triggers that refuse any change to a sealed
cutover and to its steps.

Cutovers sealed before this migration are chained in the order they ended
(finish time, then id), each holding the checksum of the one before; their
records and checksums are left as they are."""

from django.db import migrations, models

from revassure.sealing.operations import RefuseChanges

ENDED = ("finished", "aborted")


def chain_sealed_cutovers(apps, schema_editor):
    Cutover = apps.get_model("cutover", "Cutover")
    previous = ""
    sealed = Cutover.objects.filter(status__in=ENDED).exclude(checksum="").order_by("finished_at", "id")
    for position, cutover in enumerate(sealed, start=1):
        Cutover.objects.filter(pk=cutover.pk).update(chain_seq=position, previous_checksum=previous)
        previous = cutover.checksum


class Migration(migrations.Migration):
    dependencies = [("cutover", "0002_roles_for_cutover")]

    operations = [
        migrations.AddField(
            model_name="cutover",
            name="chain_seq",
            field=models.PositiveIntegerField(blank=True, null=True, unique=True),
        ),
        migrations.AddField(
            model_name="cutover",
            name="previous_checksum",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.RunPython(chain_sealed_cutovers, migrations.RunPython.noop),
        RefuseChanges("cutover_cutover", finished=ENDED),
        RefuseChanges("cutover_cutoverstep", finished=ENDED, parent=("cutover_cutover", "cutover_id")),
    ]
