"""Every string of the UI is translated: Spanish and English catalogues complete.

Three checks, with gettext's own tools: no msgid of the Spanish catalogue is
left untranslated or fuzzy; ``makemessages`` run over a copy of the project
finds no msgid the catalogue lacks (a string marked in a template or in code
but never translated); and a page asked for in Spanish by the browser's
Accept-Language comes back in Spanish.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOCALE = REPO / "locale"
LANGS = ("es", "en")
SKIP_DIRS = {".venv", "node_modules", ".git", "test-artifacts", "staticfiles", "__pycache__",
             ".pytest_cache", ".ruff_cache", "vendor", "estiba.egg-info"}


def po(lang: str) -> Path:
    return LOCALE / lang / "LC_MESSAGES" / "django.po"


def msgids(path: Path) -> set[str]:
    """The msgids of a catalogue (obsolete entries left out), via msgattrib's output."""
    out = subprocess.run(["msgattrib", "--no-obsolete", "--no-wrap", str(path)],
                         capture_output=True, text=True, check=True).stdout
    ids, current, in_id = set(), [], False
    for line in out.splitlines():
        if line.startswith("msgid "):
            current, in_id = [line[6:]], True
        elif in_id and line.startswith('"'):
            current.append(line)
        else:
            if in_id:
                text = "".join(part.strip()[1:-1] for part in current)
                if text:
                    ids.add(text)
            in_id = False
    return ids


@pytest.fixture(scope="module", autouse=True)
def gettext_tools():
    if shutil.which("msgattrib") is None:
        pytest.skip("gettext is not installed (Debian package gettext)")


@pytest.mark.parametrize("lang", LANGS)
def test_the_catalogue_exists(lang):
    assert po(lang).is_file(), f"{po(lang)} is missing: run manage.py makemessages -l {lang}"


def test_every_spanish_string_is_translated_and_not_fuzzy():
    path = po("es")
    untranslated = msgids_of_filter(path, "--untranslated")
    fuzzy = msgids_of_filter(path, "--only-fuzzy")
    assert not untranslated, f"untranslated in {path}: {sorted(untranslated)[:40]}"
    assert not fuzzy, f"fuzzy in {path}: {sorted(fuzzy)[:40]}"


def msgids_of_filter(path: Path, flag: str) -> set[str]:
    out = subprocess.run(["msgattrib", flag, "--no-obsolete", "--no-wrap", str(path)],
                         capture_output=True, text=True, check=True).stdout
    tmp = path.parent / f".check{flag}.po"
    try:
        tmp.write_text(out)
        return msgids(tmp) if out.strip() else set()
    finally:
        tmp.unlink(missing_ok=True)


def test_the_catalogues_compile():
    for lang in LANGS:
        subprocess.run(["msgfmt", "--check-format", "-o", "/dev/null", str(po(lang))], check=True)


def _copy_sources(dest: Path) -> None:
    for item in REPO.iterdir():
        if item.name in SKIP_DIRS or item.name.startswith("."):
            continue
        if item.is_dir():
            shutil.copytree(item, dest / item.name, symlinks=True,
                            ignore=shutil.ignore_patterns(*SKIP_DIRS, "*.mo", "*.png"))
        else:
            shutil.copy2(item, dest / item.name)


def test_makemessages_finds_no_new_string(tmp_path):
    """A string marked for translation but missing from the catalogue fails here."""
    _copy_sources(tmp_path)
    out = subprocess.run(
        [sys.executable, "manage.py", "makemessages", "-l", "es", "--no-obsolete",
         "--ignore=.venv/*", "--ignore=node_modules/*", "--ignore=static/vendor/*",
         "--ignore=tests/*", "--ignore=test-artifacts/*"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    fresh = msgids(tmp_path / "locale" / "es" / "LC_MESSAGES" / "django.po")
    missing = fresh - msgids(po("es"))
    assert not missing, f"strings marked but not in locale/es: {sorted(missing)[:40]}"


def test_a_spanish_browser_gets_spanish_pages(client):
    mo = po("es").with_suffix(".mo")  # as compilemessages (scripts/setup.sh) makes it
    if not mo.exists() or mo.stat().st_mtime < po("es").stat().st_mtime:
        subprocess.run(["msgfmt", "--check-format", "-o", str(mo), str(po("es"))], check=True)
    from django.utils import translation

    with translation.override("es"):
        spanish = translation.gettext("Log in")
    assert spanish != "Log in"
    page = client.get("/login/", HTTP_ACCEPT_LANGUAGE="es-ES,es;q=0.9")
    assert page.status_code == 200
    assert spanish in page.content.decode()
    assert re.search(r'<html lang="es"', page.content.decode())
    english = client.get("/login/", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")
    assert "Log in" in english.content.decode()
