"""A property-based fuzz of the API from its OpenAPI schema (schemathesis): no input gives a server error.

Every operation of the schema that drf-spectacular generates is called through the Django WSGI handler,
in this process, on the module's world of real objects (tests/security/conftest.py), authenticated with
HTTP Basic as the coordinator and as the assigned reader. Schemathesis draws valid and invalid
(negative) path parameters, query strings and bodies from the schema; the path parameters name the
world's objects in half the examples (else nothing but 404s would be tested), one of them is an edge
value (0, 2**31, 2**63, 10**30) in a quarter, and the schema's own draw is kept in the rest.
Each call runs in a savepoint rolled back after it, so every example sees the same world. The check is
`not_a_server_error`: no 5xx, whatever the input. Hypothesis runs derandomized (the same examples every
run) with a bounded number of examples per operation, and without its example database.
"""

from __future__ import annotations

import base64
import os

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.security.conftest import PASSWORD
from tests.security.routes import api_operations, path_parameters

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.db_engine(
        "which inputs are server errors depends on the engine: PostgreSQL refuses NUL characters in text and JSON "
        "values and integers beyond 64 bits in a query, SQLite fails on other ones (an id beyond 64 bits)"
    ),
]

# Examples per operation and persona: about 40 s for the whole fuzz on a loaded two-core machine. FUZZ_EXAMPLES=200
# runs a deeper fuzz by hand (the first examples are the same, more follow).
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
# Path ids at the edges of what a URL's <int:…> accepts and a database column holds.
EDGE_IDS = st.tuples(st.sampled_from([0, 2**31, 2**63 - 1, 2**63, 10**30]), st.integers(0, 3))
OPERATIONS = sorted((path, method.upper()) for path, methods in api_operations().items() for method in methods)


@pytest.fixture(scope="module")
def schema():
    from drf_spectacular.generators import SchemaGenerator

    loaded = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
    loaded.app = WSGIHandler()
    return loaded


@pytest.fixture
def wsgi(settings):
    """Requests through the WSGI handler inside the test's transaction, as Django's test client makes them: the
    handler's signals would close the connection (and so break the transaction) at each request's end."""
    settings.ALLOWED_HOSTS = ["*"]
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def basic(user) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user.username}:{PASSWORD}".encode()).decode()}


@pytest.mark.parametrize("persona", ["coordinator", "reader"])
@pytest.mark.parametrize("path,method", OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_no_server_error(schema, world, wsgi, persona, path, method):
    operation = schema[path][method]
    real = path_parameters(path, world)
    headers = basic(world.users[persona])
    modes = [operation.as_strategy(generation_mode=GenerationMode.POSITIVE)]
    if any(operation.iter_parameters()) or operation.body:
        modes.append(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))

    @hypothesis_settings(
        # The reader is refused (403) everything outside the reading API before any input is read: a few examples
        # show that no input changes that.
        max_examples=EXAMPLES if persona == "coordinator" or path.startswith("/api/reading/") else 2,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=st.one_of(modes), where=st.sampled_from(["world", "world", "edge", "schema"]), edge=EDGE_IDS)
    def fuzz(case, where, edge):
        if real and where == "world":
            case.path_parameters = {**(case.path_parameters or {}), **real}
        elif real and where == "edge":  # the world's ids but one, which is an edge value
            name = sorted(real)[edge[1] % len(real)]
            case.path_parameters = {**(case.path_parameters or {}), **real, name: edge[0]}
        with transaction.atomic():
            savepoint = transaction.savepoint()
            try:
                response = case.call(headers=headers)
                case.validate_response(response, checks=[not_a_server_error])
            finally:
                transaction.savepoint_rollback(savepoint)

    fuzz()
