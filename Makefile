# toolgate build. Plain GNU Make + pkg-config.
#
#   make            build build/toolgate and the demo backend
#   make test       install what is missing, build, run every test (unit + e2e)
#   make asan       the same tests against an ASan+UBSan build (build/asan/)
#   make demo       install, build, start the demo backend and the gateway
#   make bench      benchmarks against peers; appends to bench/RESULTS.md
#   make fuzz       build the libFuzzer drivers (clang) and run each briefly
#   make format     clang-format every C source
#   make man        the manual page, made from the binary's --help texts (BUILD/man/)
#   make install    binary, manual, docs, example config, systemd unit (PREFIX, DESTDIR)
#   make uninstall  removes what install put there (a changed config and the state stay)
#   make deb        the Debian package, BUILD/toolgate_VERSION-1_ARCH.deb
#   make clean

BUILD    ?= build
CC       ?= cc
PKGS     := libuv jansson libcurl yaml-0.1 openssl libpcre2-8 libhs sqlite3 hiredis libpq libseccomp libzstd libsodium
VERSION  := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
GIT_REV  := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

OPT      ?= -O2
SAN      ?=
WARN     := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wformat=2 -Wvla
# Hardening, as Debian builds its packages (dpkg-buildflags): fortified libc calls and stack
# protection (not with the sanitizers, which check the same and more, nor at -O0), full RELRO.
HARDEN   ?= $(if $(SAN)$(filter -O0,$(OPT)),,-D_FORTIFY_SOURCE=2 -fstack-protector-strong)
CFLAGS   += -std=c11 -D_GNU_SOURCE -g $(OPT) $(WARN) $(SAN) $(HARDEN) -fno-strict-aliasing \
            -Isrc -DTOOLGATE_VERSION='"$(VERSION)"' -DTOOLGATE_REV='"$(GIT_REV)"' \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDFLAGS  += $(SAN) -Wl,-z,relro -Wl,-z,now
# The allocator: mimalloc replaces libc's malloc in the whole process (every library's
# allocations too) unless MALLOC=libc or a sanitizer build, whose own allocator must stay. A
# governed call makes about 300 allocations; with glibc's they were 15% of the CPU.
MALLOC   ?= $(if $(SAN),libc,mimalloc)
ifeq ($(MALLOC),mimalloc)
CFLAGS   += -DTOOLGATE_MIMALLOC=1
LDLIBS   += -lmimalloc
else ifneq ($(MALLOC),libc)
$(error MALLOC must be mimalloc or libc, not "$(MALLOC)")
endif
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser -lpthread -lm

