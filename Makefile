# netagent: `make` builds everything, `make test` runs every suite,
# `make demo` runs the namespace demo. `make deps` installs what a fresh
# Debian 12 machine lacks (idempotent, quiet when all is there).

SHELL := /bin/bash
MULTIARCH := $(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
CLANG ?= clang
# clang 14 has no -fwrapv-pointer; the multiarch include dir holds asm/types.h.
BPF_CFLAGS := -O2 -g -target bpf -Wall -Werror -I/usr/include/$(MULTIARCH) -Ibpf
BPF_SRCS := $(wildcard bpf/*.c)
BPF_OBJS := $(patsubst bpf/%.c,build/bpf/%.o,$(BPF_SRCS))
TS_SRCS := $(shell find agent test bench -name '*.ts' 2>/dev/null)

# Debian packages the build, the tests, the demo, the VM image and the benchmarks need.
APT_PKGS := clang llvm libbpf-dev libbpf1 bpftool linux-libc-dev iproute2 nftables libnftables1 \
	xdp-tools python3 qemu-system-x86 s6 busybox-static zstd procps \
	util-linux tcpdump ethtool iputils-ping curl

.PHONY: all build deps bpf ts native test demo vm image bench clean
all: build
build: bpf native ts

deps: .deps-apt .deps-npm
.deps-apt: Makefile
	@missing=$$(for p in $(APT_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "deps: installing $$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@touch $@
.deps-npm: package.json package-lock.json
	@npm ci --no-fund --no-audit --loglevel=error >/dev/null 2>.deps-npm.err || { cat .deps-npm.err; exit 1; }
	@rm -f .deps-npm.err; touch $@

bpf: $(BPF_OBJS)
build/bpf/%.o: bpf/%.c $(wildcard bpf/*.h) | .deps-apt
	@mkdir -p $(@D)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

native: native/build/Release/netlink.node
native/build/Release/netlink.node: $(wildcard native/*.c native/*.h) native/binding.gyp | .deps-npm
	@# npm puts its bundled node-gyp on PATH for package scripts (npx would not find it).
	npm run --silent install >/dev/null

ts: dist/.stamp
dist/.stamp: $(TS_SRCS) tsconfig.json | .deps-npm
	npx --no-install tsc -p .
	@touch $@

test: deps build
	node test/run.mjs $(SUITES)

demo: deps build
	bash test/demo.sh

# The network VM: a bootable kernel + initramfs from Debian parts (rootfs/).
image: deps build
	bash rootfs/build-image.sh

# Boot it in qemu with a serial console on this terminal (PROFILE=router-p2p for the router profile).
vm: image
	bash rootfs/run-vm.sh

# Benchmarks against the published approach; results in bench/results/.
bench: deps build
	@if [ -f bench/run.mjs ]; then node bench/run.mjs; else bash bench/run.sh; fi

clean:
	rm -rf dist build native/build .deps-apt .deps-npm
