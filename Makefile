# The two quick-start commands: `make run` and `make test`. Both install what is missing,
# fetch the default model once, and build.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
MODEL ?= models/SmolLM2-135M-Instruct.Q4_1.gguf
THREADS ?= $(shell nproc)

.PHONY: all deps test-deps model configure build run test bench clean

all: build

deps:
	@scripts/install_deps.sh

model:
	@scripts/fetch_model.sh

test-deps:
	@scripts/install_test_deps.sh

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release

configure: deps $(BUILD_DIR)/CMakeCache.txt

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build model
	$(BUILD_DIR)/troupe serve --model $(MODEL) --threads $(THREADS) --host 127.0.0.1 --port 8080

test: build model test-deps
	cd $(BUILD_DIR) && ctest --output-on-failure -j 1 --timeout 600

# The unit tests of the edit-compile-test loop (ctest label fast: no model, no troupe
# binary; under a minute on two cores). Builds only the test binaries they need.
.PHONY: test-fast
test-fast: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target troupe_fast_tests
	cd $(BUILD_DIR) && ctest --output-on-failure -L fast -j $(JOBS)

bench: build model
	bench/compare_llama_cpp.sh

clean:
	rm -rf $(BUILD_DIR)
