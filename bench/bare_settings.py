"""The product's settings, with one URL more for the bench: `/bench/bare`, a view
that answers 200 and does nothing (the floor the webhook's intake is compared
with, served by the same server with the same middleware)."""

from revassure.settings import *  # noqa: F403

ROOT_URLCONF = "bench.bare_urls"