LIB_SRC  := $(shell find src -name '*.c' ! -path src/main.c | sort)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
# The dashboard's files (src/admin/ui/) become a generated C file compiled into the library.
UI_ASSETS := $(sort $(wildcard src/admin/ui/*.html src/admin/ui/*.css src/admin/ui/*.js))
UI_GEN   := $(BUILD)/gen/admin_ui_assets.c
LIB_OBJ  += $(UI_GEN:%.c=$(BUILD)/obj/%.o)
# Unit tests mirror src/ (tests/unit/<folder>/test_*.c); the demo backend's live with it.
TEST_SRC := $(sort $(shell find tests/unit -name 'test_*.c' 2>/dev/null))
EHR_TEST_SRC := $(sort $(wildcard examples/ehr-backend/tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%) \
            $(EHR_TEST_SRC:examples/ehr-backend/tests/%.c=$(BUILD)/tests/ehr-backend/%)
EHR_SRC  := $(sort $(wildcard examples/ehr-backend/*.c))
EHR_OBJ  := $(EHR_SRC:%.c=$(BUILD)/obj/%.o)
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))

.PHONY: all deps test test-only asan demo bench fuzz format clean check-format \
        man install uninstall deb

all: $(BUILD)/toolgate $(BUILD)/ehr-backend $(TEST_BIN)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# The revision is compiled into the build info (--version, toolgate_build_info): objects that
# use it are rebuilt when it changes.
REV_STAMP := $(BUILD)/.rev-$(GIT_REV)
$(REV_STAMP):
	@mkdir -p $(BUILD)
	@rm -f $(BUILD)/.rev-*
	@touch $@
$(BUILD)/obj/src/main.o $(BUILD)/obj/src/core/stats.o $(BUILD)/obj/src/admin/admin.o: $(REV_STAMP)

$(UI_GEN): $(UI_ASSETS) scripts/embed-assets.sh
	@scripts/embed-assets.sh $@ $(UI_ASSETS)

$(BUILD)/libtoolgate.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/toolgate: $(BUILD)/obj/src/main.o $(BUILD)/libtoolgate.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/ehr-backend: $(EHR_OBJ) $(BUILD)/libtoolgate.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(BUILD)/libtoolgate.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

$(BUILD)/tests/ehr-backend/%: $(BUILD)/obj/examples/ehr-backend/tests/%.o $(BUILD)/libtoolgate.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

$(BUILD)/obj/tests/unit/%.o: tests/unit/%.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) -Itests/unit -MMD -MP -c $< -o $@

deps:
	@scripts/install-deps.sh

# test: everything a user needs, from a fresh machine.
test: deps
	@$(MAKE) --no-print-directory all
	@scripts/run-tests.sh $(BUILD)

# test-only: run the suite against an existing build.
test-only: all
	@scripts/run-tests.sh $(BUILD)

asan: deps
	@$(MAKE) --no-print-directory BUILD=build/asan OPT=-O1 \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" all
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	    scripts/run-tests.sh build/asan

demo: deps
	@$(MAKE) --no-print-directory $(BUILD)/toolgate $(BUILD)/ehr-backend
	@scripts/demo.sh $(BUILD)

bench: deps
	@$(MAKE) --no-print-directory $(BUILD)/toolgate $(BUILD)/ehr-backend
	@bench/run.sh $(BUILD)

fuzz: deps
	@scripts/fuzz.sh

format:
	clang-format -i $$(find src tests examples bench -name '*.[ch]')

check-format:
	clang-format --dry-run --Werror $$(find src tests examples -name '*.[ch]')

clean:
	rm -rf build

# Installation (FHS). Under PREFIX=/usr the configuration goes to /etc and the unit to
# /lib/systemd/system (Debian 12's places); under any other prefix both stay inside it
# (/usr/local/etc, /usr/local/lib/systemd/system). State is always /var/lib/toolgate, where
# the unit's StateDirectory= puts it.
PREFIX        ?= /usr/local
DESTDIR       ?=
BINDIR        ?= $(PREFIX)/bin
MANDIR        ?= $(PREFIX)/share/man
DOCDIR        ?= $(PREFIX)/share/doc/toolgate
SYSCONFDIR    ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
UNITDIR       ?= $(if $(filter /usr,$(PREFIX)),/lib/systemd/system,$(PREFIX)/lib/systemd/system)
STATEDIR      ?= /var/lib/toolgate
EXAMPLE_CONF  := examples/production/toolgate.yaml
DOCS          := README.md $(sort $(wildcard docs/*.md))

man: $(BUILD)/man/toolgate.1

$(BUILD)/man/toolgate.1: $(BUILD)/toolgate packaging/man/gen-man.sh
	@mkdir -p $(dir $@)
	packaging/man/gen-man.sh $(BUILD)/toolgate > $@.tmp && mv $@.tmp $@

$(BUILD)/systemd/toolgate.service: packaging/systemd/toolgate.service.in
	@mkdir -p $(dir $@)
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' $< > $@.tmp && mv $@.tmp $@

# The unit is made per install (its paths follow PREFIX), so it is remade every time.
.PHONY: $(BUILD)/systemd/toolgate.service

install: $(BUILD)/toolgate $(BUILD)/man/toolgate.1 $(BUILD)/systemd/toolgate.service
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DOCDIR)/examples \
	    $(DESTDIR)$(SYSCONFDIR)/toolgate $(DESTDIR)$(UNITDIR)
	install -m 0755 $(BUILD)/toolgate $(DESTDIR)$(BINDIR)/toolgate
	install -m 0644 $(BUILD)/man/toolgate.1 $(DESTDIR)$(MANDIR)/man1/toolgate.1
	install -m 0644 $(DOCS) $(DESTDIR)$(DOCDIR)/
	install -m 0644 $(EXAMPLE_CONF) $(DESTDIR)$(DOCDIR)/examples/toolgate.yaml
	install -m 0644 $(BUILD)/systemd/toolgate.service $(DESTDIR)$(UNITDIR)/toolgate.service
	@# An existing configuration is the operator's: it is never overwritten.
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/toolgate/toolgate.yaml ]; then \
	    echo "install: keeping $(DESTDIR)$(SYSCONFDIR)/toolgate/toolgate.yaml"; \
	else \
	    echo "install -m 0644 $(EXAMPLE_CONF) $(DESTDIR)$(SYSCONFDIR)/toolgate/toolgate.yaml"; \
	    install -m 0644 $(EXAMPLE_CONF) $(DESTDIR)$(SYSCONFDIR)/toolgate/toolgate.yaml; \
	fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/toolgate $(DESTDIR)$(MANDIR)/man1/toolgate.1 \
	    $(DESTDIR)$(UNITDIR)/toolgate.service
	rm -rf $(DESTDIR)$(DOCDIR)
	@# The configuration goes only when it is still the example; the state always stays.
	@if cmp -s $(EXAMPLE_CONF) $(DESTDIR)$(SYSCONFDIR)/toolgate/toolgate.yaml; then \
	    rm -f $(DESTDIR)$(SYSCONFDIR)/toolgate/toolgate.yaml; \
	    rmdir $(DESTDIR)$(SYSCONFDIR)/toolgate 2>/dev/null || true; \
	elif [ -e $(DESTDIR)$(SYSCONFDIR)/toolgate/toolgate.yaml ]; then \
	    echo "uninstall: keeping the changed $(DESTDIR)$(SYSCONFDIR)/toolgate/toolgate.yaml"; \
	fi
	@[ ! -d $(DESTDIR)$(STATEDIR) ] || echo "uninstall: keeping the state in $(DESTDIR)$(STATEDIR)"

# The Debian package: `make install` into a staging root under /usr, then
# packaging/debian/build-deb.sh adds what Debian policy asks for (see docs/operations.md).
deb: $(BUILD)/toolgate $(BUILD)/man/toolgate.1
	rm -rf $(BUILD)/deb
	@$(MAKE) --no-print-directory -o $(BUILD)/toolgate -o $(BUILD)/man/toolgate.1 \
	    install PREFIX=/usr DESTDIR=$(abspath $(BUILD))/deb/root >/dev/null
	packaging/debian/build-deb.sh $(BUILD)/deb/root $(BUILD)

-include $(LIB_OBJ:.o=.d) $(EHR_OBJ:.o=.d) $(BUILD)/obj/src/main.d \
         $(TEST_SRC:tests/unit/%.c=$(BUILD)/obj/tests/unit/%.d) \
         $(EHR_TEST_SRC:%.c=$(BUILD)/obj/%.d)
