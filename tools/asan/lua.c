/* tools/asan/lua.c: a small `lua5.4` for `make check-asan`, built with -fsanitize=address,undefined.
 *
 * The sanitizer runtime lives in this executable only: it links Debian's liblua5.4 and loads
 * an instrumented moonbatch.core (build/asan/5.4) with `require`, so the module's memory errors,
 * leaks and undefined behaviour are caught, while the processes the specs start (curl, nginx,
 * node) stay plain. It does what `lua5.4` does for the ways the specs call it:
 *
 *   asan-lua5.4 [-e stat] [-l name] [-v] [--] [script | -] [args...]
 *
 * LUA_INIT_5_4 or LUA_INIT runs first; `arg` is set up as lua.c does (arg[0] is the script,
 * arg[-1] this program, so a spec that starts `arg[-1]` starts this launcher again); the script
 * gets its arguments as `...`; an error prints a traceback and exits with status 1; Ctrl-C
 * (SIGINT) during a call raises "interrupted!" there, as in lua.c. The state is closed at the
 * end, so LeakSanitizer sees only memory nobody freed. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

static const char *progname = "asan-lua5.4";
/* the state, where LeakSanitizer finds it when a script ends in os.exit() without closing it:
 * what the state holds is then still reachable, not leaked */
static lua_State *global_state;

/* ** message handler: the error with a traceback (non-string errors via __tostring) */
static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* ** report a failed status's message on stderr; returns the status */
static int report(lua_State *L, int status)
{
    if (status != LUA_OK) {
        fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
        fflush(stderr);
        lua_pop(L, 1);
    }
    return status;
}

/* ** the hook a SIGINT sets: raise "interrupted!" at the next thing Lua does */
static void stop_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted!");
}

/* ** SIGINT during a call: a second one ends the process; this one stops Lua at once */
static void on_interrupt(int sig)
{
    signal(sig, SIG_DFL);
    lua_sethook(global_state, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT, 1);
}

/* ** call the function below `nargs` arguments with the traceback handler, keep `nres` results */
static int docall(lua_State *L, int nargs, int nres)
{
    int base = lua_gettop(L) - nargs, status;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    signal(SIGINT, on_interrupt);
    status = lua_pcall(L, nargs, nres, base);
    signal(SIGINT, SIG_DFL);
    lua_remove(L, base);
    return status;
}

static int dostring(lua_State *L, const char *code, const char *name)
{
    int status = luaL_loadbuffer(L, code, strlen(code), name);
    if (status == LUA_OK)
        status = docall(L, 0, 0);
    return report(L, status);
}

/* ** -l name: require(name), the result in the global `name` */
static int dolibrary(lua_State *L, const char *name)
{
    int status;
    lua_getglobal(L, "require");
    lua_pushstring(L, name);
    status = docall(L, 1, 1);
    if (status == LUA_OK)
        lua_setglobal(L, name);
    return report(L, status);
}

static int doinit(lua_State *L)
{
    const char *name = "=LUA_INIT_5_4", *init = getenv(name + 1);
    if (init == NULL) {
        name = "=LUA_INIT";
        init = getenv(name + 1);
    }
    if (init == NULL)
        return LUA_OK;
    if (init[0] == '@') {
        int status = luaL_loadfile(L, init + 1);
        if (status == LUA_OK)
            status = docall(L, 0, 0);
        return report(L, status);
    }
    return dostring(L, init, name);
}

/* ** the global `arg`: argv[script] at 0, what comes before it negative, after it positive */
static void createargtable(lua_State *L, char **argv, int argc, int script)
{
    int i;
    lua_createtable(L, argc - script - 1, script + 1);
    for (i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script);
    }
    lua_setglobal(L, "arg");
}

/* ** run the script argv[script] ("-" reads stdin) with the arguments after it */
static int doscript(lua_State *L, char **argv, int argc, int script)
{
    const char *fname = argv[script];
    int status, i;
    if (strcmp(fname, "-") == 0 && strcmp(argv[script - 1], "--") != 0)
        fname = NULL; /* stdin */
    status = luaL_loadfile(L, fname);
    if (status == LUA_OK) {
        luaL_checkstack(L, argc - script, "too many arguments to script");
        for (i = script + 1; i < argc; i++)
            lua_pushstring(L, argv[i]);
        status = docall(L, argc - script - 1, 0);
    }
    return report(L, status);
}

