# Sourced by bin/dev, bin/test and bin/lock: make .venv from the lock file, hash-checked, and
# install notifier itself into it. Needs only Python 3.11+ on the machine. The venv is made
# anew whenever requirements-test.txt changes, so it holds exactly what the lock says.
set -euo pipefail
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "notifier needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
lock_stamp=".venv/.locked-$(sha256sum requirements-test.txt | cut -c1-16)"
project_stamp=".venv/.project-$(sha256sum pyproject.toml | cut -c1-16)"
if [ -x .venv/bin/python ] && [ ! -f "$lock_stamp" ]; then
  echo "requirements-test.txt changed: making .venv anew ..."
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv ..."
  "$PYTHON" -m venv .venv
fi
if [ ! -f "$lock_stamp" ]; then
  echo "Installing the locked dependencies into .venv ..."
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes \
    -r requirements-test.txt
  touch "$lock_stamp"
fi
if [ ! -f "$project_stamp" ]; then
  # Its dependencies all came from the lock above, and so did its build backend.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
    --no-build-isolation -e .
  rm -f .venv/.project-*
  touch "$project_stamp"
fi
