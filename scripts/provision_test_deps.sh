#!/usr/bin/env bash
# What the test suite needs beyond the virtual environment, provisioned once (called by `make test`):
#   - Orthanc with its DICOMweb plugin and Chromium (Debian packages orthanc, orthanc-dicomweb, chromium),
#     installed with apt-get when this runs as root on a Debian-like system;
#   - the OHIF production build, fetched once with `npm pack` into ~/.cache/plaid/ohif (plaid_dev.ohif).
# When something is missing and cannot be installed here, it stops and says what to install and how.
# Usage: scripts/provision_test_deps.sh VENV
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:?usage: $0 VENV (the path scripts/ensure_env.sh prints)}"

packages=(orthanc orthanc-dicomweb chromium)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} (Debian packages the PACS tests need)" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  else
    echo "error: the PACS and browser tests need the Debian packages: ${missing[*]}" >&2
    echo "install them, then run make test again:  sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

if ! PYTHONPATH=lib:scripts "$venv/bin/python" - <<'PY'
import sys

from plaid_dev.ohif import OhifUnavailable, ensure_ohif

try:
    ensure_ohif(offline=False)
except (OhifUnavailable, OSError) as exc:
    print(f"error: the OHIF browser test needs the OHIF build: {exc}", file=sys.stderr)
    print("install Node.js and npm (sudo apt-get install npm) and run make test again", file=sys.stderr)
    sys.exit(1)
PY
then
  exit 1
fi

# A full test run needs about 3 GB of scratch space under the temp folder at its peak (pytest keeps only the
# folders of tests that failed, see pyproject.toml); say so up front rather than fail mid-run on a full disk.
scratch="${TMPDIR:-/tmp}"
free_gb=$(( $(df -Pk "$scratch" | awk 'NR == 2 {print $4}') / 1048576 ))
if (( free_gb < 8 )); then
  echo "warning: only ${free_gb} GB free under $scratch; the test run may stop with 'No space left on device'" >&2
fi
