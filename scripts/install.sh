#!/usr/bin/env bash
# Install what `agentd goal` needs, idempotently (a second run only checks):
#   - Debian's bubblewrap (the strong code sandbox), when apt-get is here and we are root;
#   - torch pinned to 2.13.0 (the CPU wheel on these machines; any other version pulls GBs of CUDA wheels);
#   - agentd itself, editable, with the image extra. llama-cpp-python compiles from source the first time:
#     that takes a few minutes.
# What only the tests need (servers, a browser, test libraries) is in scripts/install-test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

source scripts/lib.sh
apt_install bubblewrap
"$PY" -m pip install -q --disable-pip-version-check "torch==2.13.0"
"$PY" -m pip install -q --disable-pip-version-check -e ".[image]"
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
