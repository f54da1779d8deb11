#!/usr/bin/env bash
# Set up everything estiba needs on a Debian 12 host. Idempotent: a second run
# installs nothing new and finishes in a second or two.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "estiba: setup must run as root (the engine runs containers)" >&2
    exit 1
fi

# 1. Debian packages
mapfile -t wanted < <(grep -v '^\s*#' scripts/apt-packages.txt | sed '/^\s*$/d')
missing=()
for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "estiba: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. The Python virtual environment
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=.venv/.estiba-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[test]'
    touch "$stamp"
fi

# 3. Django: database, translations, static files
if [ -f manage.py ]; then
    .venv/bin/python manage.py migrate --noinput -v 0
    if compgen -G "locale/*/LC_MESSAGES/django.po" >/dev/null; then
        .venv/bin/python manage.py compilemessages -v 0 --ignore=.venv
    fi
fi
