# kvz — one plain Makefile.
#
#   make            library + the kvz command          (build/)
#   make test       unit, golden and integration tests (needs scripts/setup.sh once)
#   make asan       the same tests under ASan + UBSan  (build-asan/)
#   make check      test + asan + cuda + test-cudasim-quick + test-cudasim-asan +
#                   test-cudasim-race + fuzz-smoke + clang, side by side: what CI runs
#   make clang      the unit tests built by clang for any x86-64 (build-clang/:
#                   another compiler, and the kernels' plain-C paths, not AVX2's)
#   make fuzz       libFuzzer targets for every decoder of untrusted input (clang; tests/fuzz/)
#   make valgrind   compile, query and the store commands under valgrind memcheck
#   make cuda       compile the CUDA backend with nvcc (build-cuda/; links, runs nowhere here)
#   make test-cuda  CUDA kernels against their CPU twins (needs an NVIDIA GPU)
#   make test-cudasim  the same CUDA tests with CUDA emulated on the CPU (build-sim/;
#                   tests/cudasim/cudasim.h: logic, not speed; no GPU needed; long)
#   make test-cudasim-quick  its kernel and forward-pass tests (minutes; in check)
#   make test-cudasim-asan   its tests on random-weight models under ASan + UBSan,
#                   blocks and threads in reverse order (races show; in check)
#   make test-cudasim-race   its tests on random-weight models with ThreadSanitizer
#                   watching each block's threads (a missing barrier fails; in check)
#   make demo       compile examples/corpus into a store, inspect it, answer a question
#   make bench      engine and compile benchmarks beside llama.cpp (bench/RESULTS.md)
#   make install    kvz, libkvz.a, libkvz.so, kvz.h and kvz.pc under PREFIX (make uninstall)
#   make install-built  the same, of what BUILD holds as it was built (a package's install
#                   step: install with other flags, or without MARCH, would rebuild it first)
#   make help       this list
#
# Variables: BUILD (output folder), SANITIZE=1 (or thread: cudasim-race), CUDA=1, CUDASIM=1,
#            MARCH (default native: this machine's CPU; a package for other machines wants
#            x86-64-v3, which keeps the AVX2 kernels, or x86-64), CC, CFLAGS, CPPFLAGS and
#            LDFLAGS (added after kvz's own: -O2 there overrides -O3), EXTRA_LDFLAGS,
#            PREFIX (/usr/local), BINDIR, LIBDIR, INCLUDEDIR, PKGCONFIGDIR, DESTDIR.
# A build folder remembers the flags it was built with: changing any rebuilds it.

BUILD ?= build
VERSION := $(shell sed -n 's/^#define KVZ_VERSION_STRING "\(.*\)"/\1/p' include/kvz.h)
VERSION_MAJOR := $(firstword $(subst ., ,$(VERSION)))
CC ?= gcc
MARCH ?= native
MODEL ?= models/SmolLM2-135M-Instruct.Q4_1.gguf

