# moonbatch: the developer's loop. `make` builds moonbatch.core for LUA_VERSION (default 5.4) into
# build/$(LUA_VERSION)/moonbatch/core.so; `make test` and `make demo` install what is missing first.

LUA_VERSION ?= 5.4
CC ?= cc
CFLAGS ?= -O2 -g
CPPFLAGS += -D_POSIX_C_SOURCE=200809L
WARNINGS = -std=c99 -pedantic -Wall -Wextra -Wshadow -Wmissing-prototypes \
           -Wdeclaration-after-statement -Wstrict-prototypes -Wformat=2 -Werror=implicit
LIBFLAG ?= -shared
# Lua headers: Debian's for 5.2-5.4; for the 5.1 ABI plain Lua 5.1's headers (the module then
# loads in lua5.1 and in LuaJIT alike), else LuaJIT's.
ifeq ($(LUA_VERSION),5.1)
LUA_INCDIR ?= $(firstword $(wildcard /usr/include/lua5.1) /usr/include/luajit-2.1)
else
LUA_INCDIR ?= /usr/include/lua$(LUA_VERSION)
endif
CURL_INCDIR ?=
CURL_LIBS ?= -lcurl
SQLITE_INCDIR ?=
SQLITE_LIBS ?= -lsqlite3

BUILD = build/$(LUA_VERSION)
MODULE = $(BUILD)/moonbatch/core.so
SOURCES = $(wildcard csrc/*.c)
HEADERS = $(wildcard csrc/*.h)
OBJECTS = $(patsubst csrc/%.c,$(BUILD)/obj/%.o,$(SOURCES))
INCLUDES = -I$(LUA_INCDIR) $(if $(CURL_INCDIR),-I$(CURL_INCDIR))
# moonbatch.store (the job store on SQLite, csrc/store/): its own shared object, so that
# moonbatch.core needs no SQLite
STORE_MODULE = $(BUILD)/moonbatch/store.so
STORE_SOURCES = $(wildcard csrc/store/*.c)
STORE_OBJECTS = $(patsubst csrc/store/%.c,$(BUILD)/obj/store/%.o,$(STORE_SOURCES))

# luarocks looks for curl/curl.h in /usr/include only; Debian keeps it in the multiarch folder
CURL_HEADER_DIR = $(or $(CURL_INCDIR),$(shell for d in /usr/include/$$(gcc -print-multiarch 2>/dev/null) /usr/include; do [ -f $$d/curl/curl.h ] && echo $$d && break; done))
ROCK_TREE ?= .luarocks-tree

.PHONY: all build deps test demo clean lint rock

all: build
build: $(MODULE) $(STORE_MODULE)

$(BUILD)/obj/%.o: csrc/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(WARNINGS) $(CPPFLAGS) $(CFLAGS) -fPIC $(INCLUDES) -c $< -o $@

$(MODULE): $(OBJECTS)
	@mkdir -p $(dir $@)
	$(CC) $(LIBFLAG) $(LDFLAGS) -o $@ $(OBJECTS) $(CURL_LIBS)

$(BUILD)/obj/store/%.o: csrc/store/%.c csrc/compat.h
	@mkdir -p $(dir $@)
	$(CC) $(WARNINGS) $(CPPFLAGS) $(CFLAGS) -fPIC -I$(LUA_INCDIR) $(if $(SQLITE_INCDIR),-I$(SQLITE_INCDIR)) -c $< -o $@

$(STORE_MODULE): $(STORE_OBJECTS)
	@mkdir -p $(dir $@)
	$(CC) $(LIBFLAG) $(LDFLAGS) -o $@ $(STORE_OBJECTS) $(SQLITE_LIBS)

deps:
	@scripts/install-deps

test: deps
	@scripts/install-prism
	@$(MAKE) --no-print-directory LUA_VERSION=5.4 build
	@$(MAKE) --no-print-directory LUA_VERSION=5.1 build
	@$(MAKE) --no-print-directory LUA_VERSION=5.2 build
	@$(MAKE) --no-print-directory LUA_VERSION=5.3 build
	@scripts/run-tests

demo: deps
	@$(MAKE) --no-print-directory LUA_VERSION=5.4 build
	@scripts/demo

# the HTML API reference of the Lua layer, from its doc comments, into build/docs/ (see config.ld)
.PHONY: docs
docs:
	@scripts/install-deps lua-ldoc
	@rm -rf build/docs
	ldoc .

# install the rock into ROCK_TREE (lua-cjson comes from Debian, hence --deps-mode=none)
rock:
	luarocks --lua-version=$(LUA_VERSION) --tree=$(ROCK_TREE) make --deps-mode=none \
		moonbatch-scm-1.rockspec CURL_INCDIR=$(CURL_HEADER_DIR)

# benchmarks against curl, wrk and the openai npm SDK (not part of make test); CASES picks some
.PHONY: bench
bench: deps
	@$(MAKE) --no-print-directory LUA_VERSION=5.4 build
	@scripts/bench $(CASES)

# Sanitizers (clang): moonbatch.core built with AddressSanitizer, LeakSanitizer and UBSan into
# build/asan/5.4, a Lua 5.4 launcher that carries their runtime (csrc/tools/asan_lua.c), and
# every spec run under it (scripts/check-asan)
SANITIZE_CC ?= clang-14
SANITIZE_PACKAGES = clang-14 libclang-rt-14-dev llvm-14
SANITIZE = -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
LUA54_INCDIR ?= /usr/include/lua5.4
LUA54_LIBS ?= -llua5.4
ASAN_LUA = build/asan/lua5.4

.PHONY: check-asan
check-asan:
	@scripts/install-deps $(SANITIZE_PACKAGES)
	@scripts/install-prism
	@$(MAKE) --no-print-directory LUA_VERSION=5.4 BUILD=build/asan/5.4 CC=$(SANITIZE_CC) \
		CFLAGS="$(SANITIZE)" LDFLAGS="$(SANITIZE)" build
	@$(MAKE) --no-print-directory $(ASAN_LUA)
	@scripts/check-asan

$(ASAN_LUA): csrc/tools/asan_lua.c
	@mkdir -p $(dir $@)
	$(SANITIZE_CC) $(WARNINGS) $(CPPFLAGS) $(SANITIZE) -I$(LUA54_INCDIR) $< -o $@ $(LUA54_LIBS)

# libFuzzer harnesses (fuzz/): the JSONL validator (with SSE2 and without) and reply_push, each
# run for FUZZ_SECONDS on a copy of its seed corpus in fuzz/corpus (scripts/fuzz)
FUZZ_SECONDS ?= 60
FUZZ_FLAGS = $(WARNINGS) $(CPPFLAGS) $(SANITIZE) -fsanitize=fuzzer -Icsrc
FUZZERS = build/fuzz/validate_fuzz build/fuzz/validate_fuzz_nosimd build/fuzz/reply_fuzz

.PHONY: fuzz
fuzz:
	@scripts/install-deps $(SANITIZE_PACKAGES)
	@$(MAKE) --no-print-directory $(FUZZERS)
	@scripts/fuzz $(FUZZ_SECONDS) $(FUZZERS)

build/fuzz/validate_fuzz: fuzz/validate_fuzz.c csrc/validate.c csrc/validate.h
	@mkdir -p $(dir $@)
	$(SANITIZE_CC) $(FUZZ_FLAGS) -DVALIDATE_CORE_ONLY $< csrc/validate.c -o $@

build/fuzz/validate_fuzz_nosimd: fuzz/validate_fuzz.c csrc/validate.c csrc/validate.h
	@mkdir -p $(dir $@)
	$(SANITIZE_CC) $(FUZZ_FLAGS) -DVALIDATE_CORE_ONLY -DVALIDATE_NO_SIMD $< csrc/validate.c -o $@

build/fuzz/reply_fuzz: fuzz/reply_fuzz.c csrc/reply.c csrc/reply.h csrc/compat.h
	@mkdir -p $(dir $@)
	$(SANITIZE_CC) $(FUZZ_FLAGS) -I$(LUA54_INCDIR) $< csrc/reply.c -o $@ $(LUA54_LIBS)

lint:
	luacheck lua bin/moonbatch spec examples

clean:
	rm -rf build $(ROCK_TREE)
