# cli_lib.sh — sourced by every tests/cli/*.sh (run from the repository root
# by tests/run_tests.sh): the binary and model under test, a scratch folder
# removed on exit, and check counting.
#
#   . tests/cli_lib.sh
#   ok "what held"; fail "what did not"
#   finish "store"      # last line: a summary, exit 1 if any check failed
set -u
KVZ=${KVZ_BIN:-build/kvz}
MODEL=${KVZ_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
finish() {
    if [ "$fails" -eq 0 ]; then
        echo "all $1 checks passed"
    else
        echo "$fails $1 check(s) failed"
        exit 1
    fi
}
