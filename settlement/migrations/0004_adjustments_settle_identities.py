"""Adjustments proposed from settlement rows before BalanceRequest.settles
existed: each says the identity its row named, so matching counts it and no
second adjustment is offered for that payment. Where several stand for one
identity (what the missing check let through), the earliest is tagged; the
others are left as they are, for a person to look at."""

from django.db import migrations


def tag(apps, schema_editor):
    FollowUp = apps.get_model("settlement", "FollowUp")
    BalanceRequest = apps.get_model("reconciliation", "BalanceRequest")
    standing = ["proposed", "approved", "applied"]
    taken = set(BalanceRequest.objects.exclude(settles="").values_list("settles", flat=True))
    pairs = (
        FollowUp.objects.filter(kind="adjustment", request__isnull=False, request__state__in=standing)
        .order_by("request_id")
        .values_list("request_id", "row__entry_id")
    )
    for request_id, entry_id in pairs:
        if entry_id and entry_id not in taken:
            BalanceRequest.objects.filter(pk=request_id, settles="").update(settles=entry_id)
            taken.add(entry_id)


class Migration(migrations.Migration):
    dependencies = [
        ("settlement", "0003_outcome_labels"),
        ("reconciliation", "0009_adjustment_settles"),
    ]

    operations = [migrations.RunPython(tag, migrations.RunPython.noop)]
