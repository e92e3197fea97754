# The two quick-start commands: `make run` and `make test`. Both install what is missing,
# fetch the models they need once, and build.
#
# MODEL is a short name that scripts/fetch_model.sh fetches (smollm2-135m, the default;
# qwen2.5-coder-0.5b; qwen2.5-coder-1.5b; `scripts/fetch_model.sh --list`) or a path to a
# GGUF file (anything with a '/' or ending in .gguf).
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
MODEL ?= smollm2-135m
THREADS ?= $(shell nproc)

is_model_path = $(or $(findstring /,$(MODEL)),$(filter %.gguf,$(MODEL)))
MODEL_FILE = $(if $(is_model_path),$(MODEL),$(shell scripts/fetch_model.sh --path $(MODEL)))

.PHONY: all deps test-deps model test-models configure build run test bench clean

all: build

deps:
	@scripts/install_deps.sh

# The model `make run` serves.
model:
ifeq ($(is_model_path),)
	@scripts/fetch_model.sh $(MODEL)
else
	@test -f "$(MODEL)" || { echo "make: MODEL=$(MODEL) does not exist" >&2; exit 1; }
endif

# The models the tests need: the default one and Qwen2.5-Coder-0.5B (491 MB, ~15 s to fetch).
test-models:
	@scripts/fetch_model.sh smollm2-135m
	@scripts/fetch_model.sh qwen2.5-coder-0.5b

test-deps:
	@scripts/install_test_deps.sh

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release

configure: deps $(BUILD_DIR)/CMakeCache.txt

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build model
	$(BUILD_DIR)/troupe serve --model $(MODEL_FILE) --threads $(THREADS) --host 127.0.0.1 --port 8080

test: build test-models test-deps
	cd $(BUILD_DIR) && ctest --output-on-failure -j 1 --timeout 600

# The unit tests of the edit-compile-test loop (ctest label fast: no model, no troupe
# binary; under a minute on two cores). Builds only the test binaries they need.
.PHONY: test-fast
test-fast: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target troupe_fast_tests
	cd $(BUILD_DIR) && ctest --output-on-failure -L fast -j $(JOBS)

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer (leaks included), in
# its own build directory without CUDA (less the qwen_model tests: the same code as the
# tiny qwen2 models, at a size that is slow under the sanitizers); then the actor and front-door suites under
# ThreadSanitizer. Any report fails the run. See docs/reliability.md.
SANITIZE_DIR ?= build-asan
# More ctest arguments for check-asan, e.g. -E REGEX to leave cases out, or -L fast (.ci/run).
SANITIZE_CTEST_ARGS ?=
# What check-asan builds: everything, or e.g. troupe_fast_tests (the binaries of the fast
# label, which is what .ci/run runs under the sanitizers).
SANITIZE_BUILD_TARGETS ?= all
# The same for check-tsan, e.g. -LE real_model (the real model's actor cases: ~14 min of the
# ~15 under ThreadSanitizer on 2 cores).
TSAN_CTEST_ARGS ?=
TSAN_DIR ?= build-tsan
SANITIZER_ENV = ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:suppressions=$(CURDIR)/tests/sanitize/ubsan.supp \
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/sanitize/lsan.supp:print_suppressions=0 \
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$(CURDIR)/tests/sanitize/tsan.supp
.PHONY: check-sanitize check-asan check-tsan
check-sanitize: check-asan check-tsan

# -O1 with line tables only (-g1): what AddressSanitizer's documentation suggests, and the
# cheapest build that still gives file:line in every report.
SANITIZE_FLAGS = -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1" \
	"-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -g1" -DTROUPE_CUDA=OFF -DTROUPE_BUILD_BENCH=OFF -DTROUPE_BUILD_EXAMPLES=OFF

check-asan: deps test-models test-deps
	cmake -S . -B $(SANITIZE_DIR) $(SANITIZE_FLAGS) -DTROUPE_SANITIZE=address,undefined
	cmake --build $(SANITIZE_DIR) -j $(JOBS) --target $(SANITIZE_BUILD_TARGETS)
	cd $(SANITIZE_DIR) && $(SANITIZER_ENV) ctest --output-on-failure -LE 'package|qwen_model' $(SANITIZE_CTEST_ARGS) -j $(JOBS) --timeout 1800

# ThreadSanitizer needs CAF built with it too (scripts/build_caf_tsan.sh says why): the
# suites compile and link against that copy, not Debian's.
TSAN_CAF = $(CURDIR)/$(TSAN_DIR)/caf
check-tsan: deps test-models test-deps
	JOBS=$(JOBS) scripts/build_caf_tsan.sh $(TSAN_CAF)
	cmake -S . -B $(TSAN_DIR) $(SANITIZE_FLAGS) -DTROUPE_SANITIZE=thread -DCAF_INCLUDE_DIR=$(TSAN_CAF)/include \
		-DCAF_CORE_LIBRARY=$(TSAN_CAF)/lib/libcaf_core.so -DCAF_IO_LIBRARY=$(TSAN_CAF)/lib/libcaf_io.so
	cmake --build $(TSAN_DIR) -j $(JOBS) --target test_actors test_net
	cd $(TSAN_DIR) && $(SANITIZER_ENV) ctest --output-on-failure -R '^(actors|net)/' $(TSAN_CTEST_ARGS) -j 1 --timeout 1800

bench: build model
	bench/compare_llama_cpp.sh

clean:
	rm -rf $(BUILD_DIR)
