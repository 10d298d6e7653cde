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
CFLAGS += -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wshadow -D_GNU_SOURCE
# gcc's guess at snprintf truncation; clang (the test variants) has no such warning.
CFLAGS += $(if $(findstring clang,$(CC)),,-Wno-format-truncation)
# user/: one folder per stage of the pipeline, each a static library (see README,
# "Source tree"); every folder is on the include path.
USER_DIRS := lib out agg replay live cli
CPPFLAGS += -I$(OUTPUT) -Ibpf $(addprefix -Iuser/,$(USER_DIRS))
BPF_CFLAGS ?= -O2 -g
BPF_CFLAGS += -Wall
LDLIBS += -lbpf -lelf -lz -lcjson -lpcap -lcrypto -lcapstone -lm -lpthread

ifeq ($(V),1)
Q =
msg =
else
Q = @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

BPF_APPS := conn tls h2u ct holders
SKELS := $(patsubst %,$(OUTPUT)/%.skel.h,$(BPF_APPS))
BPF_HDRS := $(wildcard bpf/*.h)
USER_HDRS := $(wildcard $(addsuffix /*.h,$(addprefix user/,$(USER_DIRS))))

# The user-space libraries. VARIANT builds them again with VARIANT_CFLAGS into
# their own directory: the tests link the sanitizer (san) and fuzzer (fuzz) builds.
VARIANT ?=
VARIANT_CFLAGS ?=
UOUT := $(OUTPUT)/user$(if $(VARIANT),-$(VARIANT))
USER_LIBS := $(foreach d,$(USER_DIRS),$(UOUT)/libcs_$(d).a)

.PHONY: all clean deps deps-build run test test-unit test-live bench fuzz check-deps libs
all: connscope
libs: $(USER_LIBS)

$(OUTPUT):
	$(Q)mkdir -p $@

# conn.bpf.c claims CLOSE_WAIT slots with an atomic compare-and-exchange (v3).
$(OUTPUT)/conn.bpf.o: BPF_CFLAGS += -mcpu=v3

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

$(UOUT)/%.o: user/%.c $(USER_HDRS) $(BPF_HDRS) $(SKELS)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(VARIANT_CFLAGS) -c $< -o $@

define user_lib
$(UOUT)/libcs_$(1).a: $(patsubst user/%.c,$(UOUT)/%.o,$(wildcard user/$(1)/*.c))
	$$(call msg,AR,$$@)
	$(Q)rm -f $$@ && ar rcs $$@ $$^
endef
$(foreach d,$(USER_DIRS),$(eval $(call user_lib,$(d))))

# The libraries call each other both ways (the aggregator's sinks, live's
# parts): one group, resolved together.
connscope: $(USER_LIBS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -Wl,--start-group $^ -Wl,--end-group $(LDLIBS) -o $@

# Install the Debian packages the build, the tests and the benchmarks need
# (deps), or only what the build needs (deps-build: the Dockerfile's build stage).
deps:
	$(Q)scripts/deps.sh all

deps-build:
	$(Q)scripts/deps.sh build

# make run ARGS="--namespace shop": options for connscope top.
run: deps-build
	$(Q)$(MAKE) --no-print-directory all
	./connscope top $(ARGS)

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