# The library is the bottom four layers plus compiler/runtime; tools link it.
LIB_DIRS := common kernels kernels/cpu format model compiler runtime eval
LIB_SRCS := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c))
TOOL_SRCS := $(wildcard tools/*.c)
TEST_SRCS := $(wildcard tests/unit/test_*.c)
CUDA_SRCS := $(wildcard kernels/cuda/*.cu)
CUDA_TEST_SRCS := $(wildcard tests/cuda/test_*.c)

PKGS := openblas libpcre2-8 libxxhash libzstd lmdb libarchive jansson
# the libraries pkg-config cannot find: a build stops at once naming them (with
# none of their flags, it would fail later at a missing header or symbol)
PKGS_MISSING := $(shell command -v pkg-config >/dev/null || echo pkg-config; \
  for p in $(PKGS); do pkg-config --exists $$p 2>/dev/null || echo $$p; done)
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
TEST_CFLAGS := $(shell pkg-config --cflags cmocka 2>/dev/null)
TEST_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

WARN := -Wall -Wextra -Wshadow -Wno-unused-parameter -Wstrict-prototypes -Wmissing-prototypes
# kvz's own flags (KVZ_*); the caller's CPPFLAGS, CFLAGS and LDFLAGS follow them.
# -fPIC: the same objects make libkvz.a and libkvz.so; hidden visibility: the
# shared library exports only what include/kvz.h marks KVZ_API. The build
# folder's path is kept out of the objects (the same source builds the same
# bytes wherever it is checked out).
KVZ_CFLAGS := -std=c11 -D_GNU_SOURCE -fopenmp -fPIC -fvisibility=hidden $(WARN) -Iinclude -I. $(PKG_CFLAGS) -MMD -MP \
              -ffile-prefix-map=$(CURDIR)=.
LDLIBS := $(PKG_LIBS) -lmvec -lm -lpthread

ifeq ($(SANITIZE),1)
# -march as in the plain build: the sanitizers check the AVX2 kernels that run,
# not only their plain-C fallbacks
KVZ_CFLAGS += -O1 -g -march=$(MARCH) -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
KVZ_LDFLAGS := -fsanitize=address,undefined
else
KVZ_CFLAGS += -O3 -g -march=$(MARCH) -DNDEBUG
endif
KVZ_LDFLAGS += -fopenmp $(EXTRA_LDFLAGS)
ALL_CFLAGS = $(KVZ_CFLAGS) $(CPPFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(KVZ_LDFLAGS) $(LDFLAGS)

ifeq ($(CUDA),1)
NVCC ?= nvcc
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(shell which $(NVCC)))
# the oldest of them is the oldest GPU kvz starts on (backend_cuda.cu reads nvcc's __CUDA_ARCH_LIST__)
CUDA_ARCHS := -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
              -gencode arch=compute_90,code=compute_90
NVCCFLAGS := -O3 -std=c++17 $(CUDA_ARCHS) -Iinclude -I. -Xcompiler -fPIC,-Wall,-fvisibility=hidden --expt-relaxed-constexpr -MMD -MP
KVZ_CFLAGS += -DKVZ_WITH_CUDA
LDLIBS += -L$(CUDA_HOME)/lib64 -L$(CUDA_HOME)/targets/x86_64-linux/lib -lcublas -lcudart -lstdc++
CUDA_OBJS := $(patsubst %.cu,$(BUILD)/%.o,$(CUDA_SRCS))
endif

# The CUDA backend on the CPU emulation of CUDA: the .cu files rewritten as C++
# (tests/cudasim/cu2cpp.py) and built against tests/cudasim's headers.
ifeq ($(CUDASIM),1)
CXX ?= g++
SIM_CXXFLAGS := -std=c++17 -O2 -mf16c -g -fPIC -Wall -Wno-unused-parameter -Wno-unknown-pragmas -Wno-sign-compare -Itests/cudasim/include -Iinclude -I. \
                -include tests/cudasim/cudasim.h $(PKG_CFLAGS) -MMD -MP
ifeq ($(SANITIZE),1)
SIM_CXXFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif
# The race check: the kernels under ThreadSanitizer, the emulation itself not
# (tests/cudasim/cudasim.cpp says why), the rest of kvz uninstrumented.
ifeq ($(SANITIZE),thread)
SIM_CXXFLAGS += -DKVZ_SIM_TSAN
SIM_KERNEL_FLAGS := -fsanitize=thread -fno-omit-frame-pointer
KVZ_CFLAGS += -DKVZ_CUDASIM_RACE
KVZ_LDFLAGS += -fsanitize=thread
endif
KVZ_CFLAGS += -DKVZ_WITH_CUDA -DKVZ_CUDASIM
LDLIBS += -lstdc++
CUDA_OBJS := $(patsubst %.cu,$(BUILD)/%.o,$(CUDA_SRCS)) $(BUILD)/tests/cudasim/cudasim.o
endif

LIB_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRCS)) $(CUDA_OBJS)
TOOL_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(TOOL_SRCS))
TEST_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(TEST_SRCS))
CUDA_TEST_BINS := $(patsubst tests/cuda/%.c,$(BUILD)/tests/cuda/%,$(CUDA_TEST_SRCS))
LIB := $(BUILD)/libkvz.a
# before 1.0 a minor version may change the API: its number is in the soname, so that a
# program linked against 0.1 is refused by 0.2's loader instead of calling it wrongly
SO_NAME := libkvz.so.$(VERSION_MAJOR)$(if $(filter 0,$(VERSION_MAJOR)),.$(word 2,$(subst ., ,$(VERSION))))
SO := $(BUILD)/libkvz.so
KVZ := $(BUILD)/kvz
PC := $(BUILD)/kvz.pc
BENCH_BINS := $(BUILD)/bench/sessions
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
# Every flag a build folder's files were made with: rewritten when one changes
# (make's next look at it finds it newer than what it made), never otherwise.
FLAGS := $(BUILD)/build-flags

.PHONY: all test asan check check-parts clang cuda test-cuda cudasim test-cudasim test-cudasim-quick cudasim-asan test-cudasim-asan cudasim-race test-cudasim-race demo bench clean setup install install-built uninstall help valgrind FORCE
all: $(KVZ) $(SO) $(PC) $(BENCH_BINS)

$(FLAGS): FORCE
	@if [ -n '$(PKGS_MISSING)' ]; then echo 'missing: $(PKGS_MISSING) (as pkg-config names them):' \
	  'install the development packages (sh scripts/setup.sh does)' >&2; exit 1; fi
	@mkdir -p $(dir $@)
	@printf '%s\n' 'CC=$(CC)' 'CFLAGS=$(ALL_CFLAGS)' 'LDFLAGS=$(ALL_LDFLAGS)' 'LDLIBS=$(LDLIBS)' \
	  'NVCC=$(NVCC) $(NVCCFLAGS)' 'CXX=$(CXX) $(SIM_CXXFLAGS) $(SIM_KERNEL_FLAGS)' >$@.tmp
	@cmp -s $@.tmp $@ && rm $@.tmp || mv $@.tmp $@

$(BUILD)/%.o: %.c $(FLAGS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

ifeq ($(CUDASIM),1)
$(BUILD)/%.o: %.cu tests/cudasim/cu2cpp.py $(FLAGS)
	@mkdir -p $(dir $@)
	python3 tests/cudasim/cu2cpp.py $< >$(@:.o=.sim.cpp)
	$(CXX) $(SIM_CXXFLAGS) $(SIM_KERNEL_FLAGS) -c $(@:.o=.sim.cpp) -o $@

$(BUILD)/tests/cudasim/cudasim.o: tests/cudasim/cudasim.cpp $(FLAGS)
	@mkdir -p $(dir $@)
	$(CXX) $(SIM_CXXFLAGS) -c $< -o $@

# the emulation's own cases (tests/cudasim/test_emulation.sh)
$(BUILD)/tests/cudasim/emulation_cases: $(BUILD)/tests/cudasim/emulation_cases.o $(BUILD)/tests/cudasim/cudasim.o
	$(CXX) $(ALL_LDFLAGS) $(filter %.o,$^) $(LDLIBS) -o $@
else
$(BUILD)/%.o: %.cu $(FLAGS)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@
endif

$(LIB): $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

# The version script keeps every symbol but kvz.h's local, including what
# hidden visibility cannot reach (CUDA's template instances, OpenMP's locks);
# --no-undefined: a library missing one of its dependencies fails here (not
# under the sanitizers, whose runtime clang leaves to the program).
$(SO): $(LIB_OBJS) $(FLAGS)
	@printf '{ global: kvz_*; local: *; };\n' >$(BUILD)/libkvz.map
	$(CC) -shared -Wl,-soname,$(SO_NAME) -Wl,--version-script=$(BUILD)/libkvz.map \
	  $(if $(filter 1 thread,$(SANITIZE)),,-Wl,--no-undefined) $(ALL_LDFLAGS) $(LIB_OBJS) $(LDLIBS) \
	  -o $(BUILD)/libkvz.so.$(VERSION)
	ln -sf libkvz.so.$(VERSION) $(BUILD)/$(SO_NAME)
	ln -sf $(SO_NAME) $@

# pkg-config file for PREFIX, rewritten every time (PREFIX may change).
$(PC): FORCE
	@mkdir -p $(dir $@)
	@printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))' \
	  'includedir=$(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))' '' \
	  'Name: kvz' 'Description: compiled, compressed KV caches for LLaMA-family models' \
	  'Version: $(VERSION)' 'Requires.private: $(PKGS)' 'Cflags: -I$${includedir}' \
	  'Libs: -L$${libdir} -lkvz' 'Libs.private: -fopenmp $(filter-out $(PKG_LIBS),$(LDLIBS))' >$@.tmp
	@cmp -s $@.tmp $@ && rm $@.tmp || mv $@.tmp $@

$(KVZ): $(TOOL_OBJS) $(LIB)
	$(CC) $(ALL_LDFLAGS) $(TOOL_OBJS) $(LIB) $(LDLIBS) -o $@

# Benchmark programs on the public API (bench/RESULTS.md says how each is run).
$(BUILD)/bench/%: bench/%.c include/kvz.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $< $(ALL_LDFLAGS) $(LIB) $(LDLIBS) -o $@

$(BUILD)/tests/%: tests/unit/%.c tests/unit/test_util.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(TEST_CFLAGS) $< $(ALL_LDFLAGS) $(LIB) $(LDLIBS) $(TEST_LIBS) -o $@

$(BUILD)/tests/cuda/%: tests/cuda/%.c tests/unit/test_util.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(TEST_CFLAGS) $< $(ALL_LDFLAGS) $(LIB) $(LDLIBS) $(TEST_LIBS) -o $@

# Tests run from the repository root; they find the model through KVZ_MODEL
# (tests/cli/test_api.sh installs the shared library this builds).
test: $(KVZ) $(SO) $(PC) $(TEST_BINS)
	@KVZ_MODEL=$(MODEL) KVZ_BIN=$(KVZ) KVZ_SANITIZE=$(SANITIZE) sh tests/run_tests.sh $(TEST_BINS) $(wildcard tests/cli/*.sh)

asan:
	$(MAKE) BUILD=build-asan SANITIZE=1 test

# (and the CUDA library exports kvz.h's functions only, as the plain one: test_api.sh checks that)
cuda:
	$(MAKE) BUILD=build-cuda CUDA=1 all build-cuda/libkvz.a $(patsubst tests/cuda/%.c,build-cuda/tests/cuda/%,$(CUDA_TEST_SRCS))
	@sed -n 's/^KVZ_API .*[ *]\(kvz_[a-z0-9_]*\)(.*/\1/p' include/kvz.h | sort >build-cuda/api-names
	@nm -D --defined-only build-cuda/libkvz.so | awk 'NF == 3 {print $$3}' | sort | diff build-cuda/api-names - >&2 || \
	  { echo "build-cuda/libkvz.so's exports differ from kvz.h's functions (above: < kvz.h only, > exported only)" >&2; exit 1; }

test-cuda: cuda
	@KVZ_MODEL=$(MODEL) sh tests/run_tests.sh $(patsubst tests/cuda/%.c,build-cuda/tests/cuda/%,$(CUDA_TEST_SRCS))

cudasim:
	$(MAKE) BUILD=build-sim CUDASIM=1 all build-sim/libkvz.a $(patsubst tests/cuda/%.c,build-sim/tests/cuda/%,$(CUDA_TEST_SRCS)) \
	  build-sim/tests/cudasim/emulation_cases

test-cudasim: cudasim
	@sh tests/run_tests.sh tests/cudasim/test_emulation.sh
	@KVZ_MODEL=$(MODEL) sh tests/run_tests.sh $(patsubst tests/cuda/%.c,build-sim/tests/cuda/%,$(CUDA_TEST_SRCS))
	@KVZ_BIN=build-sim/kvz sh tests/run_tests.sh tests/cudasim/test_device_memory.sh

# What CI runs of it (minutes; the whole of it takes about a quarter of an hour): the
# emulation's own checks at work (tests/cudasim/test_emulation.sh), every kernel
# test, the scoring passes again with blocks in a new order each launch (a second
# run must give the same bits), the attention and scoring tests on an emulated
# device of an H100's 132 multiprocessors (keys split as an H100 plans them: a
# launch of fewer than 264 blocks over more than 4 key tiles splits, where with 4
# only one of fewer than 8 does), the same on a device whose blocks get 99 KB of
# shared memory (sm_86, sm_89: no tensor-core attention at head size 128), each
# kernel taken to have 4 KB of it static (kvz's have up to 2.3 KB), the
# forward pass on the default model and a
# SmolLM2-shape, a qwen2 and a RoPE-frequency-factor (Llama 3.1) random one, KVzip
# compiles and answers on the last two (test-cudasim-asan runs them on the
# SmolLM2-shape one), and
# the CLI running out of device memory (tests/cudasim/test_device_memory.sh), here
# with cudaMalloc (KVZ_CUDA_MEMORY_POOLS=0; test-cudasim-asan runs it stream-ordered),
# and what a decoded token asks of the host (tests/cudasim/test_host_work.sh).
test-cudasim-quick: cudasim
	@sh tests/run_tests.sh tests/cudasim/test_emulation.sh
	@KVZ_MODEL=$(MODEL) sh tests/run_tests.sh build-sim/tests/cuda/test_cuda_kernels
	@KVZ_CUDASIM_ORDER=shuffle KVZ_TEST_ONLY='test_attention_scores' sh tests/run_tests.sh \
	  build-sim/tests/cuda/test_cuda_kernels
	@KVZ_CUDASIM_SMS=132 KVZ_TEST_ONLY='test_attention*' sh tests/run_tests.sh build-sim/tests/cuda/test_cuda_kernels
	@KVZ_CUDASIM_SMEM_OPTIN=99K KVZ_CUDASIM_STATIC_SMEM=4K KVZ_TEST_ONLY='test_attention*' sh tests/run_tests.sh \
	  build-sim/tests/cuda/test_cuda_kernels
	@KVZ_MODEL=$(MODEL) KVZ_TEST_SKIP='*llama3*' sh tests/run_tests.sh build-sim/tests/cuda/test_cuda_forward
	@KVZ_TEST_ONLY='*_synthetic_*' sh tests/run_tests.sh build-sim/tests/cuda/test_cuda_compile
	@KVZ_BIN=build-sim/kvz KVZ_CUDA_MEMORY_POOLS=0 sh tests/run_tests.sh tests/cudasim/test_device_memory.sh
	@KVZ_BIN=build-sim/kvz sh tests/run_tests.sh tests/cudasim/test_host_work.sh

# The CUDA tests emulated under ASan + UBSan, with blocks and the threads of a
# block run in reverse order (test-cudasim-quick runs them forward): a kernel's
# access outside its device buffers or shared memory fails as a heap or global
# overflow, and one that reads another thread's write with nothing ordering the
# two sees a different value.
# Kernels, the forward pass, compiles and running out of device memory on
# random-weight SmolLM2-shape models.
cudasim-asan:
	$(MAKE) BUILD=build-sim-asan CUDASIM=1 SANITIZE=1 build-sim-asan/kvz build-sim-asan/libkvz.a \
	  $(patsubst tests/cuda/%.c,build-sim-asan/tests/cuda/%,$(CUDA_TEST_SRCS))

test-cudasim-asan: cudasim-asan
	@KVZ_MODEL=$(MODEL) KVZ_CUDASIM_ORDER=reverse sh tests/run_tests.sh build-sim-asan/tests/cuda/test_cuda_kernels
	@KVZ_MODEL=$(MODEL) KVZ_CUDASIM_ORDER=reverse KVZ_TEST_ONLY='*smollm2*' sh tests/run_tests.sh \
	  build-sim-asan/tests/cuda/test_cuda_forward
	@KVZ_MODEL=$(MODEL) KVZ_CUDASIM_ORDER=reverse KVZ_TEST_ONLY='*synthetic' \
	  sh tests/run_tests.sh build-sim-asan/tests/cuda/test_cuda_compile
	@KVZ_BIN=build-sim-asan/kvz KVZ_CUDASIM_ORDER=reverse sh tests/run_tests.sh tests/cudasim/test_device_memory.sh

# The CUDA kernels' race check: ThreadSanitizer over the emulated threads of a
# block (tests/cudasim/cudasim.h): two threads of a block touching the same
# byte, one writing, with no barrier between them fail the test, whatever order
# they ran in. Every kernel test, the forward pass on a random-weight
# SmolLM2-shape model, and loading and answering from the device on it, one
# session and two on two threads (a whole emulated compile is minutes per
# method under it: KVZ_TEST_ONLY='*kvzip_synthetic' and the like run one). On
# one CPU (taskset): the rest of kvz is not instrumented, and its OpenMP
# threads meet in libgomp, which ThreadSanitizer does not see. The two runs that
# answer take a decode step's products by cuBLAS (KVZ_CUDA_GEMV=0): matmul.cu's
# own kernel for them is race-checked in test_cuda_kernels, and emulated thread
# by thread under ThreadSanitizer for every token it makes these runs minutes
# longer (it makes test_sessions_synthetic 4x longer even uninstrumented).
cudasim-race:
	$(MAKE) BUILD=build-sim-race CUDASIM=1 SANITIZE=thread build-sim-race/libkvz.a \
	  $(patsubst tests/cuda/%.c,build-sim-race/tests/cuda/%,$(CUDA_TEST_SRCS))

RACE_CPU = $(shell python3 -c 'import os; print(min(os.sched_getaffinity(0)))')
RACE_RUN = KVZ_MODEL=$(MODEL) OPENBLAS_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=1 exitcode=66 $(TSAN_OPTIONS)" \
	taskset -c $(RACE_CPU) sh tests/run_tests.sh
test-cudasim-race: cudasim-race
	@$(RACE_RUN) build-sim-race/tests/cuda/test_cuda_kernels
	@KVZ_TEST_ONLY='*smollm2*' $(RACE_RUN) build-sim-race/tests/cuda/test_cuda_forward
	@KVZ_CUDA_GEMV=0 KVZ_TEST_ONLY='test_runtime_synthetic' $(RACE_RUN) build-sim-race/tests/cuda/test_cuda_compile
	@KVZ_CUDA_GEMV=0 KVZ_TEST_ONLY='test_sessions_synthetic' $(RACE_RUN) build-sim-race/tests/cuda/test_cuda_compile

# CI runs its parts side by side, as many at once as there are CPUs: the
# emulated suites run on one CPU each, and one part after another took CI an
# hour on two. Output is grouped by target (-Otarget): a test part's output
# comes when it ends, a build's compile lines one object at a time. The
# longest parts start first. OpenMP threads wait passively, so that a test's
# threads that wait at a barrier leave the CPU to the other parts.
CHECK_JOBS ?= $(shell nproc)
check:
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-passive} $(MAKE) -j$(CHECK_JOBS) --output-sync=target check-parts
check-parts: test-cudasim-race test-cudasim-asan test-cudasim-quick asan test cuda fuzz-smoke clang

