# Convenience wrapper around CMake. `make test` and `make run` work on a fresh
# Debian 12 machine: they install what is missing first (scripts/deps.sh).
BUILD     ?= build
ASAN_BUILD ?= build-asan
JOBS      ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build test test-asan test-tsan run demo bench clean install deb

all: build

deps:
	@scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DKVS_ASAN=ON -DKVS_UBSAN=ON $(CMAKE_FLAGS)

test-asan: deps $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS)

TSAN_BUILD ?= build-tsan
$(TSAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DKVS_TSAN=ON $(CMAKE_FLAGS)

# ThreadSanitizer: the daily tier (docs/testing.md), not part of make test.
test-tsan: deps $(TSAN_BUILD)/CMakeCache.txt
	cmake --build $(TSAN_BUILD) -j $(JOBS)
	cd $(TSAN_BUILD) && ctest --output-on-failure -j $(JOBS) -L unit

run: build
	@mkdir -p var/kvstash
	$(BUILD)/tools/kvstashd

# Prefill -> decode streaming between two daemons on loopback (issue 5):
# a paced prefill client, a decode client that checks every byte; prints
# throughput and time to the first part against time to the whole block.
DEMO_ARGS ?= --blocks 8 --parts 32 --part-kib 256 --rate 100
demo: build
	$(BUILD)/tools/kvstash-bench stream --demo --dir var/demo $(DEMO_ARGS)

# Installs under CMAKE_INSTALL_PREFIX (/usr/local; PREFIX=... to change),
# or under DESTDIR=... : tools, libkvstash, headers, .pc, CMake package,
# systemd unit, example configuration (packaging/CMakeLists.txt).
install: build
	cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX))

# The Debian package, built and smoke-tested (scripts/package-deb.sh).
deb: deps
	scripts/deb-smoke.sh --extract "$$(scripts/package-deb.sh)"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
