# imgforge — see README.md.  make | make check | make check-quick | make check-unit | make install | make lint
PREFIX ?= /usr/local
# Object directory; a second one (make B=build-asan SANITIZE=…) keeps two flag sets apart.
B ?= build
DESTDIR ?=
CC ?= cc
PKG_CONFIG ?= pkg-config
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0)
# imgforge's commit time: the SOURCE_DATE_EPOCH of images when the variable is not set.
SOURCE_DATE := $(or $(shell git log -1 --format=%ct 2>/dev/null),0)

PKGS := libcurl jansson yaml-0.1 libarchive libcrypto libguestfs libvirt zlib
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)

# src/ is the core; its folders (base/, net/, oci/, gcs/, disk/, archive/: docs/internals.md,
# "Layout") hold what the core stands on. Every folder is on the quote include path, so an
# `#include "x.h"` names a header wherever it lives.
SRC_DIRS := $(patsubst %/,%,$(sort $(dir $(wildcard src/*/*.c src/*/*.h))))
SRC_IQUOTE := -iquote src $(addprefix -iquote ,$(SRC_DIRS))

CFLAGS ?= -O2 -g
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(SRC_IQUOTE) -iquote . $(PKG_CFLAGS) \
	-DIMGF_VERSION='"$(VERSION)"' -DIMGF_SOURCE_DATE=$(SOURCE_DATE) \
	-Wall -Wextra -Wno-unused-parameter -include src/base/banned.h $(CFLAGS)
ALL_LDFLAGS := $(LDFLAGS)
LIBS := $(PKG_LIBS) -lpthread

ifeq ($(DEVELOPER),1)
ALL_CFLAGS += -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla \
	-Wformat=2 -Wno-format-nonliteral
endif
ifneq ($(SANITIZE),)
ALL_CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
ALL_LDFLAGS += -fsanitize=$(SANITIZE)
endif

