# One line a target; the README names them. `make install` runs by itself when needed.
VENV := .venv
PY := $(VENV)/bin/python
# The browser tests drive Debian's chromium (never a downloaded browser); CHROMIUM names another build.
CHROMIUM ?= /usr/bin/chromium
# The exported alert rules are checked by Debian's promtool and loaded into a real Prometheus
# (package `prometheus`: both binaries); PROMETHEUS and PROMTOOL name others.
PROMETHEUS ?= /usr/bin/prometheus
PROMTOOL ?= /usr/bin/promtool
# mypy with django-stubs over the files pyproject.toml names; its plugin loads the settings, as the tests do.
MYPY := SECRET_KEY="$${SECRET_KEY:-typecheck-only-not-secret}" DEBUG=false $(VENV)/bin/mypy

.PHONY: install browser prometheus netns demo inject-drift test typecheck e2e bench lint format clean

install: .installed browser prometheus netns
.installed: requirements.txt requirements-dev.txt package.json package-lock.json ; python3 -m venv $(VENV) && $(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt && npm ci --no-audit --no-fund --loglevel=error && touch .installed
browser: ; @test -x $(CHROMIUM) || (apt-get update -q && apt-get install -y -q chromium)
prometheus: ; @test -x $(PROMETHEUS) -a -x $(PROMTOOL) || (apt-get update -q && apt-get install -y -q --no-install-recommends prometheus)
netns: ; @command -v ip >/dev/null || (apt-get update -q && apt-get install -y -q --no-install-recommends iproute2)
demo: install ; bash scripts/demo.sh
inject-drift: ; @test -f .demo/env || { echo "no demo is running: start one with make demo" >&2; exit 1; }; . ./.demo/env && $(PY) manage.py inject_drift
test: install ; $(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(MYPY) && $(VENV)/bin/pytest
typecheck: install ; $(MYPY)
e2e: install ; $(VENV)/bin/pytest tests/e2e
bench: install ; $(PY) bench/bench.py $(ARGS)
lint: install ; $(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
format: install ; $(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .
clean: ; rm -rf $(VENV) node_modules .installed .demo .bench staticfiles e2e-screenshots .mypy_cache
