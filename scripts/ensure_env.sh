#!/usr/bin/env bash
# Create (once) or reuse the project's virtual environment and print its path.
# The venv lives outside the checkout, keyed by a hash of the dependency pins, so clean clones and CI
# runs reuse the ~8 GB install until a pin changes. Override the location with PLAID_VENV_ROOT.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
python_bin="${PLAID_PYTHON:-python3.11}"
command -v "$python_bin" >/dev/null 2>&1 || python_bin=python3
key="$( (cat "$here/requirements.txt" "$here/requirements-dev.txt" "$here/constraints.txt"; "$python_bin" -V) \
        | sha256sum | cut -c1-16)"
root="${PLAID_VENV_ROOT:-$HOME/.cache/plaid/venvs}"
venv="$root/$key"
if [ ! -f "$venv/.complete" ]; then
  echo "Creating the PLAID environment in $venv (first run only; several GB)..." >&2
  rm -rf "$venv"
  mkdir -p "$root"
  "$python_bin" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
  "$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt" -r "$here/requirements-dev.txt" \
      -c "$here/constraints.txt" >&2
  touch "$venv/.complete"
fi
"$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e "$here" >&2 2>/dev/null \
  || "$venv/bin/python" -m pip install --quiet --no-deps -e "$here" >&2
echo "$venv"
