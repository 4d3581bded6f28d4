# One line a target; the README names them. `make install` runs by itself when needed.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install demo test bench lint format clean

install: .installed
.installed: requirements.txt requirements-dev.txt package.json package-lock.json ; python3 -m venv $(VENV) && $(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt && npm ci --no-audit --no-fund --loglevel=error && touch .installed
demo: install ; bash scripts/demo.sh
test: install ; $(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/pytest
bench: install ; $(PY) bench/bench.py
lint: install ; $(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
format: install ; $(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .
clean: ; rm -rf $(VENV) node_modules .installed .demo .bench staticfiles
