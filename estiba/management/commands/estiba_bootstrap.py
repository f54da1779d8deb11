"""``manage.py estiba_bootstrap``: what ``make run`` needs before serving. Idempotent.

- the base image ``busybox:latest`` (from Debian's busybox-static) when it is missing;
- an admin account: password from ``ESTIBA_ADMIN_PASSWORD``, else generated and
  printed once (a later run finds the account and prints nothing).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Make busybox:latest and the admin account if they are missing."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default=os.environ.get("ESTIBA_ADMIN_USER", "admin"))
        parser.add_argument("--skip-image", action="store_true")

    def handle(self, *args, username: str, skip_image: bool, **options) -> None:
        if not skip_image:
            self._busybox()
        self._admin(username)

    def _busybox(self) -> None:
        from engine import Engine, EngineConfig
        from engine.errors import ImageNotFound
        from engine.images.busybox import REFERENCE, ensure_busybox

        engine = Engine(config=EngineConfig(
            root=Path(settings.ESTIBA_ROOT), run_dir=Path(settings.ESTIBA_RUN_DIR),
            prefix=settings.ESTIBA_PREFIX))
        try:
            engine.images.resolve(REFERENCE)
            return
        except ImageNotFound:
            pass
        image = ensure_busybox(engine.images)
        self.stdout.write(f"estiba: made {REFERENCE} ({image.id[:19]})")

    def _admin(self, username: str) -> None:
        User = get_user_model()
        password = os.environ.get("ESTIBA_ADMIN_PASSWORD")
        user = User.objects.filter(username=username).first()
        if user is not None:
            if password and not user.check_password(password):
                user.set_password(password)
                user.save(update_fields=["password"])
                self.stdout.write(
                    f"estiba: password of {username!r} set from ESTIBA_ADMIN_PASSWORD")
            return
        generated = not password
        password = password or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        if generated:
            self.stdout.write(self.style.WARNING(
                f"estiba: created the admin account {username!r} with password: {password}\n"
                "        (shown only this once; set ESTIBA_ADMIN_PASSWORD to choose it)"))
        else:
            self.stdout.write(f"estiba: created the admin account {username!r}")
