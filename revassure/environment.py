"""The environment every settings module reads (revassure.settings and
revassure.product_settings): the project's directory, the reader of variables
(`NAME_FILE` works for every one, for secrets mounted from files) and DEBUG,
which both decide defaults by."""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.FileAwareEnv()

DEBUG = env.bool("DEBUG", default=False)
