from django.db import models


class Wallet(models.Model):
    """Not stored here: wallets live in Firestore. This unmanaged model (no table,
    no permissions of its own) only gives the wallet page its place in the admin
    (a menu entry, `admin:wallet_lookup`); wallets.admin never queries it."""

    uid = models.CharField(max_length=256, primary_key=True)

    class Meta:
        managed = False
        default_permissions = ()
        verbose_name = "wallet"
        verbose_name_plural = "wallet lookup"

    def __str__(self) -> str:
        return self.uid
