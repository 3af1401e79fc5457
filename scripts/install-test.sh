#!/usr/bin/env bash
# Install everything the test suite needs, on top of scripts/install.sh (which it runs first):
#   - Debian packages the tests start themselves: searx (a real search engine on loopback), chromium (the
#     dashboard's browser tests drive it headless through Playwright; never `playwright install`), postgresql
#     (the tests start a throwaway cluster with initdb/pg_ctl for the shared journal);
#   - the `test` extra (pytest, schemathesis, HumanEval, an MCP server, llama.cpp's OpenAI-compatible server).
# A user who only runs goals never waits for these.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

./scripts/install.sh
source scripts/lib.sh
apt_install searx chromium postgresql
"$PY" -m pip install -q --disable-pip-version-check -e ".[image,test]"
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
