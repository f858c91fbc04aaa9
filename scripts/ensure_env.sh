#!/usr/bin/env bash
# Create (once) or reuse the project's virtual environment and print its path.
# The venv lives outside the checkout, keyed by a hash of the dependency pins, so clean clones and CI
# runs reuse the ~8 GB install until a pin changes. Override the location with PLAID_VENV_ROOT.
# Builds and the editable install run under a lock, so concurrent callers never remove a venv another
# one is building or using. Tests do not rely on the editable install: they put their own checkout's
# lib/ on PYTHONPATH (tests/conftest.py), so a venv shared by several checkouts tests the right code.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
python_bin="${PLAID_PYTHON:-python3.11}"
command -v "$python_bin" >/dev/null 2>&1 || python_bin=python3
key="$( (cat "$here/requirements.txt" "$here/requirements-dev.txt" "$here/constraints.txt"; "$python_bin" -V) \
        | sha256sum | cut -c1-16)"
root="${PLAID_VENV_ROOT:-$HOME/.cache/plaid/venvs}"
venv="$root/$key"
mkdir -p "$root"
exec 9>"$root/$key.lock"
flock 9
if [ ! -f "$venv/.complete" ]; then
  echo "Creating the PLAID environment in $venv (first run only; several GB)..." >&2
  rm -rf "$venv"
  "$python_bin" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
  "$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt" -r "$here/requirements-dev.txt" \
      -c "$here/constraints.txt" >&2
  touch "$venv/.complete"
fi
"$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e "$here" >&2 2>/dev/null \
  || "$venv/bin/python" -m pip install --quiet --no-deps -e "$here" >&2
flock -u 9
echo "$venv"
