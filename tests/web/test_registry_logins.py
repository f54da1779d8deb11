"""Registry logins are kept sealed: the database holds no password, the pull gets it back."""

from __future__ import annotations

import sqlite3
import uuid

import pytest


@pytest.fixture
def user(orm):
    from django.contrib.auth import get_user_model

    made = get_user_model().objects.create(username=f"seal-{uuid.uuid4().hex[:8]}")
    yield made
    made.delete()


def test_a_saved_password_is_sealed_and_read_back_for_its_user(user, web_env):
    from django.test import override_settings

    from engine.errors import Unauthorized
    from images_app import registries
    from images_app.models import RegistryLogin
    from images_app.sealing import seal

    secret = f"s3cret-{uuid.uuid4().hex}"
    RegistryLogin.objects.create(user=user, registry="127.0.0.1:5999", username="teacher",
                                 password=seal(secret))
    with sqlite3.connect(web_env.env["ESTIBA_SQLITE_PATH"]) as db:  # what a dump would show
        stored = db.execute("SELECT password FROM images_app_registrylogin WHERE user_id = ?",
                            (user.pk,)).fetchone()[0]
    assert secret not in stored and stored.startswith("gAAAAA")
    assert registries.credentials_for(user, "127.0.0.1:5999/team/app:1") == {
        "username": "teacher", "password": secret}
    with override_settings(SECRET_KEY="a-new-key-" + "x" * 40), \
            pytest.raises(Unauthorized, match=r"can no longer be read .* save it again"):
        registries.credentials_for(user, "127.0.0.1:5999/team/app:1")


def test_passwords_saved_before_sealing_are_sealed(user):
    from images_app.models import RegistryLogin
    from images_app.sealing import seal_plain_rows, unseal

    row = RegistryLogin.objects.create(user=user, registry="127.0.0.1:5998", username="old",
                                       password="plain-old-password")
    assert seal_plain_rows(RegistryLogin) >= 1
    row.refresh_from_db()
    assert row.password != "plain-old-password" and unseal(row.password) == "plain-old-password"
    assert seal_plain_rows(RegistryLogin) == 0  # sealed once only
