# LotteryKit: `make demo` and `make test` do all set-up on a fresh Debian machine (as root).
SWIFT ?= swift
APT_PACKAGES := libopenblas-dev libdnnl-dev zlib1g-dev dataset-fashion-mnist
# The report tests load the page in headless Chromium; only `make test` installs it.
TEST_PACKAGES := chromium
LTH := .build/release/lth

.PHONY: deps build demo test check example docs test-slurm tsan bench verify reproduce pydeps format clean fuzz fuzz-build

# Installs the Debian packages that are missing (needs root or sudo).
PACKAGES ?= $(APT_PACKAGES)
deps:
	@missing=""; for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

build: deps
	$(SWIFT) build -c release --product lth

# Demo: a lottery-ticket experiment on Fashion-MNIST (the Debian package): LeNet-300-100,
# IMP levels 0-5 (2 epochs each, weight rewinding to step 0), then the random-reinit
# control, ending with the results table. A few minutes on 2 cores; re-running resumes.
# A validation split of 5,000 training images gives the early-stopping iteration. Ends by
# writing the experiment's report (lth_runs/demo_report.html) and printing its path.
DEMO_FLAGS := --model mnist_lenet_300_100 --training-steps 2ep --validation-size 5000 --eval-every 500it --output ./lth_runs
demo: build
	$(LTH) lottery $(DEMO_FLAGS) --levels 5
	@$(LTH) branch random-reinit $(DEMO_FLAGS) --levels 0-5 > lth_runs/.demo_results.txt || { cat lth_runs/.demo_results.txt; exit 1; }
	@cat lth_runs/.demo_results.txt
	$(LTH) report $$(sed -n 's/^results: //p' lth_runs/.demo_results.txt) --output lth_runs/demo_report.html --title "LotteryKit demo: LeNet-300-100 on Fashion-MNIST"

# Tests run optimised: the numeric and end-to-end tests (resume after SIGKILL) train real networks.
# On a CPU where oneDNN finds AVX-512 the suite runs a second time capped at AVX2
# (DNNL_MAX_CPU_ISA), so an AVX-512 machine also checks the path most laptops take; on an
# AVX2-only CPU that pass would run the same kernels again, so it is skipped (and says so).
# LTH_REQUIRE_BROWSER=1: the report's browser test fails, not skips, without Chromium.
# oneDNN's avx512_core needs AVX512F, BW, VL and DQ. The capped pass skips the suites that
# only orchestrate whole commands on data every other suite trains on both paths
# (ISA_FREE_SUITES: lth reproduce and lth speedup), so that make test stays under 12 minutes
# on a 2-core machine.
ISA_FREE_SUITES := ReproduceTests|SpeedupTests
HAS_AVX512 := $(shell f=$$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null); for x in avx512f avx512bw avx512vl avx512dq; do echo "$$f" | grep -qw $$x || { echo no; exit; }; done; echo yes)
test:
	@$(MAKE) --no-print-directory deps PACKAGES="$(APT_PACKAGES) $(TEST_PACKAGES)"
	$(SWIFT) build -c release --build-tests
	LTH_REQUIRE_BROWSER=1 $(SWIFT) test -c release --skip-build
ifeq ($(HAS_AVX512),yes)
	LTH_REQUIRE_BROWSER=1 DNNL_MAX_CPU_ISA=AVX2 $(SWIFT) test -c release --skip-build --skip "$(ISA_FREE_SUITES)"
else
	@echo "make test: this CPU has no AVX-512, so the AVX2-capped pass would repeat the first one: skipped"
endif

# The unit tier for the edit-test loop: every test but the end-to-end ones (tag endToEnd:
# they run lth, train networks, kill processes), in a release build with the tests.
check:
	@$(MAKE) --no-print-directory deps
	$(SWIFT) build -c release --build-tests
	LTH_TEST_TIER=unit $(SWIFT) test -c release --skip-build

