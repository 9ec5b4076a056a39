# Quick start: `make demo` and `make test`. Both install what is missing, then build.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all setup configure build demo test clean

all: build

setup:
	@scripts/setup.sh

configure: setup
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

# Without a GPU the demo needs no CUDA code: it builds a CPU-only binary in its own folder.
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
DEMO_BUILD ?= $(if $(HAS_GPU),$(BUILD),$(BUILD)-cpu)

demo: setup
	@cmake -S . -B $(DEMO_BUILD) -DCMAKE_BUILD_TYPE=Release $(if $(HAS_GPU),,-DTL_CUDA=OFF) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(DEMO_BUILD) -j $(JOBS) --target tinyllama
	@scripts/demo.sh $(DEMO_BUILD)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

clean:
	rm -rf $(BUILD) $(BUILD)-cpu
