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

BUILD = build/$(LUA_VERSION)
MODULE = $(BUILD)/moonbatch/core.so
SOURCES = $(wildcard csrc/*.c)
HEADERS = $(wildcard csrc/*.h)
OBJECTS = $(patsubst csrc/%.c,$(BUILD)/obj/%.o,$(SOURCES))
INCLUDES = -I$(LUA_INCDIR) $(if $(CURL_INCDIR),-I$(CURL_INCDIR))

# luarocks looks for curl/curl.h in /usr/include only; Debian keeps it in the multiarch folder
CURL_HEADER_DIR = $(or $(CURL_INCDIR),$(shell for d in /usr/include/$$(gcc -print-multiarch 2>/dev/null) /usr/include; do [ -f $$d/curl/curl.h ] && echo $$d && break; done))
ROCK_TREE ?= .luarocks-tree

.PHONY: all build deps test demo clean lint rock

all: build
build: $(MODULE)

$(BUILD)/obj/%.o: csrc/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(WARNINGS) $(CPPFLAGS) $(CFLAGS) -fPIC $(INCLUDES) -c $< -o $@

$(MODULE): $(OBJECTS)
	@mkdir -p $(dir $@)
	$(CC) $(LIBFLAG) $(LDFLAGS) -o $@ $(OBJECTS) $(CURL_LIBS)

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

lint:
	luacheck lua bin/moonbatch spec examples

clean:
	rm -rf build $(ROCK_TREE)
