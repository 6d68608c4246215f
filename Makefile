# toolgate build. Plain GNU Make + pkg-config.
#
#   make            build build/toolgate and the demo backend
#   make test       install what is missing, build, run every test (unit + e2e)
#   make asan       the same tests against an ASan+UBSan build (build/asan/)
#   make demo       install, build, start the demo backend and the gateway
#   make bench      benchmarks against peers; appends to bench/RESULTS.md
#   make fuzz       build the libFuzzer drivers (clang) and run each briefly
#   make format     clang-format every C source
#   make clean

BUILD    ?= build
CC       ?= cc
PKGS     := libuv jansson libcurl yaml-0.1 openssl libpcre2-8 libhs sqlite3 hiredis libpq libzstd
VERSION  := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
GIT_REV  := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

OPT      ?= -O2
SAN      ?=
WARN     := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wformat=2 -Wvla
CFLAGS   += -std=c11 -D_GNU_SOURCE -g $(OPT) $(WARN) $(SAN) -fno-strict-aliasing \
            -Isrc -DTOOLGATE_VERSION='"$(VERSION)"' -DTOOLGATE_REV='"$(GIT_REV)"' \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDFLAGS  += $(SAN)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser -lpthread -lm

LIB_SRC  := $(shell find src -name '*.c' ! -path src/main.c | sort)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
# Unit tests mirror src/ (tests/unit/<folder>/test_*.c); the demo backend's live with it.
TEST_SRC := $(sort $(shell find tests/unit -name 'test_*.c'))
EHR_TEST_SRC := $(sort $(wildcard examples/ehr-backend/tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%) \
            $(EHR_TEST_SRC:examples/ehr-backend/tests/%.c=$(BUILD)/tests/ehr-backend/%)
EHR_SRC  := $(sort $(wildcard examples/ehr-backend/*.c))
EHR_OBJ  := $(EHR_SRC:%.c=$(BUILD)/obj/%.o)
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))

.PHONY: all deps test test-only asan demo bench fuzz format clean check-format

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
$(BUILD)/obj/src/main.o $(BUILD)/obj/src/core/stats.o: $(REV_STAMP)

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

-include $(LIB_OBJ:.o=.d) $(EHR_OBJ:.o=.d) $(BUILD)/obj/src/main.d \
         $(TEST_SRC:tests/unit/%.c=$(BUILD)/obj/tests/unit/%.d) \
         $(EHR_TEST_SRC:%.c=$(BUILD)/obj/%.d)
