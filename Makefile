# Convenience wrapper around CMake. `make test` and `make run` work on a fresh
# Debian 12 machine: they install what is missing first (scripts/deps.sh).
BUILD     ?= build
ASAN_BUILD ?= build-asan
JOBS      ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build test test-asan test-tsan test-clang fuzz fuzz-long cppcheck bench-report run demo bench clean install deb

all: build

deps:
	@scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# Tests labelled "long" (the full-size soak) are left out of every tier:
# ctest -L long runs them (docs/testing.md).
test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -LE long

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DKVS_ASAN=ON -DKVS_UBSAN=ON $(CMAKE_FLAGS)

test-asan: deps $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS) -LE long

TSAN_BUILD ?= build-tsan
$(TSAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DKVS_TSAN=ON $(CMAKE_FLAGS)

# ThreadSanitizer over every test. CTest itself sets UCX_MEM_EVENTS=no and
# the suppressions file tests/tsan.supp (docs/testing.md says why).
test-tsan: deps $(TSAN_BUILD)/CMakeCache.txt
	cmake --build $(TSAN_BUILD) -j $(JOBS)
	cd $(TSAN_BUILD) && ctest --output-on-failure -j $(JOBS) -LE long

# clang with every warning an error (gcc is the default compiler).
CLANG_BUILD ?= build-clang
$(CLANG_BUILD)/CMakeCache.txt:
	CC=clang cmake -S . -B $(CLANG_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVS_WERROR=ON $(CMAKE_FLAGS)

test-clang: deps $(CLANG_BUILD)/CMakeCache.txt
	cmake --build $(CLANG_BUILD) -j $(JOBS)
	cd $(CLANG_BUILD) && ctest --output-on-failure -j $(JOBS) -L unit

# The libFuzzer targets (clang, ASan, UBSan), each run for FUZZ_SECONDS on
# a scratch copy of its corpus (docs/testing.md, "Fuzzing"). fuzz-long
# gives them an hour in all.
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 10
FUZZ_TARGETS = codec index_record segment_header wire wire_shm kvevent \
	manifest safetensors config
FUZZ_LONG_SECONDS ?= 3600
$(FUZZ_BUILD)/CMakeCache.txt:
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DKVS_FUZZ=ON -DKVS_ASAN=ON -DKVS_UBSAN=ON -DKVS_WERROR=ON $(CMAKE_FLAGS)

fuzz: deps $(FUZZ_BUILD)/CMakeCache.txt
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS))
	@set -e; for t in $(FUZZ_TARGETS); do \
	    rm -rf $(FUZZ_BUILD)/corpus/$$t; mkdir -p $(FUZZ_BUILD)/corpus/$$t; \
	    cp tests/fuzz/corpus/$$t/* $(FUZZ_BUILD)/corpus/$$t/; \
	    echo "fuzz_$$t: $(FUZZ_SECONDS) s"; \
	    if ! (cd $(FUZZ_BUILD) && ./tests/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) \
	            corpus/$$t > fuzz_$$t.log 2>&1); then \
	        tail -n 60 $(FUZZ_BUILD)/fuzz_$$t.log; exit 1; \
	    fi; \
	    tail -n 2 $(FUZZ_BUILD)/fuzz_$$t.log; \
	done

fuzz-long:
	$(MAKE) fuzz FUZZ_SECONDS=$$(( $(FUZZ_LONG_SECONDS) / $(words $(FUZZ_TARGETS)) ))

# Static analysis: zero findings outside tests/ (docs/testing.md).
cppcheck: deps
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	    --std=c11 -D_GNU_SOURCE -I. -Iinclude --suppress=missingIncludeSystem \
	    --inline-suppr kvstore common cluster transport tools

# A short run of the store, codec and replay benchmarks (a synthetic
# trace), drawn by kvstash-bench report into $(REPORT_DIR)/report.png. The
# figures of so short a run are for the picture, not for comparing.
REPORT_DIR ?= var/bench-report
REPORT_CAPS = 100 300 1000 3000 10000
bench-report: build
	rm -rf $(REPORT_DIR) && mkdir -p $(REPORT_DIR)
	$(BUILD)/tools/kvstash-bench store --json --data 128m --dram 32m \
	    --seconds 1 --rounds 1 --dir $(REPORT_DIR)/store > $(REPORT_DIR)/store.jsonl
	$(BUILD)/tools/kvstash-bench codec --json > $(REPORT_DIR)/codec.jsonl
	/usr/bin/python3 tools/bench/synth_trace.py > $(REPORT_DIR)/trace.jsonl
	$(BUILD)/tools/kvstash-bench replay --json --trace $(REPORT_DIR)/trace.jsonl \
	    $(addprefix --capacity ,$(REPORT_CAPS)) --dir $(REPORT_DIR)/replay \
	    > $(REPORT_DIR)/replay.jsonl
	$(BUILD)/tools/kvstash-bench report -o $(REPORT_DIR)/report.png \
	    --title "kvstash-bench, short run" $(REPORT_DIR)/*.jsonl

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
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(CLANG_BUILD) $(FUZZ_BUILD)