# Slurm: installs Debian's slurm-wlm when missing, starts slurmctld and slurmd for one node
# in a temporary folder (auth/none, no database; Tests/Slurm/cluster.sh), runs the Slurm
# tests against them and stops both daemons. .ci/run runs it after `make test`.
test-slurm:
	@$(MAKE) --no-print-directory deps PACKAGES="$(APT_PACKAGES) slurm-wlm"
	$(SWIFT) build -c release --build-tests
	Tests/Slurm/cluster.sh $(SWIFT)

# The worker pool's stress tests under ThreadSanitizer (debug build in .build-tsan; a few
# minutes on 2 cores). Any race report fails the run. .ci/run runs it after `make test`.
tsan: deps
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path .build-tsan
	SWIFT_BACKTRACE=enable=no TSAN_OPTIONS=halt_on_error=1 $(SWIFT) test --sanitize=thread \
	  --scratch-path .build-tsan --skip-build --filter ParallelTests

# Python packages for the PyTorch/JAX sides of `make bench` and `make verify` (pip; the CPU
# wheel of PyTorch that pip finds on this machine kind). Skipped when already importable.
PY ?= python3
pydeps:
	@$(PY) -c "import torch, safetensors" 2>/dev/null || $(PY) -m pip install -q "torch==2.13.0+cpu" safetensors || $(PY) -m pip install -q torch safetensors
	@$(PY) -c "import jax, optax" 2>/dev/null || $(PY) -m pip install -q "jax[cpu]" optax || echo "JAX unavailable: bench runs without it"
	@command -v taskset >/dev/null || echo "taskset missing (util-linux): JAX will not be pinned"

# Speed against PyTorch (default and channels_last) and JAX at 2 threads, alternated, 3 rounds.
# On an AVX-512 machine the comparison runs again with every side capped at AVX2 (the
# kernels most laptops get), labelled as such.
bench: build pydeps
	$(PY) bench/compare.py --lth $(LTH) --rounds 3 --threads 2
	@if grep -q avx512f /proc/cpuinfo 2>/dev/null; then \
	  echo; echo "=== the same, capped at AVX2 ==="; \
	  $(PY) bench/compare.py --lth $(LTH) --rounds 3 --threads 2 --isa AVX2; fi
	$(PY) bench/sparse.py --lth $(LTH) --rounds 3 --threads 2
	@if grep -q avx512f /proc/cpuinfo 2>/dev/null; then \
	  echo; echo "=== sparse rows, oneDNN capped at AVX2 ==="; \
	  DNNL_MAX_CPU_ISA=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 $(PY) bench/sparse.py --lth $(LTH) --rounds 3 --threads 2 --no-layers; fi

# The README's Swift example, built as a package of its own that depends on LotteryKit by
# version (a temporary clone tagged with LotteryKit's version), then run: a few minutes
# (its own release build). .ci/run runs it after make test.
example: deps
	SWIFT=$(SWIFT) Tests/Example/check.sh

# The five papers' findings at --scale quick on Fashion-MNIST (each at most 15 minutes on 2
# cores; re-running resumes), each paper in its own folder (REPRO_OUT/PAPER) so that its
# wall clock is its own. Rewrites docs/reproduce.md below its marker line from the
# command's own Markdown: the page is produced, never edited by hand.
PAPERS := lth renda lmc pai scaling
REPRO_OUT ?= ./lth_runs/reproduce
reproduce: build
	@for p in $(PAPERS); do $(LTH) reproduce $$p --scale quick --output $(REPRO_OUT)/$$p || exit 1; done
	@{ sed -n '1,/^<!-- generated by make reproduce -->/p' docs/reproduce.md; \
	  for p in $(PAPERS); do echo; $(LTH) reproduce $$p --scale quick --output $(REPRO_OUT)/$$p --markdown --quiet || exit 1; done; \
	} > docs/reproduce.md.tmp && mv docs/reproduce.md.tmp docs/reproduce.md
	@echo "docs/reproduce.md rewritten"

