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
# libcurl as the platform describes it: curl-config, else pkg-config, else the compiler's default
# paths (which know Debian's multiarch /usr/include/x86_64-linux-gnu); CURL_INCDIR adds a folder
CURL_INCDIR ?=
ifeq ($(origin CURL_CFLAGS),undefined)
CURL_CFLAGS := $(shell curl-config --cflags 2>/dev/null || pkg-config --cflags libcurl 2>/dev/null)
endif
ifeq ($(origin CURL_LIBS),undefined)
CURL_LIBS := $(or $(shell curl-config --libs 2>/dev/null || pkg-config --libs libcurl 2>/dev/null),-lcurl)
endif
THREAD_LIBS ?= -pthread
SQLITE_INCDIR ?=
SQLITE_LIBS ?= -lsqlite3

BUILD = build/$(LUA_VERSION)
MODULE = $(BUILD)/moonbatch/core.so
SOURCES = $(wildcard csrc/*.c)
HEADERS = $(wildcard csrc/*.h)
OBJECTS = $(patsubst csrc/%.c,$(BUILD)/obj/%.o,$(SOURCES))
INCLUDES = -I$(LUA_INCDIR) $(if $(CURL_INCDIR),-I$(CURL_INCDIR)) $(CURL_CFLAGS)
# moonbatch.store (the job store on SQLite, csrc/store/): its own shared object, so that
# moonbatch.core needs no SQLite
STORE_MODULE = $(BUILD)/moonbatch/store.so
STORE_SOURCES = $(wildcard csrc/store/*.c)
STORE_OBJECTS = $(patsubst csrc/store/%.c,$(BUILD)/obj/store/%.o,$(STORE_SOURCES))

ROCK_TREE ?= .luarocks-tree

.PHONY: all build core deps test demo clean lint rock

all: build
build: $(MODULE) $(STORE_MODULE)
# moonbatch.core alone (make nvim: Neovim needs no job store)
core: $(MODULE)

$(BUILD)/obj/%.o: csrc/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(WARNINGS) $(CPPFLAGS) $(CFLAGS) -fPIC -pthread $(INCLUDES) -c $< -o $@

$(MODULE): $(OBJECTS)
	@mkdir -p $(dir $@)
	$(CC) $(LIBFLAG) $(LDFLAGS) -o $@ $(OBJECTS) $(CURL_LIBS) $(THREAD_LIBS)

$(BUILD)/obj/store/%.o: csrc/store/%.c csrc/compat.h csrc/util.h
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

# the HTML API reference (every module under lua/moonbatch, and moonbatch.core from
# csrc/core.luadoc), from the doc comments, into build/docs/ (see config.ld). LDoc runs under
# lua5.1, where Debian's lua-markdown is; any warning fails the target.
.PHONY: docs
docs:
	@scripts/install-deps lua-ldoc lua-markdown
	@rm -rf build/docs && mkdir -p build
	@lua5.1 $$(command -v ldoc) . >build/ldoc.log 2>&1 || { cat build/ldoc.log; exit 1; }
	@if grep -v -e '^reading configuration from config.ld$$' -e '^output written to ' build/ldoc.log; then \
		echo "make docs: LDoc warned (above)" >&2; exit 1; fi
	@echo "make docs: build/docs/index.html"

# the man page moonbatch(1), from the command line's help texts (moonbatch.cli.man), into
# build/man/moonbatch.1: `man -l build/man/moonbatch.1` reads it
.PHONY: man
man:
	@mkdir -p build/man
	lua5.4 -e "package.path = 'lua/?.lua;lua/?/init.lua;' .. package.path" \
		-e "package.cpath = 'build/5.4/?.so;' .. package.cpath" \
		-e "io.write(require('moonbatch.cli.man').page(require('moonbatch.cli').help(), \
			(pcall(require, 'moonbatch')) and require('moonbatch')._VERSION or nil))" > build/man/moonbatch.1.tmp
	@mv build/man/moonbatch.1.tmp build/man/moonbatch.1

# install the rock into ROCK_TREE (lua-cjson comes from Debian, hence --deps-mode=none)
rock:
	luarocks --lua-version=$(LUA_VERSION) --tree=$(ROCK_TREE) make --deps-mode=none moonbatch-scm-1.rockspec

# The release. The version lives in one place, moonbatch.core's (csrc/core.c): moonbatch.version,
# moonbatch._VERSION and `moonbatch --version` read it from there; `make rockspec` writes
# moonbatch-$(VERSION)-1.rockspec from the scm one; spec/rockspec_spec.lua checks they agree.
# `make dist` writes $(DIST).tar.gz (git archive of tag v$(VERSION), else of HEAD) and
# $(DIST)-1.src.rock (that archive and the rockspec), which `luarocks install` builds offline.
VERSION = $(shell sed -n 's/^ *lua_pushliteral(L, "\([0-9][0-9.]*\)");$$/\1/p' csrc/core.c)
DIST = moonbatch-$(VERSION)
DIST_REF ?= $(shell git rev-parse -q --verify "refs/tags/v$(VERSION)" >/dev/null && echo v$(VERSION) || echo HEAD)

.PHONY: version rockspec dist
version:
	@echo $(VERSION)

rockspec:
	@test -n "$(VERSION)" || { echo "make: no version literal found in csrc/core.c" >&2; exit 1; }
	lua$(LUA_VERSION) scripts/release-rockspec $(VERSION)

dist: rockspec
	@git show $(DIST_REF):$(DIST)-1.rockspec 2>/dev/null | cmp -s - $(DIST)-1.rockspec || \
		echo "make dist: $(DIST)-1.rockspec is not the one in $(DIST_REF); commit it" >&2
	@git diff --quiet HEAD || echo "make dist: uncommitted changes are not in the archive" >&2
	git archive --format=tar.gz --prefix=$(DIST)/ -o $(DIST).tar.gz $(DIST_REF)
	@rm -f $(DIST)-1.src.rock
	zip -q -j $(DIST)-1.src.rock $(DIST)-1.rockspec $(DIST).tar.gz
	@echo "$(DIST).tar.gz ($(DIST_REF)) and $(DIST)-1.src.rock"

# benchmarks against libcurl, curl, wrk and the openai npm SDK (not part of make test); CASES picks some
.PHONY: bench
bench: deps build/bench/curl_loop
	@$(MAKE) --no-print-directory LUA_VERSION=5.4 build
	@scripts/bench $(CASES)

# Neovim: what a plugin manager's build hook runs (lazy.nvim: build = "make nvim"). Builds the
# 5.1-ABI module into build/nvim against the Lua headers found, and puts it at
# lua/moonbatch/core.so, where Neovim's runtimepath loader finds require("moonbatch.core") when
# this clone is on the runtimepath; then doc/tags (:help moonbatch) when nvim is on PATH.
# Headers: LUA_INCDIR from the command line or environment, else LuaJIT's (Neovim's Lua) from
# pkg-config or the usual folders, else plain Lua 5.1's (the same ABI).
NVIM ?= nvim
NVIM_BUILD = build/nvim
NVIM_INCDIRS = $(patsubst -I%,%,$(filter -I%,$(shell pkg-config --cflags-only-I luajit 2>/dev/null))) \
  /usr/include/luajit-2.1 /usr/local/include/luajit-2.1 /opt/homebrew/include/luajit-2.1 \
  /usr/include/lua5.1 /usr/local/include/lua5.1 /usr/include/lua-5.1 /usr/local/include/lua-5.1
NVIM_LUA_INCDIR = $(if $(filter command% environment%,$(origin LUA_INCDIR)),$(LUA_INCDIR),$(patsubst %/lua.h,%,$(firstword $(wildcard $(addsuffix /lua.h,$(NVIM_INCDIRS))))))
# macOS links a Lua module as a bundle whose Lua symbols the host (nvim) provides
NVIM_LIBFLAG = $(if $(filter Darwin,$(shell uname -s)),-bundle -undefined dynamic_lookup,$(LIBFLAG))

.PHONY: nvim
nvim:
	@test -n "$(NVIM_LUA_INCDIR)" || { echo "make nvim: no Lua 5.1 headers (lua.h) found: install libluajit-5.1-dev (Debian/Ubuntu), luajit-devel (Fedora) or luajit (Homebrew), or pass LUA_INCDIR=/path/to/include" >&2; exit 1; }
	@test -f "$(NVIM_LUA_INCDIR)/lua.h" || { echo "make nvim: LUA_INCDIR=$(NVIM_LUA_INCDIR) has no lua.h" >&2; exit 1; }
	@# other headers than last time: build everything again
	@if [ "$$(cat $(NVIM_BUILD)/incdir 2>/dev/null)" != "$(NVIM_LUA_INCDIR)" ]; then \
		rm -rf $(NVIM_BUILD) && mkdir -p $(NVIM_BUILD) && echo "$(NVIM_LUA_INCDIR)" > $(NVIM_BUILD)/incdir; fi
	@$(MAKE) --no-print-directory LUA_VERSION=5.1 BUILD=$(NVIM_BUILD) LUA_INCDIR=$(NVIM_LUA_INCDIR) \
		LIBFLAG="$(NVIM_LIBFLAG)" core
	@# a new file renamed over the old one: a running nvim keeps the copy it has mapped intact
	@cp $(NVIM_BUILD)/moonbatch/core.so lua/moonbatch/core.so.new
	@mv -f lua/moonbatch/core.so.new lua/moonbatch/core.so
	@echo "make nvim: lua/moonbatch/core.so built against $(NVIM_LUA_INCDIR)/lua.h"
	@if command -v $(NVIM) >/dev/null 2>&1; then \
		$(NVIM) -u NONE -i NONE -es -c 'helptags doc' -c 'qa!' </dev/null \
			|| { echo "make nvim: helptags doc failed" >&2; exit 1; }; \
		echo "make nvim: doc/tags"; \
	else echo "make nvim: no $(NVIM) on PATH: doc/tags not made (a plugin manager makes them)"; fi

# the list case's reference: a bare loop of curl_easy_perform on one handle (bench/curl_loop.c)
build/bench/curl_loop: bench/curl_loop.c
	@mkdir -p $(dir $@)
	$(CC) $(WARNINGS) $(CPPFLAGS) $(CFLAGS) $(INCLUDES) $< -o $@ $(LDFLAGS) $(CURL_LIBS)

# Sanitizers (clang): moonbatch.core built with AddressSanitizer, LeakSanitizer and UBSan into
# build/asan/5.4, a Lua 5.4 launcher that carries their runtime (tools/asan/lua.c), and
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

$(ASAN_LUA): tools/asan/lua.c
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

build/fuzz/validate_fuzz: fuzz/validate_fuzz.c csrc/validate.c csrc/validate.h csrc/jsonbytes.h
	@mkdir -p $(dir $@)
	$(SANITIZE_CC) $(FUZZ_FLAGS) -DVALIDATE_CORE_ONLY $< csrc/validate.c -o $@

build/fuzz/validate_fuzz_nosimd: fuzz/validate_fuzz.c csrc/validate.c csrc/validate.h csrc/jsonbytes.h
	@mkdir -p $(dir $@)
	$(SANITIZE_CC) $(FUZZ_FLAGS) -DVALIDATE_CORE_ONLY -DVALIDATE_NO_SIMD $< csrc/validate.c -o $@

build/fuzz/reply_fuzz: fuzz/reply_fuzz.c csrc/reply.c csrc/reply.h csrc/compat.h csrc/jsonbytes.h
	@mkdir -p $(dir $@)
	$(SANITIZE_CC) $(FUZZ_FLAGS) -I$(LUA54_INCDIR) $< csrc/reply.c -o $@ $(LUA54_LIBS)

lint:
	luacheck lua bin/moonbatch spec examples standin bench

clean:
	rm -rf build $(ROCK_TREE) moonbatch-*.tar.gz moonbatch-*.src.rock
