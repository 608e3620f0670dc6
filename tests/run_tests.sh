#!/bin/sh
# Run each test executable given, report each result, fail if any failed.
# Tests run from the repository root (they read tests/golden and tests/data).
failed=""
passed=0
for t in "$@"; do
    case "$t" in
        *.sh) runner="sh" ;;
        *) runner="" ;;
    esac
    printf '== %s\n' "$t"
    if $runner "$t"; then
        passed=$((passed + 1))
    else
        failed="$failed $t"
    fi
done
if [ -n "$failed" ]; then
    printf '\nFAILED:%s\n' "$failed"
    exit 1
fi
printf '\nall %d test programs passed\n' "$passed"
