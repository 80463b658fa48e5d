# shoal - one Makefile for everything.
#
#   make          build bin/shoal-broker and bin/shoal (release)
#   make run      install what is missing, build, start a private PostgreSQL
#                 under ./var and run the broker on 127.0.0.1:8080
#   make stop     stop that PostgreSQL
#   make test     sanitizer build in build/asan, unit tests, end-to-end tests
#   make bench    benchmarks beside their reference tools
#   make clean

PKGS := libmicrohttpd jansson uuid libsodium libpq libcurl libcrypto

# Release objects go to build/release, test objects to build/asan: they
# never mix.  Binaries of the release build go to bin/.
SAN ?= 0
ifeq ($(SAN),1)
BUILD := build/asan
BIN := build/asan/bin
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
OPT := -O1 -g
else
BUILD := build/release
BIN := bin
SANFLAGS :=
OPT := -O2 -g
endif

CC ?= cc
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
        -Wmissing-prototypes -Wformat=2
# Recursive (=) so that pkg-config runs only when something is compiled,
# after the deps step has had its chance to install the packages.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS = $(shell pkg-config --libs $(PKGS))
CFLAGS = -std=c11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 $(OPT) $(WARN) \
         $(SANFLAGS) -Iapi -MMD -MP $(PKG_CFLAGS)
LDFLAGS = $(SANFLAGS)
LDLIBS = $(PKG_LIBS) -lpthread -lm

API_SRC := $(wildcard api/*.c)
BROKER_SRC := $(wildcard broker/*.c)
PEER_SRC := $(wildcard peer/*.c)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
MIGRATIONS := $(sort $(wildcard schemas/sql/[0-9]*.sql))

API_OBJ := $(API_SRC:%.c=$(BUILD)/%.o)
BROKER_OBJ := $(BROKER_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/migrations.o
PEER_OBJ := $(PEER_SRC:%.c=$(BUILD)/%.o)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
LIB := $(BUILD)/libshoal.a

# Terse output; `make V=1` shows every command.
ifeq ($(V),1)
Q :=
else
Q := @
endif

PY := /usr/bin/python3
VAR := $(CURDIR)/var
export SHOAL_ROOT := $(CURDIR)

.PHONY: all deps deps-test deps-bench run stop test unit e2e bench clean
.DEFAULT_GOAL := all

all: $(BIN)/shoal-broker $(BIN)/shoal

$(LIB): $(API_OBJ)
	@mkdir -p $(@D)
	@echo "  AR    $@"
	$(Q)$(AR) rcs $@ $^

$(BIN)/shoal-broker: $(BROKER_OBJ) $(LIB)
	@mkdir -p $(@D)
	@echo "  LINK  $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/shoal: $(PEER_OBJ) $(LIB)
	@mkdir -p $(@D)
	@echo "  LINK  $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	@echo "  CC    $<"
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/gen/migrations.c: $(MIGRATIONS) broker/embed-sql.sh
	@mkdir -p $(@D)
	@echo "  GEN   $@"
	$(Q)sh broker/embed-sql.sh $(MIGRATIONS) > $@.tmp && mv $@.tmp $@

$(BUILD)/gen/migrations.o: $(BUILD)/gen/migrations.c
	@echo "  CC    $<"
	$(Q)$(CC) $(CFLAGS) -Ibroker -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIB)
	@mkdir -p $(@D)
	@echo "  CC    $<"
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS) -lcmocka

-include $(API_OBJ:.o=.d) $(BROKER_OBJ:.o=.d) $(PEER_OBJ:.o=.d) $(UNIT_BIN:=.d)

deps:
	@sh .ci/deps.sh build

deps-test:
	@sh .ci/deps.sh test

deps-bench:
	@sh .ci/deps.sh bench

# --- make run -------------------------------------------------------------

run: deps
	@$(MAKE) --no-print-directory all
	@if [ -z "$$SHOAL_DATABASE_URL" ]; then sh schemas/pg.sh start $(VAR); fi
	@sh broker/run.sh

stop:
	@sh schemas/pg.sh stop $(VAR)

# --- make test ------------------------------------------------------------

test: deps-test
	@$(MAKE) --no-print-directory SAN=1 all unit-bins
	@$(MAKE) --no-print-directory SAN=1 unit
	@$(MAKE) --no-print-directory SAN=1 e2e

.PHONY: unit-bins
unit-bins: $(UNIT_BIN)

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; ./$$t; done

e2e:
	$(Q)SHOAL_BIN=$(CURDIR)/$(BIN) $(PY) -m pytest -q -p no:cacheprovider tests/e2e

# --- make bench -----------------------------------------------------------

bench: deps-bench
	@$(MAKE) --no-print-directory all
	@sh tests/bench/run.sh

clean:
	rm -rf build bin
