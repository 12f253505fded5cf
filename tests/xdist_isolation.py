"""Each pytest-xdist worker (`pytest -n 2`: `make test`) gets its own data folder and Redis database.

Loaded with `-p tests.xdist_isolation` (pyproject's addopts), so that it runs before pytest-django reads the
settings: DATA_DIR holds the SQLite test database, the embedded broker's queue folder, checkpoints and caches,
and the tests' real workers get it from the settings; tests that use Redis FLUSHDB their TEST_REDIS_URL. Two
workers sharing either would take each other's tasks or wipe each other's queues. So worker `gwN` gets
DATA_DIR/gwN and the Redis database N below TEST_REDIS_URL's (15, 14, … for the Makefile's /15). pytest-django
already gives each worker its own test database name (`_gwN`), on SQLite and PostgreSQL alike.

Without xdist (no PYTEST_XDIST_WORKER) nothing changes."""

from __future__ import annotations

import os

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", … in a worker; unset otherwise

if WORKER.startswith("gw"):
    index = int(WORKER[2:])
    os.environ["DATA_DIR"] = os.path.join(os.environ.get("DATA_DIR", "var"), WORKER)
    base, db = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15").rsplit("/", 1)
    os.environ["TEST_REDIS_URL"] = f"{base}/{(int(db) - index) % 16}"