/* ** the main work, in protected mode so that a memory error is reported, not fatal */
static int pmain(lua_State *L)
{
    int argc = (int)lua_tointeger(L, 1);
    char **argv = (char **)lua_touserdata(L, 2);
    int script = 0, i;
    /* find the script: the first argument that is not an option (or the one after "--") */
    for (i = 1; i < argc && script == 0; i++) {
        if (argv[i][0] != '-' || strcmp(argv[i], "-") == 0) {
            script = i;
        } else if (strcmp(argv[i], "--") == 0) {
            if (i + 1 < argc)
                script = i + 1;
            break;
        } else if (strcmp(argv[i], "-e") == 0 || strcmp(argv[i], "-l") == 0) {
            if (++i >= argc) {
                fprintf(stderr, "%s: '%s' needs an argument\n", progname, argv[i - 1]);
                return 0;
            }
        } else if (strcmp(argv[i], "-v") != 0) {
            fprintf(stderr, "usage: %s [-e stat] [-l name] [-v] [--] [script | -] [args]\n"
                            "(unrecognized option '%s')\n", progname, argv[i]);
            return 0;
        }
    }
    luaL_checkversion(L);
    luaL_openlibs(L);
    createargtable(L, argv, argc, script);
    lua_gc(L, LUA_GCGEN, 0, 0); /* the generational mode lua.c also uses */
    if (doinit(L) != LUA_OK)
        return 0;
    /* the options in order, up to the script */
    for (i = 1; i < (script ? script : argc) && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "-v") == 0) {
            printf("%s (%s, AddressSanitizer)\n", LUA_COPYRIGHT, progname);
            fflush(stdout);
        } else if (strcmp(argv[i], "-e") == 0 || strcmp(argv[i], "-l") == 0) {
            const char *what = argv[++i];
            if ((argv[i - 1][1] == 'e' ? dostring(L, what, "=(command line)")
                                       : dolibrary(L, what)) != LUA_OK)
                return 0;
        }
    }
    if (script != 0 && doscript(L, argv, argc, script) != LUA_OK)
        return 0;
    lua_pushboolean(L, 1);
    return 1;
}

/* LeakSanitizer checks this process at its exit; the interpreters the specs start from it (arg[-1])
 * run without it. Its exit-time tracer now and then crashes on this kernel ("Tracer caught signal
 * 11", LLVM 14), which fails a child's exit status at random; the leaks of the C module are
 * checked in this process, which runs every spec's calls, and under valgrind by make test. The
 * flags of this process were read when it started: only the environment its children get changes.
 * MOONBATCH_ASAN_CHILD_LEAKS=1 keeps the check in the children too. */
static void children_without_leak_check(void)
{
    static char value[4096];
    const char *options = getenv("ASAN_OPTIONS");
    const char *keep = getenv("MOONBATCH_ASAN_CHILD_LEAKS");
    if (keep != NULL && strcmp(keep, "1") == 0)
        return;
    if (snprintf(value, sizeof value, "%s%sdetect_leaks=0", options ? options : "",
                 options && options[0] ? ":" : "") < (int)sizeof value)
        setenv("ASAN_OPTIONS", value, 1);
}

int main(int argc, char **argv)
{
    lua_State *L;
    int status, ok;
    children_without_leak_check();
    L = global_state = luaL_newstate();
    if (argv[0] && argv[0][0])
        progname = argv[0];
    if (L == NULL) {
        fprintf(stderr, "%s: cannot create state: not enough memory\n", progname);
        return EXIT_FAILURE;
    }
    lua_pushcfunction(L, pmain);
    lua_pushinteger(L, argc);
    lua_pushlightuserdata(L, argv);
    status = lua_pcall(L, 2, 1, 0);
    ok = lua_toboolean(L, -1);
    report(L, status);
    lua_close(L);
    return (ok && status == LUA_OK) ? EXIT_SUCCESS : EXIT_FAILURE;
}
