# genv — the README's two commands are `make demo` and `make test`.
CARGO ?= cargo
PREFIX ?= /usr/local
ROOT := $(CURDIR)
REL := target/release
SIM := target/sim

.PHONY: all build sim release nvidia-smi venv test test-rust test-python lint fmt demo bench install wheel clean

all: build

build: release sim

release:
	$(CARGO) build --release --workspace

# The simulated GPU machine: test-double libcuda.so.1 / libnvidia-ml.so.1, and per measured
# driver generation a libnvidia-ml.so.1 with only that generation's functions (nvml-<major>/).
sim: release
	@mkdir -p $(SIM)
	cp -f $(REL)/libnvidia_ml.so $(SIM)/libnvidia-ml.so.1
	ln -sf libnvidia-ml.so.1 $(SIM)/libnvidia-ml.so
	$(REL)/genv-sim-generations $(REL)/libnvidia_ml.so $(SIM)
	cp -f $(REL)/libcuda.so $(SIM)/libcuda.so.1
	ln -sf libcuda.so.1 $(SIM)/libcuda.so

# Stock nvidia-smi (and its libnvidia-ml) of every measured driver generation from Debian's
# non-free archive, cached under target/.
nvidia-smi:
	scripts/fetch-nvidia-smi.sh

venv:
	scripts/setup-venv.sh >/dev/null

lint:
	$(CARGO) fmt --all -- --check
	rustfmt --edition 2021 --check shim/stub/stub.rs
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

test: build nvidia-smi venv lint test-rust test-python

test-rust: build
	$(CARGO) test --release --workspace

test-python: build nvidia-smi venv
	.venv/bin/python -m pytest -q tests/python

demo: build nvidia-smi
	scripts/demo.sh

bench: build nvidia-smi
	scripts/bench.sh
	scripts/bench-shim.sh
	scripts/bench-startup.sh
	scripts/bench-nvidia-smi.sh

install: release
	install -d $(PREFIX)/bin $(PREFIX)/lib/genv
	install -m 755 $(REL)/genv $(PREFIX)/bin/genv
	install -m 755 $(REL)/libgenv_shim.so $(PREFIX)/lib/genv/libgenv_shim.so
	install -m 755 $(REL)/libgenv_shim_core.so $(PREFIX)/lib/genv/libgenv_shim_core.so
	@scripts/install-hint.sh "$(PREFIX)"

# One wheel with the SDK, the genv binary and the shim: `pip install target/wheels/genv-*.whl`
# in a fresh venv gives `genv` on PATH and an SDK that finds its own shim.
wheel: release venv
	MATURIN=$(ROOT)/.venv/bin/maturin scripts/build-wheel.sh

clean:
	$(CARGO) clean
