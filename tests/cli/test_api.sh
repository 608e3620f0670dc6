#!/bin/sh
# The public API as a user gets it: `make install` into a prefix, the C example
# built with pkg-config (shared and static), the Python binding and rag.py.
# Needs KVZ_BIN and KVZ_MODEL; KVZ_SANITIZE=1 when the build is sanitized.
. tests/cli_lib.sh
BUILD=$(dirname "$KVZ")

SAN=""
if [ "${KVZ_SANITIZE:-0}" = 1 ]; then
    SAN="-fsanitize=address,undefined"
    # python is not built with ASan: the runtime must come first
    PY_PRELOAD="$(cc -print-file-name=libasan.so) $(cc -print-file-name=libubsan.so)"
    export ASAN_OPTIONS=detect_leaks=0
fi

mkdir -p "$TMP/docs"
cat >"$TMP/docs/bridge.txt" <<'DOC'
The Vellmar Bridge

The Vellmar bridge crosses the river Oske at the town of Harnau. It was opened on 3 June 1904 by the engineer Clara Hobbs, who had designed it. The bridge is 212 metres long and has seven stone arches. Trams crossed it until 1961.
DOC
cat >"$TMP/docs/orchard.txt" <<'DOC'
The Linden Orchard

The Linden orchard grows forty kinds of apple. Its oldest tree, a Reinette planted in 1822, still gives fruit every second year. The orchard is kept by the Morrow family, and the harvest festival is held on the last Saturday of September.
DOC
# full 16-bit caches: this tests the API, not what eviction costs
"$KVZ" compile "$TMP/docs" --store "$TMP/store" --model "$MODEL" --method full --bits 16 --quiet \
    && ok "compile the test store" || fail "compile"
# both texts as one document in segments of 100 tokens at most (a compile reserve of
# the context less the prefix and 100)
mkdir -p "$TMP/long"
cat "$TMP/docs/bridge.txt" "$TMP/docs/orchard.txt" >"$TMP/long/both.txt"
"$KVZ" compile "$TMP/long/both.txt" --store "$TMP/segments" --model "$MODEL" --method full --bits 16 --reserve 8050 \
    --quiet && ok "compile a document in segments" || fail "compile in segments"
# the same document in two forms cut differently: segments of 100 tokens at most, then of 70
"$KVZ" compile "$TMP/long/both.txt" --store "$TMP/forms" --model "$MODEL" --method full --bits 16 --reserve 8050 --quiet &&
sleep 1 && # the newest form (the default) is told by its second of compiling: a tie goes by the ids
"$KVZ" compile "$TMP/long/both.txt" --store "$TMP/forms" --model "$MODEL" --method full --bits 8 --reserve 8080 --quiet &&
    ok "compile a document in two forms" || fail "compile in two forms"

# a distribution's hardening flags (dpkg-buildflags, Fedora's, Ubuntu's compiler by default)
# with a MARCH beyond the baseline: _FORTIFY_SOURCE's inline wrappers are built for MARCH and
# GCC would not inline them into the functions compiled for the baseline (KVZ_BASELINE), and
# stopped there. The files holding those, compiled as a package would (a build of their own)
if [ "$(uname -m)" = x86_64 ]; then
    objs=$(grep -rl --include='*.c' KVZ_BASELINE common kernels format model compiler runtime eval tools | sed "s|^|$TMP/hardened/|; s|\.c\$|.o|")
    # shellcheck disable=SC2086
    MAKEFLAGS= make --no-print-directory -s BUILD="$TMP/hardened" MARCH=x86-64-v3 CPPFLAGS=-D_FORTIFY_SOURCE=3 \
        CFLAGS='-O2 -fstack-protector-strong -Wformat -Werror=format-security' $objs >"$TMP/hardened.log" 2>&1 &&
        ok "hardening flags build the baseline functions ($(echo $objs | wc -w) files)" ||
        { fail "the baseline functions do not build under _FORTIFY_SOURCE"; head -20 "$TMP/hardened.log"; }
fi

# (install-built: what the build folder holds, whatever flags made it; MAKEFLAGS=: not the jobserver
# of a make check that runs this test)
MAKEFLAGS= make --no-print-directory -s install-built BUILD="$BUILD" PREFIX="$TMP/prefix" SANITIZE="${KVZ_SANITIZE:-0}" \
    >"$TMP/install.log" 2>&1 \
    && [ -f "$TMP/prefix/include/kvz.h" ] && [ -x "$TMP/prefix/bin/kvz" ] && [ -f "$TMP/prefix/lib/libkvz.a" ] \
    && [ -L "$TMP/prefix/lib/libkvz.so" ] && ok "make install PREFIX=" || { fail "make install"; cat "$TMP/install.log"; }
