# ipcx — top-level entry points. Each target installs missing dependencies first.
.PHONY: all deps build demo walkthrough test test-asan test-tsan bench fuzz install clean

JOBS ?= 2
FUZZ_SECONDS ?= 30

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake --preset default >/dev/null
	@cmake --build --preset default

demo: build
	@scripts/demo.sh

walkthrough: build
	@scripts/walkthrough.sh

test: build
	@ctest --preset default

test-asan: deps
	@cmake --preset asan >/dev/null
	@cmake --build --preset asan
	@ctest --preset asan

test-tsan: deps
	@cmake --preset tsan >/dev/null
	@cmake --build --preset tsan
	@ctest --preset tsan

# The bench's peer rows need the peer libraries at configure time.
bench:
	@scripts/install-deps.sh --peers
	@$(MAKE) --no-print-directory build
	@build/bin/ipcx bench $(BENCH_ARGS)

fuzz: deps
	@cmake --preset fuzz >/dev/null
	@cmake --build --preset fuzz --target ipcx-fuzz-targets
	@scripts/run-fuzz.sh build-fuzz $(FUZZ_SECONDS)

install: build
	@cmake --install build --prefix $(or $(PREFIX),/usr/local)

clean:
	@rm -rf build build-asan build-tsan build-fuzz