# A second compiler keeps the code to the C standard rather than to GCC's
# extensions, and MARCH=x86-64 runs the kernels' plain-C paths (a build for any
# x86-64 CPU takes them) against the same golden files.
clang:
	$(MAKE) BUILD=build-clang CC=clang MARCH=x86-64 all $(patsubst tests/unit/%.c,build-clang/tests/%,$(TEST_SRCS))
	@KVZ_MODEL=$(MODEL) sh tests/run_tests.sh $(patsubst tests/unit/%.c,build-clang/tests/%,$(TEST_SRCS))

# compile, ls, inspect, verify and query under valgrind memcheck (plain build;
# tests/valgrind.sh says what runs on which model; not part of check)
valgrind: $(KVZ)
	@KVZ_MODEL=$(MODEL) KVZ_BIN=$(KVZ) sh tests/valgrind.sh

# The main job end to end: compile a small corpus into a store, look at it,
# check it, answer questions from the compiled documents.
DEMO_STORE := $(BUILD)/demo-store
demo: $(KVZ)
	@test -f $(MODEL) || { echo "model missing: run scripts/setup.sh first" >&2; exit 1; }
	rm -rf $(DEMO_STORE)
	$(KVZ) compile examples/corpus --store $(DEMO_STORE) --model $(MODEL) --method kvzip --ratio 0.3 --bits 4
	$(KVZ) ls --store $(DEMO_STORE)
	$(KVZ) inspect --store $(DEMO_STORE) examples/corpus/harbor_lighthouse.md --svg $(BUILD)/demo-heatmap.svg | tail -3
	$(KVZ) verify --store $(DEMO_STORE)
	$(KVZ) query --store $(DEMO_STORE) --model $(MODEL) --doc examples/corpus/harbor_lighthouse.md \
	  --max-tokens 48 "When was the lighthouse lit for the first time?" "Who was the longest serving keeper?"
	$(KVZ) query --store $(DEMO_STORE) --model $(MODEL) --doc examples/corpus/harbor_lighthouse.md \
	  --doc examples/corpus/kv_cache_primer.md --max-tokens 32 "How many bytes does each token cost in the cache?"

