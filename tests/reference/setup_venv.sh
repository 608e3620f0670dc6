#!/bin/sh
# The test-only Python environment that produces the golden files. Not needed
# by CI or by the tests themselves. llama-cpp-python builds llama.cpp from
# source (a few minutes on two cores).
set -eu
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install --quiet -r requirements.txt
echo "ready: tests/reference/.venv/bin/python tests/reference/make_golden.py"
