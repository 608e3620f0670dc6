# fuzz.mk — libFuzzer targets for the decoders of untrusted input (included by
# the Makefile). Every tests/fuzz/fuzz_NAME.c is a target: build-fuzz/fuzz_NAME,
# seeded from tests/fuzz/corpus/NAME/. See tests/fuzz/README.md.
#
#   make fuzz                  build every target, fuzz each for FUZZ_SECONDS (60)
#   make fuzz-smoke            the same for 10 seconds each (CI)
#   make fuzz-build            only build
#   make fuzz FUZZ_TARGETS=gguf FUZZ_SECONDS=600     one target, longer
#
# Needs clang (Debian clang-14), libclang-rt-14-dev (the libFuzzer and
# sanitizer runtimes) and libomp-14-dev (clang's omp.h and libomp for
# -fopenmp): scripts/setup.sh installs them.

FUZZ_CC ?= clang
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_RSS_MB ?= 2048
FUZZ_TIMEOUT ?= 10
FUZZ_FLAGS ?=
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_ALL := $(patsubst tests/fuzz/fuzz_%.c,%,$(FUZZ_SRCS))
FUZZ_TARGETS ?= $(FUZZ_ALL)
FUZZ_BINS := $(patsubst %,$(FUZZ_BUILD)/fuzz_%,$(FUZZ_ALL))

# The library is compiled as by the Makefile (same sources, includes and
# packages) but by clang, with coverage for libFuzzer (fuzzer-no-link) and
# ASan + UBSan; -fopenmp keeps the kernels' omp.h and omp_* calls building
# (with clang that is libomp: libomp-14-dev).
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -fopenmp -fPIC -g -O1 $(WARN) -Iinclude -I. $(PKG_CFLAGS) -MMD -MP
FUZZ_LIB_OBJS := $(patsubst %.c,$(FUZZ_BUILD)/%.o,$(LIB_SRCS))
FUZZ_LIB := $(FUZZ_BUILD)/libkvz-fuzz.a

.PHONY: fuzz fuzz-smoke fuzz-build fuzz-clean
fuzz-build: $(FUZZ_BINS)

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_LIB): $(FUZZ_LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIB)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer $< $(FUZZ_LIB) -fopenmp $(LDLIBS) -o $@

# Each target runs on a copy of its seeds (new inputs land in
# $(FUZZ_BUILD)/corpus/NAME, crashes in $(FUZZ_BUILD)/crashes/NAME); one
# process at a time. Fails when any target crashed, after running them all.
fuzz: fuzz-build
	@fail=0; \
	for t in $(FUZZ_TARGETS); do \
	  work=$(FUZZ_BUILD)/corpus/$$t; out=$(FUZZ_BUILD)/crashes/$$t; log=$(FUZZ_BUILD)/fuzz_$$t.log; \
	  rm -rf $$work $$out; mkdir -p $$work $$out; \
	  if [ -d tests/fuzz/corpus/$$t ]; then cp tests/fuzz/corpus/$$t/* $$work/ 2>/dev/null; fi; \
	  echo "fuzz $$t: $(FUZZ_SECONDS) s on $$(ls $$work | wc -l) seeds"; \
	  OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive $(FUZZ_BUILD)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) \
	    -rss_limit_mb=$(FUZZ_RSS_MB) -timeout=$(FUZZ_TIMEOUT) -print_final_stats=1 \
	    -artifact_prefix=$$out/ $(FUZZ_FLAGS) $$work >$$log 2>&1; rc=$$?; \
	  execs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $$log | tail -1); \
	  rate=$$(sed -n 's/^stat::average_exec_per_sec: *//p' $$log | tail -1); \
	  crashes=$$(ls $$out | wc -l); \
	  echo "fuzz $$t: $${execs:-?} executions ($${rate:-?}/s), corpus $$(ls $$work | wc -l) inputs, exit $$rc, $$crashes crash file(s)"; \
	  if [ $$rc -ne 0 ] || [ $$crashes -ne 0 ]; then \
	    fail=1; echo "fuzz $$t: CRASHED (log $$log):"; ls $$out | sed 's/^/  /'; \
	    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' $$log | head -5 | sed 's/^/  /'; \
	  fi; \
	done; \
	[ $$fail -eq 0 ] && echo "fuzz: no crashes" || { echo "fuzz: some target crashed" >&2; exit 1; }

fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=10

fuzz-clean:
	rm -rf $(FUZZ_BUILD)

clean: fuzz-clean

# Only a make that builds the fuzz targets reads their dependency files:
# under make check another part may be writing them while a make starts.
ifneq ($(filter fuzz fuzz-build fuzz-smoke $(FUZZ_BUILD)/%,$(MAKECMDGOALS)),)
-include $(FUZZ_LIB_OBJS:.o=.d) $(FUZZ_BINS:=.d)
endif