define install_files
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -m 755 $(KVZ) $(DESTDIR)$(BINDIR)/kvz
	install -m 644 include/kvz.h $(DESTDIR)$(INCLUDEDIR)/kvz.h
	install -m 644 $(LIB) $(DESTDIR)$(LIBDIR)/libkvz.a
	install -m 755 $(BUILD)/libkvz.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libkvz.so.$(VERSION)
	ln -sf libkvz.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SO_NAME)
	ln -sf $(SO_NAME) $(DESTDIR)$(LIBDIR)/libkvz.so
	install -m 644 $(PC) $(DESTDIR)$(PKGCONFIGDIR)/kvz.pc
endef

install: $(KVZ) $(SO) $(PC)
	$(install_files)

# what BUILD holds, built with whatever flags it was (tests/cli/test_api.sh: the
# build under test, not one that install would remake with this make's flags)
install-built: $(PC)
	$(install_files)

# what install put there, for the same PREFIX (or directories) and DESTDIR
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/kvz $(DESTDIR)$(INCLUDEDIR)/kvz.h $(DESTDIR)$(LIBDIR)/libkvz.a \
	  $(DESTDIR)$(LIBDIR)/libkvz.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SO_NAME) $(DESTDIR)$(LIBDIR)/libkvz.so \
	  $(DESTDIR)$(PKGCONFIGDIR)/kvz.pc

help:
	@sed -n '2,/^$$/s/^# \{0,1\}//p' Makefile

bench: $(KVZ)
	sh bench/run.sh
	sh bench/compile.sh

setup:
	sh scripts/setup.sh

# and a BUILD folder of another name that kvz built (it has build-flags), never
# one holding a source tree or this one
clean:
	rm -rf build build-asan build-clang build-cuda build-sim build-sim-asan build-sim-race build-fuzz \
	  python/build python/kvz.egg-info
	@[ ! -f '$(BUILD)/build-flags' ] || [ -e '$(BUILD)/Makefile' ] || \
	  case '$(CURDIR)/' in '$(abspath $(BUILD))'/*) ;; *) rm -rf '$(BUILD)' ;; esac

include tests/fuzz/fuzz.mk
# (not in fuzz-smoke's make, which builds none of $(BUILD) while make check's
# test part may be writing these)
ifneq ($(MAKECMDGOALS),fuzz)
-include $(LIB_OBJS:.o=.d) $(TOOL_OBJS:.o=.d) $(CUDA_OBJS:.o=.d) $(BUILD)/tests/cudasim/emulation_cases.d
endif