# Heavier checks: PyTorch loads LotteryKit's safetensors files and gives the same logits.
# Also the science checks of the test suite (LTH_TEST_TIER=science): SynFlow's 100 rounds
# on VGG-11 in Float64 (about 4 minutes on one core).
verify: build pydeps
	$(PY) bench/verify_pytorch.py $(LTH)
	$(SWIFT) build -c release --build-tests
	LTH_TEST_TIER=science $(SWIFT) test -c release --skip-build --filter synflowAvoidsCollapseVGG11

# Fuzzing (docs/testing.md, "Fuzzing"): libFuzzer + AddressSanitizer builds of one target per parser
# of outside bytes (Tests/Fuzz/<target>, added to the package only when LTH_FUZZ=1) in
# .build-fuzz; each runs from its seed corpus Tests/Fuzz/corpus/<target> for FUZZ_RUNS inputs
# (FUZZ_TIME > 0: at most that many seconds per target). A crash, an input slower than 1 s
# or an allocation over the limits stops with the input in .build-fuzz/findings/.
FUZZ_TARGETS ?= FuzzIDX FuzzCIFAR FuzzSafetensors FuzzRunJSON FuzzSteps FuzzPatterns
FUZZ_RUNS ?= 1000000
FUZZ_TIME ?= 0
FUZZ_FLAGS ?= -timeout=1 -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1
FUZZ_DIR := .build-fuzz
fuzz-build: deps
	@for t in $(FUZZ_TARGETS); do \
	  LTH_FUZZ=1 $(SWIFT) build -c release --scratch-path $(FUZZ_DIR) -Xswiftc -sanitize=fuzzer,address \
	    --product $$t || exit 1; \
	done

fuzz: fuzz-build
	@mkdir -p $(FUZZ_DIR)/findings
	@for t in $(FUZZ_TARGETS); do \
	  case $$t in FuzzCIFAR) len=8192;; FuzzSteps) len=64;; FuzzPatterns) len=256;; *) len=4096;; esac; \
	  dict=""; [ -f Tests/Fuzz/dict/$$t.dict ] && dict=-dict=Tests/Fuzz/dict/$$t.dict; \
	  mkdir -p $(FUZZ_DIR)/corpus/$$t; log=$(FUZZ_DIR)/findings/$$t.log; \
	  if SWIFT_BACKTRACE=enable=no $(FUZZ_DIR)/release/$$t $(FUZZ_FLAGS) $$dict -max_len=$$len -runs=$(FUZZ_RUNS) -max_total_time=$(FUZZ_TIME) \
	    -artifact_prefix=$(FUZZ_DIR)/findings/$$t- $(FUZZ_DIR)/corpus/$$t Tests/Fuzz/corpus/$$t >$$log 2>&1; then \
	    runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $$log); \
	    rate=$$(sed -n 's/^stat::average_exec_per_sec: *//p' $$log); \
	    echo "$$t: $$runs inputs, $$rate inputs/s, no finding (log: $$log)"; \
	  else \
	    tail -n 40 $$log; echo "$$t: FINDING, the input is in $(FUZZ_DIR)/findings/ (log: $$log)"; exit 1; \
	  fi; \
	done

# API documentation: the DocC catalog of the umbrella module (swift-docc-plugin), with every
# library module's symbols, as a static site in .build/docs.
docs: deps
	$(SWIFT) package --allow-writing-to-directory .build/docs generate-documentation \
	  --target LotteryKit --enable-experimental-combined-documentation \
	  $(foreach t,Engine NN Datasets Storage Training Pruning Families Experiments Analysis Reports Cluster,--target $(t)) \
	  --output-path .build/docs --transform-for-static-hosting
	@echo "docs: .build/docs (serve it, or open .build/docs/documentation/lotterykit)"

format:
	$(SWIFT) format --in-place --recursive Sources Tests Package.swift

clean:
	rm -rf .build .build-fuzz