export PKG_CONFIG_PATH="$TMP/prefix/lib/pkgconfig"
# the version kvz.h says, which every other place that names one must say too
VERSION=$(sed -n 's/^#define KVZ_VERSION_STRING "\(.*\)"$/\1/p' include/kvz.h)
[ "$(pkg-config --modversion kvz)" = "$VERSION" ] && ok "pkg-config finds kvz" || fail "pkg-config --modversion kvz"
# the version's numbers say what its string says (KVZ_VERSION_PATCH stayed 6 through 0.3.7)
numbers=$(sed -n 's/^#define KVZ_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$/\2/p' include/kvz.h | paste -sd.)
[ "$numbers" = "$VERSION" ] && ok "KVZ_VERSION_MAJOR.MINOR.PATCH is KVZ_VERSION_STRING" || fail "version numbers: $numbers"
readelf -d "$TMP/prefix/lib/libkvz.so" | grep -q 'Library soname: \[libkvz.so.0.3\]' &&
    ok "the soname carries 0.x's minor version" || fail "soname: $(readelf -d "$TMP/prefix/lib/libkvz.so" | grep SONAME)"

# only the API is exported from the shared library: exactly kvz.h's KVZ_API functions, no
# other symbol of any kind (OpenMP's locks, CUDA's template instances, an internal kvz_ one)
# and no undefined one its dependencies do not define
sed -n 's/^KVZ_API .*[ *]\(kvz_[a-z0-9_]*\)(.*/\1/p' include/kvz.h | sort >"$TMP/api-names"
nm -D --defined-only "$TMP/prefix/lib/libkvz.so" | awk 'NF == 3 {print $3}' | sort >"$TMP/exported-names"
unresolved=$(ldd -r "$TMP/prefix/lib/libkvz.so" 2>&1 | grep -c 'undefined symbol')
[ -f "$TMP/prefix/lib/libkvz.so" ] && [ -s "$TMP/api-names" ] && cmp -s "$TMP/api-names" "$TMP/exported-names" &&
    [ "$unresolved" -eq 0 ] && ok "libkvz.so exports only kvz.h ($(wc -l <"$TMP/api-names") functions)" ||
    fail "libkvz.so's exports differ from kvz.h's: $(diff "$TMP/api-names" "$TMP/exported-names" | grep '^[<>]' | head -5 | tr '\n' ' '); $unresolved undefined"

Q="Who opened the Vellmar bridge?"
# built as the README says: the installed library found through the rpath, no LD_LIBRARY_PATH
# shellcheck disable=SC2046
if cc $SAN examples/ask.c $(pkg-config --cflags --libs kvz) -Wl,-rpath,$(pkg-config --variable=libdir kvz) \
    -o "$TMP/ask_shared" 2>"$TMP/cc.log"; then
    "$TMP/ask_shared" "$TMP/store" "$MODEL" "$TMP/docs/bridge.txt" -- "$Q" >"$TMP/out1" 2>"$TMP/err1"
    rc=$?
    [ $rc -eq 0 ] && grep -q "Clara Hobbs" "$TMP/out1" && grep -q "2 document(s)" "$TMP/out1" \
        && ok "C example, shared library: lists documents, streams the answer" \
        || { fail "C example (shared) exit $rc"; cat "$TMP/out1" "$TMP/err1"; }
    "$TMP/ask_shared" "$TMP/store" "$MODEL" "$TMP/docs/none.txt" -- "$Q" >/dev/null 2>"$TMP/err2"
    rc=$?
    [ $rc -eq 1 ] && grep -q "none.txt" "$TMP/err2" && ok "C example: a missing document is a clear error" \
        || { fail "C example missing doc: exit $rc"; cat "$TMP/err2"; }
else
    fail "C example does not build against the installed kvz"; cat "$TMP/cc.log"
