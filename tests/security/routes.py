"""Every route of the project, from the URL resolver, and every API operation, from the OpenAPI schema.

`routes()` walks `get_resolver().url_patterns` recursively; `api_operations()` reads the schema that
drf-spectacular generates (the one served at /api/schema/); `url_for()` fills a route's parameters from
the security tests' world (tests/security/conftest.py) by what the segment before each parameter names.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver

WRITE_METHODS = ("post", "put", "patch", "delete")


@dataclass(frozen=True)
class Route:
    key: str  # "namespace:name", or the pattern when the route has no name
    pattern: str  # the whole pattern, e.g. "studies/<int:pk>/open/"
    callback: object

    @property
    def is_api(self) -> bool:
        return self.pattern.startswith("api/")

    @property
    def is_admin(self) -> bool:
        return self.key.startswith("admin:") or self.pattern.startswith("admin/")


def _walk(patterns, prefix: str = "", namespace: str = ""):
    for p in patterns:
        if isinstance(p, URLResolver):
            ns = namespace + (f"{p.namespace}:" if p.namespace else "")
            yield from _walk(p.url_patterns, prefix + str(p.pattern), ns)
        elif isinstance(p, URLPattern):
            pattern = prefix + str(p.pattern)
            yield Route(key=f"{namespace}{p.name}" if p.name else pattern, pattern=pattern, callback=p.callback)


@functools.cache
def routes() -> tuple[Route, ...]:
    return tuple(_walk(get_resolver().url_patterns))


def api_operations() -> dict[str, set[str]]:
    """OpenAPI path ("/api/studies/{id}/") → its methods, as the served schema lists them."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {path: {m for m in item if m in ("get", *WRITE_METHODS)} for path, item in schema["paths"].items()}


def openapi_path(route: Route) -> str:
    """The route's pattern as the schema writes it: "/api/studies/{id}/" (drf-spectacular names pk `id`)."""
    path = re.sub(
        r"<(?:\w+:)?(\w+)>", lambda m: "{" + ("id" if m.group(1) == "pk" else m.group(1)) + "}", route.pattern
    )
    return "/" + path


# The segment before `<int:pk>` (or the parameter's own name) says which of the world's objects it is.
_SEGMENT_OBJECT = {
    "datasets": "dataset",
    "images": "image",
    "imports": "import_job",
    "runs": "run",
    "searches": "search",
    "studies": "study",
    "reports/studies": "study",
    "reports/runs": "report_run",
    "weights": "weights_fetch",
}
_PARAM_VALUE = {
    "study_id": lambda w: w["study"].pk,
    "index": lambda w: 1,  # the reader's first case (1-based)
    "number": lambda w: 1,  # the study's first case, on the coordinator's case page (1-based)
    "key": lambda w: "query",  # the case's query image: the same address for every persona
    "user_id": lambda w: w.users["reader"].pk,
    "question_id": lambda w: w["question"].pk,
    "image_id": lambda w: w["image"].pk,
    "kind": lambda w: "thumbnail",
    "name": lambda w: "curves",
    "fmt": lambda w: "csv",
}


def param_value(before: str, name: str, world):
    """The world's value for parameter `name` of a pattern whose text before it is `before`."""
    if name not in ("pk", "id"):
        return _PARAM_VALUE[name](world)
    before = before.rstrip("/")
    for segment, obj in sorted(_SEGMENT_OBJECT.items(), key=lambda kv: -len(kv[0])):
        if before.endswith(segment):
            return world[obj].pk
    raise KeyError(f"no object of the world for <{name}> after {before!r}")


def url_for(route: Route, world) -> str:
    """The route's address with the world's objects in it."""
    fill = lambda m: str(param_value(route.pattern[: m.start()], m.group(1), world))  # noqa: E731
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", fill, route.pattern)


def path_parameters(openapi: str, world) -> dict:
    """The world's values for the parameters of an OpenAPI path ("/api/studies/{id}/readers/{user_id}/")."""
    return {m.group(1): param_value(openapi[: m.start()], m.group(1), world) for m in re.finditer(r"{(\w+)}", openapi)}


def admin_url_for(route: Route, world) -> str:
    """An admin route's address: the app list of `retrieval`, a model's pages on that model's first row ("0" when
    the world has none: the admin then redirects to its index), view-on-site for the world's dataset."""
    from django.apps import apps
    from django.contrib.contenttypes.models import ContentType

    if "(?P<app_label>" in route.pattern:
        return "/admin/retrieval/"
    if "(?P<url>" in route.pattern:  # the admin's catch-all
        return "/admin/no-such-page/"
    model_match = re.match(r"admin/(\w+)/(\w+)/<", route.pattern)  # a model's page on one row
    model = apps.get_model(model_match.group(1), model_match.group(2)) if model_match else None

    def fill(match: re.Match) -> str:
        if match.group(1) == "content_type_id":
            return str(ContentType.objects.get_for_model(world["dataset"]).pk)
        if model is None:  # view-on-site's object
            return str(world["dataset"].pk)
        first = model.objects.order_by("pk").first()
        return str(first.pk) if first else "0"

    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", fill, route.pattern)
