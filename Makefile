# connscope build. `make` builds ./connscope with every BPF object embedded as a skeleton.
# Overrides: make CLANG=clang-15 BPFTOOL=/usr/sbin/bpftool LLVM_STRIP=llvm-strip-15 CFLAGS=... V=1
.DELETE_ON_ERROR:
.SECONDARY:
.DEFAULT_GOAL := all

OUTPUT ?= .output
CLANG ?= clang
BPFTOOL ?= $(shell command -v bpftool 2>/dev/null || echo /usr/sbin/bpftool)
LLVM_STRIP ?= llvm-strip
CC ?= cc
PKG_CONFIG ?= pkg-config
ARCH ?= $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
VMLINUX_DIR ?= vmlinux/$(ARCH)

CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-format-truncation -Wshadow -D_GNU_SOURCE
CPPFLAGS += -I$(OUTPUT) -Ibpf -Iuser
BPF_CFLAGS ?= -O2 -g
BPF_CFLAGS += -Wall
LDLIBS += -lbpf -lelf -lz -lcjson -lpcap -lcrypto -lm -lpthread

ifeq ($(V),1)
Q =
msg =
else
Q = @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

BPF_APPS := conn tls h2u ct holders
USER_SRCS := $(wildcard user/*.c)
USER_OBJS := $(patsubst user/%.c,$(OUTPUT)/%.o,$(USER_SRCS))
SKELS := $(patsubst %,$(OUTPUT)/%.skel.h,$(BPF_APPS))
BPF_HDRS := $(wildcard bpf/*.h)

.PHONY: all clean deps run test test-unit test-live bench fuzz check-deps
all: connscope

$(OUTPUT):
	$(Q)mkdir -p $@

$(OUTPUT)/%.bpf.o: bpf/%.bpf.c $(BPF_HDRS) $(VMLINUX_DIR)/vmlinux.h | $(OUTPUT)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -target bpf -D__TARGET_ARCH_$(ARCH) \
		-I$(VMLINUX_DIR) -Ibpf -c $< -o $@

# The skeleton embeds the object whole. Its DWARF serves only llvm-objdump -S
# on .output/*.bpf.o; the embedded copy drops it and keeps .BTF and .BTF.ext,
# which CO-RE relocation and the verifier's line info need.
$(OUTPUT)/%.bpf.stripped.o: $(OUTPUT)/%.bpf.o
	$(call msg,STRIP,$@)
	$(Q)$(LLVM_STRIP) -g $< -o $@

$(OUTPUT)/%.skel.h: $(OUTPUT)/%.bpf.stripped.o
	$(call msg,SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name $*_bpf > $@

$(OUTPUT)/%.o: user/%.c $(wildcard user/*.h) $(BPF_HDRS) $(SKELS) | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

connscope: $(USER_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) $^ $(LDLIBS) -o $@

# Install the Debian packages the build, the tests and the benchmarks need.
deps:
	$(Q)scripts/deps.sh

run: deps
	$(Q)$(MAKE) --no-print-directory all
	./connscope top

test: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)scripts/test.sh

test-unit: all
	$(Q)scripts/test.sh unit

test-live: all
	$(Q)scripts/test.sh live

bench: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)scripts/bench.sh

clean:
	$(Q)rm -rf $(OUTPUT) connscope