fi
# static libkvz, shared system libraries (a fully static link needs every
# library's static archive, e.g. libarchive's -lacl -llz4)
# shellcheck disable=SC2046
if cc $SAN -fopenmp examples/ask.c $(pkg-config --cflags kvz) "$TMP/prefix/lib/libkvz.a" \
      $(pkg-config --libs $(pkg-config --print-requires-private kvz)) -lmvec -lm -lpthread \
      -o "$TMP/ask_static" 2>"$TMP/cc.log"; then
    "$TMP/ask_static" "$TMP/store" "$MODEL" "$TMP/docs/bridge.txt" -- "How long is the bridge?" >"$TMP/out3" 2>&1 \
        && grep -q "212" "$TMP/out3" && ok "C example, static library" || { fail "C example (static)"; cat "$TMP/out3"; }
else
    fail "C example does not link statically"; cat "$TMP/cc.log"
fi

if KVZ_LIBRARY="$TMP/prefix/lib/libkvz.so" LD_PRELOAD="${PY_PRELOAD:-}" \
    python3 tests/api/test_binding.py "$TMP/store" "$MODEL" "$TMP/docs" "$TMP/segments" "$TMP/forms" >"$TMP/py.log" 2>&1; then
    ok "python binding and examples/rag.py ($(grep -c '^ok' "$TMP/py.log") checks)"
else
    fail "python binding"; cat "$TMP/py.log"
fi
# the binding installed as a package (python/pyproject.toml; pip fetches setuptools to build it),
# used from elsewhere with the installed library found on the loader's path; its version is the header's
cp -r python "$TMP/pysrc" # (setuptools writes its build/ and egg-info beside the sources)
if python3 -m pip install -q --no-deps --target "$TMP/site" "$TMP/pysrc" >"$TMP/pip.log" 2>&1 &&
    (cd "$TMP" && LD_LIBRARY_PATH="$TMP/prefix/lib" LD_PRELOAD="${PY_PRELOAD:-}" PYTHONPATH="$TMP/site" python3 -c \
        'import kvz; print(kvz.__version__, kvz.library_version(), kvz.__file__)') >"$TMP/pyv" 2>&1 &&
    grep -q "^$VERSION $VERSION $TMP/site/kvz/__init__.py" "$TMP/pyv"; then
    ok "pip install python/: the package loads the installed libkvz ($VERSION)"
elif grep -q "satisfies the requirement setuptools\|No matching distribution found for setuptools" "$TMP/pip.log"; then
    echo "note: pip reaches no package index for setuptools here (offline): pip install python/ not tried"
else
    fail "pip install python/"; cat "$TMP/pip.log" "$TMP/pyv" 2>/dev/null
fi
# as a distribution splits it: the runtime package holds libkvz.so.0.3 and no libkvz.so, and
# another version's runtime (its own soname) may be installed beside it, first on the path
mkdir -p "$TMP/runtime" "$TMP/other"
cp "$TMP/prefix/lib/libkvz.so.$VERSION" "$TMP/runtime/" && ln -s "libkvz.so.$VERSION" "$TMP/runtime/libkvz.so.0.3"
printf '%s\n' 'const char *kvz_version(void) { return "0.99.0"; }' 'const char *kvz_strerror(int s) { return ""; }' \
    'const char *kvz_last_error(void) { return ""; }' >"$TMP/other.c"
cc -shared -fPIC -Wl,-soname,libkvz.so.0.99 "$TMP/other.c" -o "$TMP/other/libkvz.so.0.99" &&
    ln -s libkvz.so.0.99 "$TMP/other/libkvz.so"
# and the binding outside a checkout looks in no build folder two levels up ($TMP/pysrc/kvz/../../build),
# even with a checkout's kvz.h and python/kvz/__init__.py put there (anyone may, in /tmp)
mkdir -p "$TMP/build" "$TMP/include" "$TMP/python/kvz" && cp "$TMP/other/libkvz.so.0.99" "$TMP/build/libkvz.so" &&
    touch "$TMP/include/kvz.h" "$TMP/python/kvz/__init__.py"
if (cd "$TMP" && LD_LIBRARY_PATH="$TMP/other:$TMP/runtime" LD_PRELOAD="${PY_PRELOAD:-}" PYTHONPATH="$TMP/pysrc" \
    python3 -c 'import kvz; print(kvz.library_version())') >"$TMP/pyrt" 2>&1 && [ "$(cat "$TMP/pyrt")" = "$VERSION" ]; then
    ok "the binding loads its own soname (libkvz.so.0.3), not another version installed beside it nor ../../build's"
else
    fail "the binding with libkvz.so.0.3 installed, 0.99 beside it and in ../../build: $(tail -1 "$TMP/pyrt")"
fi
finish API
