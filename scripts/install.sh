#!/usr/bin/env bash
# Install agentd and everything it needs, idempotently (a second run only checks):
#   - Debian packages, when apt-get is here and we are root: bubblewrap (the code sandbox), searx (the real
#     search engine the web tests run on loopback);
#   - torch pinned to 2.13.0 (the CPU wheel on these machines; any other version pulls GBs of CUDA wheels);
#   - agentd itself, editable, with the image and test extras. llama-cpp-python compiles from source the first
#     time: that takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  missing=""
  for pkg in bubblewrap searx; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
  done
  if [ -n "$missing" ]; then
    echo "installing Debian packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
  fi
else
  echo "note: not root or no apt-get: install bubblewrap (strong code sandbox) and searx (web tests) yourself" >&2
fi

"$PY" -m pip install -q --disable-pip-version-check "torch==2.13.0"
"$PY" -m pip install -q --disable-pip-version-check -e ".[image,test]"
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
