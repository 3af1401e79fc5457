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
# This checkout was once installed as the distribution `agentd` (a name taken on PyPI): drop that install, or
# both would register the same plugins.
if "$PY" -m pip show agentd 2>/dev/null | grep -qx "Editable project location: $PWD"; then
  "$PY" -m pip uninstall -y -q agentd
fi
rm -rf agentd.egg-info  # that install's metadata: found from the checkout, it would register every plugin twice
# llama-cpp-python compiles from source; CMAKE_ARGS says for which CPU (see scripts/lib.sh).
export CMAKE_ARGS="${CMAKE_ARGS:-$(llama_cmake_args)}"
"$PY" -m pip install -q --disable-pip-version-check -e ".[image]"
ensure_llama_cpp
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
