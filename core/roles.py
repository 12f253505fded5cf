"""The three roles (coordinator, reader, researcher) as groups, and the checks every view uses.

Groups and their model permissions are (re)created after every migrate by `roles_sync`, so a
model added later is covered without a hand-written data migration.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import wraps

from django.contrib.auth.mixins import AccessMixin
from django.contrib.auth.models import Group, Permission
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission

COORDINATOR = "coordinator"
READER = "reader"
RESEARCHER = "researcher"
ROLES = (COORDINATOR, READER, RESEARCHER)

# Which model permissions each role's group carries (Django admin uses them).
_ROLE_PERMISSIONS: dict[str, dict[str, tuple[str, ...]]] = {
    COORDINATOR: {
        "retrieval": ("add", "change", "delete", "view"),
        "readerstudy": ("add", "change", "delete", "view"),
        "annotations": ("view",),
        "reports": ("view",),
    },
    RESEARCHER: {"retrieval": ("view",), "readerstudy": ("view",), "annotations": ("view",), "reports": ("view",)},
    READER: {},
}


def roles_sync(**_kwargs) -> None:
    """Create the role groups and give each its model permissions (idempotent)."""
    for role, apps in _ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        perms = [
            p
            for app_label, actions in apps.items()
            for p in Permission.objects.filter(content_type__app_label=app_label)
            if p.codename.split("_", 1)[0] in actions
        ]
        group.permissions.set(perms)


def user_roles(user) -> set[str]:
    """The role names of a user (all three for a superuser); cached on the user object."""
    if not getattr(user, "is_authenticated", False):
        return set()
    cached = getattr(user, "_cbir_roles", None)
    if cached is None:
        cached = (
            set(ROLES) if user.is_superuser else set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        )
        user._cbir_roles = cached
    return cached


def has_role(user, *roles: str) -> bool:
    """True when the user has at least one of the roles."""
    return bool(user_roles(user) & set(roles))


def user_set_roles(*, user, roles: Iterable[str]) -> None:
    """Give a user exactly these roles; coordinators get admin access (is_staff)."""
    roles = set(roles)
    unknown = roles - set(ROLES)
    if unknown:
        raise ValueError(f"unknown role(s): {', '.join(sorted(unknown))}")
    roles_sync()
    user.groups.remove(*Group.objects.filter(name__in=ROLES))
    user.groups.add(*Group.objects.filter(name__in=roles))
    user.is_staff = COORDINATOR in roles or user.is_superuser
    user.save(update_fields=["is_staff"])
    user.__dict__.pop("_cbir_roles", None)


def roles_context(request) -> dict:
    """Template context: `roles` and one boolean per role (none when the auth middleware has not run:
    an error page for a request refused earlier, e.g. a bad Host header)."""
    roles = user_roles(getattr(request, "user", None))
    return {"roles": roles, **{f"is_{r}": r in roles for r in ROLES}}


def role_required(*roles: str):
    """View decorator: login required, then one of the roles, else 403."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_role(request.user, *roles):
                raise PermissionDenied(f"This page is for the {' or '.join(roles)} role.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


class RoleRequiredMixin(AccessMixin):
    """Class-based view mixin: `required_roles = (COORDINATOR, ...)`."""

    required_roles: tuple[str, ...] = ()

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        if not has_role(request.user, *self.required_roles):
            raise PermissionDenied(f"This page is for the {' or '.join(self.required_roles)} role.")
        return super().dispatch(request, *args, **kwargs)


def api_role(*roles: str) -> type[BasePermission]:
    """A DRF permission class admitting authenticated users with one of the roles."""

    class HasRole(BasePermission):
        message = f"This endpoint is for the {' or '.join(roles)} role."

        def has_permission(self, request, view):
            return bool(request.user and request.user.is_authenticated and has_role(request.user, *roles))

    HasRole.__name__ = "Has" + "Or".join(r.title() for r in roles)
    return HasRole
