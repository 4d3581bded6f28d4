"""Small builders for test data in the emulator."""

from revassure.firestore import MISSING


def ledger(*amounts, prefix="e"):
    """{entry id: fields} with the given amounts; MISSING leaves `amount` out."""
    entries = {}
    for n, amount in enumerate(amounts):
        fields = {"type": "purchase" if isinstance(amount, int) and amount >= 0 else "redemption"}
        if amount is not MISSING:
            fields["amount"] = amount
        entries[f"{prefix}{n:03d}"] = fields
    return entries


def put_wallets(gateway, wallets):
    """wallets: {uid: (points, [amounts])}"""
    gateway.write_wallets((uid, points, ledger(*amounts)) for uid, (points, amounts) in wallets.items())