# Sources: the core library (everything in src/ and its folders but main.c), builders,
# provisioners and the provisioners' data files, embedded into the binary so an installed
# imgforge is one file.
CORE_SRCS := $(filter-out src/main.c,$(wildcard src/*.c src/*/*.c))
SRC_HDRS := $(wildcard src/*.h src/*/*.h)
BUILDER_SRCS := $(wildcard builders/*.c)
PROV_SRCS := $(wildcard provisioners/*.c)
PP_SRCS := $(wildcard post-processors/*.c)
DATA_FILES := $(sort $(shell find provisioners -mindepth 2 -type f 2>/dev/null))
GEN_DATA := $(B)/data.c

OBJS_CORE := $(patsubst %.c,$(B)/%.o,$(CORE_SRCS))
OBJS_PLUG := $(patsubst %.c,$(B)/%.o,$(BUILDER_SRCS) $(PROV_SRCS) $(PP_SRCS)) $(B)/data.o
LIBIMGF := $(B)/libimgforge.a

UNIT_SRCS := $(wildcard tests/unit/test-*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRCS))

.PHONY: all check check-quick check-unit check-integration check-versions install uninstall docs clean lint format deps fuzz bench

all: imgforge

imgforge: $(B)/src/main.o $(OBJS_PLUG) $(LIBIMGF)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(ALL_LDFLAGS) $(LIBS)

$(LIBIMGF): $(OBJS_CORE)
	@rm -f $@
	ar rcs $@ $^

# Objects depend on the flags too, so `make SANITIZE=…` or `DEVELOPER=1` rebuilds them.
FLAGS_TEXT := $(subst ',,$(subst ",,$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS)))
$(B)/.flags: FORCE
	@mkdir -p $(B)
	@echo '$(FLAGS_TEXT)' | cmp -s - $@ || echo '$(FLAGS_TEXT)' > $@
.PHONY: FORCE

$(B)/%.o: %.c $(SRC_HDRS) $(wildcard builders/*.h provisioners/*.h post-processors/*.h) Makefile $(B)/.flags
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# The list of data files, so adding or moving one (an old mtime) regenerates data.c.
$(B)/.datafiles: FORCE
	@mkdir -p $(B)
	@echo '$(DATA_FILES)' | cmp -s - $@ || echo '$(DATA_FILES)' > $@

$(GEN_DATA): $(DATA_FILES) hack/embed.sh $(B)/.datafiles
	@mkdir -p build
	sh hack/embed.sh $(DATA_FILES) > $@.tmp && mv $@.tmp $@

$(B)/data.o: $(GEN_DATA) $(B)/.flags
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(B)/tests/%: tests/unit/%.c $(wildcard tests/unit/*.h) $(LIBIMGF) $(OBJS_PLUG)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -iquote tests/unit -o $@ $< $(filter %/httpd.o %/dirtarget.o,$^) $(OBJS_PLUG) \
		$(LIBIMGF) $(ALL_LDFLAGS) $(LIBS)

# The tests that talk to the test HTTP server (tests/unit/httpd.h) link it.
UNIT_HTTPD_TESTS := $(addprefix $(B)/tests/,test-http test-http-req test-fetch test-registry-http \
	test-regpush test-regcache test-docker-engine)
$(UNIT_HTTPD_TESTS): $(B)/tests/httpd.o
$(B)/tests/httpd.o: tests/unit/httpd.c tests/unit/httpd.h $(SRC_HDRS) $(B)/.flags
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -iquote tests/unit -c -o $@ $<

# The tests that run provisioners without Docker link the directory target
# (tests/unit/dirtarget.h), a test-only target, not part of imgforge.
UNIT_DIR_TESTS := $(addprefix $(B)/tests/,test-dirtarget test-provisioners)
$(UNIT_DIR_TESTS): $(B)/tests/dirtarget.o
$(B)/tests/dirtarget.o: tests/unit/dirtarget.c tests/unit/dirtarget.h $(SRC_HDRS) $(B)/.flags
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -iquote tests/unit -c -o $@ $<

# The benches' driver (bench/imgf-bench.c).
$(B)/bench/%: bench/%.c $(LIBIMGF) $(OBJS_PLUG) $(B)/.flags
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(OBJS_PLUG) $(LIBIMGF) $(ALL_LDFLAGS) $(LIBS)

# The seed tool of cloudinit/ (make -C cloudinit), built with the same flags as everything else.
$(B)/cloudinit/mkseed: cloudinit/mkseed.c $(LIBIMGF)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIBIMGF) $(ALL_LDFLAGS) $(LIBS)

check-unit: $(UNIT_BINS)
	@sh tests/lib/run-unit.sh $(UNIT_BINS)

check-integration: imgforge $(UNIT_BINS)
	@IMGF_BUILD_DIR=$(B) bash tests/lib/run-integration.sh

# Everything: unit tests, then integration tests; one closing "N passed, N failed, N skipped" line.
check: imgforge $(UNIT_BINS)
	@IMGF_BUILD_DIR=$(B) bash tests/lib/run-all.sh $(UNIT_BINS)

# The unit tests and the integration scripts that need neither Docker nor a VM (their
# "# needs:" header line, tests/README.md): a few minutes, on any machine that builds imgforge.
check-quick: imgforge $(UNIT_BINS)
	@IMGF_BUILD_DIR=$(B) bash tests/lib/run-all.sh --quick $(UNIT_BINS)

# The shipped kind node image on every supported Kubernetes minor, with a real kind cluster each
# (long: each minor is built from source once per machine).
check-versions: imgforge
	@IMGF_BUILD_DIR=$(B) bash tests/lib/check-versions.sh

# The man page names the shipped configs under $(PREFIX)/share (it is written for /usr/local).
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
install: imgforge
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/imgforge \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(BASHCOMPDIR)
	install -m 0755 imgforge $(DESTDIR)$(PREFIX)/bin/imgforge
	cp -R config images $(DESTDIR)$(PREFIX)/share/imgforge/
	sed 's|/usr/local/share/imgforge|$(PREFIX)/share/imgforge|g' doc/imgforge.1 \
		>$(DESTDIR)$(MANDIR)/man1/imgforge.1
	chmod 0644 $(DESTDIR)$(MANDIR)/man1/imgforge.1
	install -m 0644 contrib/imgforge.bash $(DESTDIR)$(BASHCOMPDIR)/imgforge

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/imgforge
	rm -rf $(DESTDIR)$(PREFIX)/share/imgforge
	rm -f $(DESTDIR)$(MANDIR)/man1/imgforge.1 $(DESTDIR)$(BASHCOMPDIR)/imgforge

# doc/imgforge.1 and contrib/imgforge.bash from the binary's subcommand and option tables
# (hack/gen-docs.sh); t0030 fails when the committed ones differ from what this writes.
docs: imgforge
	bash hack/gen-docs.sh ./imgforge

# What building and running need; `bash hack/install-deps.sh --test` adds the tests' tools.
deps:
	bash hack/install-deps.sh

FORMAT_SRCS = $(wildcard src/*.c src/*.h src/*/*.c src/*/*.h builders/*.c builders/*.h \
	provisioners/*.c provisioners/*.h post-processors/*.c tests/unit/*.c tests/unit/*.h fuzz/*.c)
lint:
	clang-format --dry-run --Werror $(FORMAT_SRCS)
	for f in hack/*.sh tests/lib/*.sh tests/integration/*.sh bench/*.sh .ci/run contrib/*.bash; do bash -n $$f || exit 1; done
format:
	clang-format -i $(FORMAT_SRCS)

# Fuzz targets link the parsers and what they need, not the builders and provisioners.
FUZZ_SRCS := $(wildcard fuzz/fuzz-*.c)
FUZZ_CORE := $(filter-out src/engine.c src/provisioner.c src/stepcache%.c src/plugins.c,$(CORE_SRCS))
fuzz: $(patsubst fuzz/%.c,$(B)/fuzz/%,$(FUZZ_SRCS))
$(B)/fuzz/%: fuzz/%.c $(FUZZ_CORE)
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE $(SRC_IQUOTE) $(PKG_CFLAGS) -DIMGF_VERSION='"fuzz"' -g -O1 \
		-include src/base/banned.h -fsanitize=fuzzer,address,undefined -o $@ $< $(FUZZ_CORE) $(LIBS)

bench: imgforge
	bash bench/kind-node.sh
	bash bench/qcow2.sh
	bash bench/upload.sh
	bash bench/ova.sh
	bash bench/formats.sh

clean:
	rm -rf build imgforge
