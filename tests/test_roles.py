"""The three roles exist as groups with permissions; coordinators reach the admin."""

import pytest
from django.contrib.auth.models import Group

from core.roles import COORDINATOR, READER, RESEARCHER, has_role, user_set_roles


@pytest.mark.db_engine("the migrations (schema and the data migration that makes the role groups) ran on this engine")
def test_groups_created_by_migrate(db):
    assert set(Group.objects.values_list("name", flat=True)) >= {COORDINATOR, READER, RESEARCHER}


def test_coordinator_group_can_change_images_researcher_only_view(db):
    coordinator = Group.objects.get(name=COORDINATOR).permissions.values_list("codename", flat=True)
    researcher = Group.objects.get(name=RESEARCHER).permissions.values_list("codename", flat=True)
    assert {"add_dataset", "change_image", "delete_label"} <= set(coordinator)
    assert "view_image" in researcher and "change_image" not in researcher
    assert not Group.objects.get(name=READER).permissions.exists()


def test_coordinator_is_staff_and_admin_opens(client, coordinator):
    assert coordinator.is_staff
    client.force_login(coordinator)
    assert client.get("/admin/retrieval/image/").status_code == 200


def test_reader_cannot_open_admin(client, reader):
    client.force_login(reader)
    assert client.get("/admin/retrieval/image/").status_code == 302  # to the admin login


def test_set_roles_replaces_roles(db, django_user_model):
    user = django_user_model.objects.create_user("u", password="x")
    user_set_roles(user=user, roles=[COORDINATOR])
    user_set_roles(user=user, roles=[READER])
    user = django_user_model.objects.get(pk=user.pk)
    assert has_role(user, READER) and not has_role(user, COORDINATOR)
    assert not user.is_staff


def test_login_logout_and_password_change(client, reader):
    response = client.post("/accounts/login/", {"username": "reader", "password": "pw-reader"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200
    response = client.post(
        "/accounts/password/",
        {
            "old_password": "pw-reader",
            "new_password1": "a-long-new-passphrase",
            "new_password2": "a-long-new-passphrase",
        },
    )
    assert response.status_code == 302
    client.post("/accounts/logout/")
    assert client.get("/").status_code == 302
    assert client.login(username="reader", password="a-long-new-passphrase")
