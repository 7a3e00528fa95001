/* ops.c: files.upload, files.list and batches.create: each turns its arguments into the options
 * of one generic request (URL, bearer header, form or JSON body) and runs it on a session. */
#include <string.h>

#include "util.h"
#include "ops.h"
#include "options.h"
#include "session.h"

/* options every operation passes through to the generic request unchanged */
static const char *const passed_through[] = {
    "timeout", "connect_timeout", "low_speed_limit", "low_speed_time", "on_progress",
    "max_reply_bytes", "cainfo", NULL};

#define COMMON_OPTIONS \
    "base_url", "api_key", "path", "headers", "session", "prepare", "timeout", "connect_timeout", \
        "low_speed_limit", "low_speed_time", "on_progress", "max_reply_bytes", "cainfo"

static const char *const upload_options[] = {COMMON_OPTIONS, "file", "purpose", "filename",
                                             "file_field", "fields", NULL};
static const char *const list_options[] = {COMMON_OPTIONS, "purpose", "limit", "after",
                                           "query", NULL};
static const char *const list_query[] = {"purpose", "limit", "after", NULL};
static const char *const create_body[] = {"input_file_id", "endpoint", NULL};
static const char *const create_options[] = {COMMON_OPTIONS, "input_file_id", "endpoint",
                                             "completion_window", "metadata", "replace",
                                             "fields", NULL};

/* ** push base_url .. path, with exactly one slash between them */
static void push_url(lua_State *L, int opts, const char *who, const char *default_path)
{
    const char *base = options_string(L, opts, "base_url", 1, who);
    const char *path = options_string(L, opts, "path", 0, who);
    size_t blen = strlen(base);
    if (path == NULL)
        path = default_path;
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    lua_pushlstring(L, base, blen);
    if (path[0] != '/')
        lua_pushliteral(L, "/");
    else
        lua_pushliteral(L, "");
    lua_pushstring(L, path);
    lua_concat(L, 3);
}

/* ** copy opts[name] (a table, when given) into the table at `to`; with `string_keys`, a key
 * that is not a string raises */
static void copy_option_table(lua_State *L, int opts, const char *name, int to, const char *who,
                              int string_keys)
{
    to = util_absindex(L, to);
    if (options_get(L, opts, name, LUA_TTABLE, who)) {
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) {
            if (string_keys && lua_type(L, -2) != LUA_TSTRING)
                luaL_error(L, "%s: bad option '%s' (string names expected)", who, name);
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_settable(L, to);
        }
    }
    lua_pop(L, 1);
}

/* ** copy the options `names` (a NULL-ended list) from `opts` into the table at `to` */
static void copy_options(lua_State *L, int opts, const char *const *names, int to)
{
    to = util_absindex(L, to);
    for (; *names != NULL; names++) {
        lua_getfield(L, opts, *names);
        lua_setfield(L, to, *names);
    }
}

/* ** start the request table at the stack top: url, method, headers (bearer added), pass-through */
static int new_request(lua_State *L, int opts, const char *who, const char *method,
                       const char *default_path)
{
    const char *key = options_string(L, opts, "api_key", 0, who);
    int req;
    lua_newtable(L);
    req = lua_gettop(L);
    push_url(L, opts, who, default_path);
    lua_setfield(L, req, "url");
    lua_pushstring(L, method);
    lua_setfield(L, req, "method");

    lua_newtable(L);
    copy_option_table(L, opts, "headers", -1, who, 0);
    if (key != NULL) {
        lua_pushfstring(L, "Bearer %s", key);
        lua_setfield(L, -2, "Authorization");
    }
    lua_setfield(L, req, "headers");

    copy_options(L, opts, passed_through, req);
    return req;
}

/* ** run the request table at `req` on opts.session or the default session (upvalue 2); with
 * opts.prepare, return the table instead, for a scheduler to run (it holds the bearer key) */
static int run(lua_State *L, int opts, int req, const char *who)
{
    session *s;
    if (options_get(L, opts, "prepare", LUA_TBOOLEAN, who) && lua_toboolean(L, -1)) {
        lua_pushvalue(L, req);
        return 1;
    }
    lua_pop(L, 1);
    if (options_get(L, opts, "session", LUA_TUSERDATA, who))
        s = session_check(L, -1, "option 'session'");
    else
        s = session_check(L, lua_upvalueindex(2), "default session");
    lua_pop(L, 1);
    return session_request(L, s, req);
}

