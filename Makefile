# cairn: the two commands of the README (`make demo`, `make check`) and their helpers.
# Everything a fresh Debian 12 machine lacks is installed here, as root, non-interactively.

BUILD      ?= build
ASAN_BUILD ?= build-asan
MESON      ?= meson
NINJA      ?= ninja

# Debian packages the build, tests and demo need. `deps` installs only the missing ones.
DEPS = gcc meson ninja-build pkg-config libsqlite3-dev libssl-dev libarchive-dev \
       libjansson-dev libzstd-dev zlib1g-dev libisal-dev libdeflate-dev libcurl4-openssl-dev bats \
       clang-format python3 util-linux e2fsprogs attr zstd gzip tar diffutils \
       skopeo umoci busybox-static docker-registry apache2-utils podman

.PHONY: all deps build demo check test format format-check clean

all: build

deps:
	@missing=""; for p in $(DEPS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "cairn: installing Debian packages:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "cairn: run as root to install:$$missing" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(BUILD)/build.ninja:
	$(MESON) setup $(BUILD) --buildtype=debugoptimized

build: $(BUILD)/build.ninja
	$(NINJA) -C $(BUILD)
	@ln -sf tools/cairn/cairn $(BUILD)/cairn

demo: deps build
	@bash scripts/demo.sh $(BUILD)/cairn

# check: a --werror build and the suite, the suite again under ASan+UBSan, then format-check;
# the last line is the sum over everything that ran.
check: deps
	@rm -f $(BUILD)/.results $(ASAN_BUILD)/.results
	@test -f $(BUILD)/build.ninja || $(MESON) setup $(BUILD) --buildtype=debugoptimized
	$(MESON) configure $(BUILD) -Dwerror=true
	$(NINJA) -C $(BUILD)
	@ln -sf tools/cairn/cairn $(BUILD)/cairn
	@test -f $(ASAN_BUILD)/build.ninja || $(MESON) setup $(ASAN_BUILD) --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false
	$(NINJA) -C $(ASAN_BUILD)
	@ln -sf tools/cairn/cairn $(ASAN_BUILD)/cairn
	@bash scripts/run-tests.sh $(BUILD) $(ASAN_BUILD)

test: build
	@bash scripts/run-tests.sh $(BUILD)

format:
	@git ls-files '*.c' '*.h' | xargs clang-format -i

format-check:
	@bad=$$(git ls-files '*.c' '*.h' | while read -r f; do clang-format --dry-run --Werror "$$f" >/dev/null 2>&1 || echo "$$f"; done); \
	if [ -n "$$bad" ]; then echo "not formatted (run make format):"; echo "$$bad"; exit 1; fi; \
	echo "format-check: ok"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

# check-tsan: the cache stress test (8 threads, 20 s) under ThreadSanitizer.
TSAN_BUILD ?= build-tsan
.PHONY: check-tsan
check-tsan: deps
	@test -f $(TSAN_BUILD)/build.ninja || CC=gcc $(MESON) setup $(TSAN_BUILD) --buildtype=debug -Db_sanitize=thread -Db_lundef=false
	$(NINJA) -C $(TSAN_BUILD) tests/test-cache
	CAIRN_STRESS_SECONDS=20 TSAN_OPTIONS=halt_on_error=1 $(TSAN_BUILD)/tests/test-cache

# bench: issue 8's interleaved run of cairn against tar, umoci, containerd and podman on the corpus
# of ../shared/bench/make-corpus.sh (built once when missing), on the root filesystem and on a
# journaled ext4 loop mount; writes bench/RESULTS.md's issue 8 table. As root. RUNS=N to change
# the run count (default 3).
BENCH_BUILD ?= build-bench
.PHONY: bench
bench: deps
	@test -f $(BENCH_BUILD)/build.ninja || $(MESON) setup $(BENCH_BUILD) --buildtype=debugoptimized
	$(NINJA) -C $(BENCH_BUILD)
	bash bench/bench.sh $(BENCH_BUILD)/tools/cairn/cairn
