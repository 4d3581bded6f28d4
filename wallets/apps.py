from django.apps import AppConfig


class WalletsConfig(AppConfig):
    """The wallet page: one wallet's balance, ledger and history in one place.
    A top layer like jobs/: it reads reconciliation and backfill; nothing below
    imports it."""

    name = "wallets"
    verbose_name = "Wallets"
