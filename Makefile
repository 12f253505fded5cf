# Two commands for a newcomer:  `make demo`  and  `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PG_URL ?= postgres://postgres@127.0.0.1:5432/cbir
DATA_DIR ?= var
REDIS_URL ?= redis://127.0.0.1:6379/15
# Both passes run on two pytest-xdist workers; tests/xdist_isolation.py gives each its own DATA_DIR and Redis
# database (/15 and /14 here). `--dist load` hands each worker its tests in pytest-django's order (every `db`
# test before the transactional ones, as a module's shared rows need: tests/runs/conftest.py module_data).
# XDIST= runs them in one process.
XDIST ?= -p tests.xdist_isolation -n 2 --dist load

.PHONY: install chromium orthanc nginx demo test test-sqlite test-postgres bench lint clean vendor

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[ml,test]"
	touch $@

# Debian's Chromium for the browser tests (never `playwright install`).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

# Debian's Orthanc with its DICOMweb plugin: the PACS the DICOMweb import tests start (tests/orthanc.py).
orthanc:
	@test -x /usr/sbin/Orthanc && test -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb >/dev/null; }

# Debian's nginx: tests/reading/test_images_nginx.py runs docker/nginx.conf.template in front of the app.
nginx:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }

# The demo serves with DEBUG off (the project's own error pages, static files through WhiteNoise), under a
# secret key made once and kept in $(DATA_DIR), so sessions survive a restart. DEMO_ARGS: e.g. --addrport.
demo: install
	@mkdir -p $(DATA_DIR) && test -s $(DATA_DIR)/secret_key || \
		$(PY) -c "import secrets; print(secrets.token_urlsafe(50))" > $(DATA_DIR)/secret_key
	DATA_DIR=$(DATA_DIR) SECRET_KEY_FILE=$(DATA_DIR)/secret_key $(PY) manage.py demo $(DEMO_ARGS)

test: install chromium orthanc nginx
	$(MAKE) --no-print-directory test-sqlite
	$(MAKE) --no-print-directory test-postgres

# The SQLite pass runs every test but the few that need PostgreSQL itself (marker `postgres`).
test-sqlite:
	rm -rf var/test-sqlite
	DATA_DIR=var/test-sqlite DEBUG=true TEST_REDIS_URL=$(REDIS_URL) $(PY) -m pytest $(XDIST) -m "not postgres" $(PYTEST_ARGS)

# The PostgreSQL pass runs what depends on the database engine (marker `db_engine`: each test says why),
# the `postgres` ones, and the acceptance journey on a demo served from a fresh PostgreSQL database.
test-postgres:
	rm -rf var/test-postgres
	DATA_DIR=var/test-postgres DEBUG=true DATABASE_URL=$(PG_URL) TEST_REDIS_URL=$(REDIS_URL) \
		$(PY) -m pytest $(XDIST) -m "db_engine or postgres or acceptance" $(PYTEST_ARGS)

# ruff (lint rules in pyproject.toml, and the formatter: `ruff format .` fixes what it finds) and import-linter's layering contracts.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# The browser libraries of static/vendor/ (committed): rebuilt from frontend/package-lock.json with npm.
vendor:
	cd frontend && npm ci --no-audit --no-fund && npm run build

bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf var/test-sqlite var/test-postgres .pytest_cache