/* ** append {name=, value=} to the form list at `form` */
static void add_text_part(lua_State *L, int form, const char *name, int value_idx)
{
    value_idx = util_absindex(L, value_idx);
    lua_createtable(L, 0, 2);
    lua_pushstring(L, name);
    lua_setfield(L, -2, "name");
    lua_pushvalue(L, value_idx);
    lua_setfield(L, -2, "value");
    lua_rawseti(L, form, (int)lua_rawlen(L, form) + 1);
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* core.files.upload{base_url, api_key, file, purpose = "batch", filename, file_field = "file",
 * fields = {extra text fields}, path = "/files", ...}: POST multipart, file streamed from disk */
int ops_files_upload(lua_State *L)
{
    static const char who[] = "moonbatch.core.files.upload";
    const char *file, *filename, *file_field;
    int req, form;
    luaL_checktype(L, 1, LUA_TTABLE);
    options_check_known(L, 1, upload_options, who);
    file = options_string(L, 1, "file", 1, who);
    filename = options_string(L, 1, "filename", 0, who);
    file_field = options_string(L, 1, "file_field", 0, who);
    req = new_request(L, 1, who, "POST", "/files");

    lua_newtable(L);
    form = lua_gettop(L);
    if (!options_get(L, 1, "purpose", LUA_TSTRING, who)) {
        lua_pop(L, 1);
        lua_pushliteral(L, "batch");
    }
    add_text_part(L, form, "purpose", -1);
    lua_pop(L, 1);
    if (options_get(L, 1, "fields", LUA_TTABLE, who)) {
        int fields = lua_gettop(L), names = options_sorted_keys(L, fields, who, "fields", 0), i;
        for (i = 1; i <= (int)lua_rawlen(L, names); i++) {
            lua_rawgeti(L, names, i);
            lua_pushvalue(L, -1);
            lua_gettable(L, fields);
            add_text_part(L, form, lua_tostring(L, -2), lua_gettop(L));
            lua_pop(L, 2);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);

    lua_createtable(L, 0, 3);
    lua_pushstring(L, file_field ? file_field : "file");
    lua_setfield(L, -2, "name");
    lua_pushstring(L, file);
    lua_setfield(L, -2, "file");
    lua_pushstring(L, filename ? filename : base_name(file));
    lua_setfield(L, -2, "filename");
    lua_rawseti(L, form, (int)lua_rawlen(L, form) + 1);
    lua_setfield(L, req, "form");
    return run(L, 1, req, who);
}

/* core.files.list{base_url, api_key, purpose, limit, after, query = {extra}, path = "/files"} */
int ops_files_list(lua_State *L)
{
    static const char who[] = "moonbatch.core.files.list";
    int req, query;
    luaL_checktype(L, 1, LUA_TTABLE);
    options_check_known(L, 1, list_options, who);
    if (options_get(L, 1, "limit", LUA_TNUMBER, who)) {
        lua_Number n = lua_tonumber(L, -1);
        if (!(n >= 1 && n <= 1e9) || n != (lua_Number)(long)n)
            luaL_error(L, "%s: bad option 'limit' (an integer >= 1 expected)", who);
    }
    lua_pop(L, 1);
    options_string(L, 1, "purpose", 0, who);
    options_string(L, 1, "after", 0, who);
    req = new_request(L, 1, who, "GET", "/files");

    /* the request's query: the extra parameters, then the documented ones over them */
    lua_newtable(L);
    query = lua_gettop(L);
    copy_option_table(L, 1, "query", query, who, 0);
    copy_options(L, 1, list_query, query);
    lua_setfield(L, req, "query");
    return run(L, 1, req, who);
}

/* core.batches.create{base_url, api_key, input_file_id, endpoint, completion_window = "24h",
 * metadata, replace, fields = {extra body fields}, path = "/batches"}: the endpoint is the
 * caller's (a provider's default lives in its Lua data, not here) */
int ops_batches_create(lua_State *L)
{
    static const char who[] = "moonbatch.core.batches.create";
    int req, body;
    luaL_checktype(L, 1, LUA_TTABLE);
    options_check_known(L, 1, create_options, who);
    options_string(L, 1, "input_file_id", 1, who);
    options_string(L, 1, "endpoint", 1, who);
    req = new_request(L, 1, who, "POST", "/batches");
    lua_newtable(L);
    body = lua_gettop(L);
    copy_option_table(L, 1, "fields", body, who, 1);
    copy_options(L, 1, create_body, body);
    if (options_get(L, 1, "completion_window", LUA_TSTRING, who) == 0) {
        lua_pop(L, 1);
        lua_pushliteral(L, "24h");
    }
    lua_setfield(L, body, "completion_window");
    options_get(L, 1, "metadata", LUA_TTABLE, who);
    lua_setfield(L, body, "metadata");
    options_get(L, 1, "replace", LUA_TTABLE, who);
    lua_setfield(L, body, "replace");
    lua_setfield(L, req, "json");
    return run(L, 1, req, who);
}
