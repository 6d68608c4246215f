/*
 * The safety layer's closed world, attacked through the layer ops with request contexts built
 * in memory, in both directions:
 *
 *   class 6 — values nobody scans: JSON numbers, _meta, annotations, resource links, logger
 *   names, progress tokens, initialize, notifications, member names, base64 that decodes to
 *   text, digits of other scripts, default-ignorable code points between digits, dotted
 *   separators; and the values that cannot be rewritten (id, method, a call's target);
 *
 *   class 7 — a weaker detector wins: overlapping findings take the strictest action (a
 *   custom block over a built-in redact, a redact over a longer log, a detector that is off
 *   hiding nothing), and so do strings with more findings than are itemised.
 *
 * Negatives: text with digits of other scripts that form nothing, plain numbers, base64 of
 * benign text, binary blobs.
 */
#include "fixtures.h"

#include "layers/layer.h"
#include "layers/safety/safety-int.h"

static struct gw_request *decoded(const struct gw_config *cfg, const char *body)
{
    struct gw_request *req = gw_request_new(cfg);
    struct mcp_decode_error err;
    memset(&err, 0, sizeof err);
    if (mcp_decode(body, strlen(body), NULL, "2025-06-18", &req->rpc, &err) != 0)
        fail_msg("decode: %s\n%s", err.message, body);
    req->body = (struct gw_slice){body, strlen(body)};
    return req;
}

/* ---- the request direction ---------------------------------------------------------------- */

struct outcome {
    int verdict;
    struct gw_decision d;
    char *upstream; /* the body the core would forward (rewritten or original), malloc'd */
    char type[32];  /* the first finding's type */
    char path[160]; /* and JSON Pointer */
};

static struct outcome run_request(const struct gw_config *cfg, const char *body)
{
    struct outcome o;
    memset(&o, 0, sizeof o);
    struct gw_request *req = decoded(cfg, body);
    o.verdict = safety_layer.check(req, &o.d);
    struct gw_slice up = gw_request_upstream_body(req);
    o.upstream = strndup(up.ptr, up.len);
    if (req->findings.n) {
        snprintf(o.type, sizeof o.type, "%s", req->findings.items[0].type);
        snprintf(o.path, sizeof o.path, "%s", req->findings.items[0].path);
    }
    gw_request_free(req);
    return o;
}

/* A tools/call with these arguments (JSON text). */
static struct outcome call_args(const struct gw_config *cfg, const char *args)
{
    size_t cap = strlen(args) + 128;
    char *body = malloc(cap);
    assert_non_null(body);
    snprintf(body, cap,
             "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":"
             "\"ehr.note\",\"arguments\":%s}}",
             args);
    struct outcome o = run_request(cfg, body);
    free(body);
    return o;
}

static void expect_block(struct outcome o, const char *type, const char *path, const char *what)
{
    if (o.verdict != GW_DENY)
        fail_msg("%s: passed, forwarded %s", what, o.upstream);
    char code[64];
    snprintf(code, sizeof code, "pii.%s", type);
    if (strcmp(o.d.reason_code, code) != 0)
        fail_msg("%s: %s instead of %s (%s)", what, o.d.reason_code, code, o.d.reason);
    if (path && !strstr(o.d.reason, path))
        fail_msg("%s: the reason does not name %s: %s", what, path, o.d.reason);
    free(o.upstream);
}

static void expect_forwarded(struct outcome o, const char *has, const char *lacks, const char *what)
{
    if (o.verdict != GW_PASS)
        fail_msg("%s: denied %s", what, o.d.reason_code);
    if (has && !strstr(o.upstream, has))
        fail_msg("%s: %s lacks %s", what, o.upstream, has);
    if (lacks && strstr(o.upstream, lacks))
        fail_msg("%s: %s still has %s", what, o.upstream, lacks);
    free(o.upstream);
}

static void expect_clean(struct outcome o, const char *what)
{
    if (o.verdict != GW_PASS || strcmp(o.d.reason_code, "safety.clean") != 0)
        fail_msg("%s: %s (%s at %s)", what, o.d.reason_code, o.type, o.path);
    free(o.upstream);
}

/* ---- the response direction --------------------------------------------------------------- */

struct answer {
    int verdict;
    struct gw_decision d;
    json_t *msg; /* as the layer left it */
    char *text;  /* its compact serialization */
};

static struct answer run_response(const struct gw_config *cfg, const char *msg_text)
{
    struct answer a;
    memset(&a, 0, sizeof a);
    struct gw_request *req =
        decoded(cfg, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":"
                     "{\"name\":\"ehr.note\"}}");
    json_error_t jerr;
    a.msg = json_loads(msg_text, JSON_REJECT_DUPLICATES, &jerr);
    if (!a.msg)
        fail_msg("not JSON: %s: %s", jerr.text, msg_text);
    int modified = 0;
    a.verdict = safety_layer.on_response(req, a.msg, &modified, &a.d);
    a.text = json_dumps(a.msg, JSON_COMPACT);
    gw_request_free(req);
    return a;
}

static void answer_free(struct answer *a)
{
    json_decref(a->msg);
    free(a->text);
}

static void expect_redacted(const struct gw_config *cfg, const char *msg, const char *has,
                            const char *lacks)
{
    struct answer a = run_response(cfg, msg);
    if (a.verdict != GW_PASS)
        fail_msg("withheld (%s): %s", a.d.reason_code, msg);
    if (has && !strstr(a.text, has))
        fail_msg("%s lacks %s", a.text, has);
    if (lacks && strstr(a.text, lacks))
        fail_msg("%s still has %s", a.text, lacks);
    answer_free(&a);
}

static void expect_withheld(const struct gw_config *cfg, const char *msg, const char *type)
{
    struct answer a = run_response(cfg, msg);
    char code[64];
    snprintf(code, sizeof code, "pii.%s", type);
    if (a.verdict != GW_DENY || strcmp(a.d.reason_code, code) != 0)
        fail_msg("not withheld as %s (%s): %s", code, a.d.reason_code, msg);
    answer_free(&a);
}

static void expect_untouched(const struct gw_config *cfg, const char *msg)
{
    struct answer a = run_response(cfg, msg);
    json_error_t jerr;
    json_t *orig = json_loads(msg, 0, &jerr);
    if (a.verdict != GW_PASS || !json_equal(orig, a.msg))
        fail_msg("changed (%s): %s -> %s", a.d.reason_code, msg, a.text);
    json_decref(orig);
    answer_free(&a);
}

#define RESULT(x) "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":" x "}"
#define NOTE(m, p) "{\"jsonrpc\":\"2.0\",\"method\":\"" m "\",\"params\":" p "}"

/* ---- class 6: numbers ----------------------------------------------------------------------- */

static void test_numbers_request(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok("server: {}\n");
    /* A card as a JSON number, however it is spelled, becomes the redaction string. */
    const char *cards[] = {"4111111111111111", "4111111111111111.0", "4.111111111111111e15",
                           "41111111111111110e-1", "5555555555554444"};
    for (size_t i = 0; i < sizeof cards / sizeof cards[0]; i++) {
        char args[256];
        snprintf(args, sizeof args, "{\"card\":%s,\"n\":[1,%s]}", cards[i], cards[i]);
        expect_forwarded(call_args(cfg, args),
                         "\"card\":\"[REDACTED:CREDIT_CARD]\",\"n\":[1,\"[REDACTED:CREDIT_CARD]\"]",
                         "1111111", cards[i]);
    }
    /* A negative number: the sign is not part of the span. */
    expect_forwarded(call_args(cfg, "{\"card\":-4111111111111111}"),
                     "\"card\":\"-[REDACTED:CREDIT_CARD]\"", "1111", "negative");
    /* An SSN as a number: its member name is the context it needs; it blocks. */
    expect_block(call_args(cfg, "{\"ssn\":134677626}"), "ssn", "/params/arguments/ssn",
                 "ssn number");
    expect_block(call_args(cfg, "{\"patient\":{\"socialSecurityNumber\":134677626.0}}"), "ssn",
                 NULL, "ssn real");
    /* Numbers anywhere in the message: _meta, a progress token. */
    char body[512];
    snprintf(body, sizeof body,
             "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":"
             "\"ehr.note\",\"arguments\":{},\"_meta\":{\"progressToken\":4111111111111111}}}");
    expect_forwarded(run_request(cfg, body), "\"progressToken\":\"[REDACTED:CREDIT_CARD]\"",
                     "4111111111111111", "progress token number");
    /* Negatives: plain numbers, ids, timestamps, decimals whose digits would pass Luhn. */
    expect_clean(call_args(cfg,
                           "{\"n\":42,\"x\":3.14,\"ts\":1700000000000,\"p\":0.5555555555554444,"
                           "\"neg\":-7,\"big\":9007199254740993,\"e\":1e300,\"z\":0}"),
                 "plain numbers");
    gw_config_free(cfg);
}

static void test_numbers_response(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok("server: {}\n");
    expect_redacted(cfg,
                    RESULT("{\"content\":[],\"structuredContent\":{\"card\":4111111111111111,"
                           "\"rows\":[{\"ssn\":134677626}],\"count\":2}}"),
                    "\"card\":\"[REDACTED:CREDIT_CARD]\",\"rows\":[{\"ssn\":\"[REDACTED:SSN]\"}],"
                    "\"count\":2",
                    "4111111111111111");
    expect_redacted(cfg,
                    NOTE("notifications/progress",
                         "{\"progressToken\":4111111111111111,\"progress\":1,\"total\":2}"),
                    "\"progressToken\":\"[REDACTED:CREDIT_CARD]\"", "4111111111111111");
    expect_untouched(cfg, RESULT("{\"content\":[{\"type\":\"text\",\"text\":\"ok\"}],"
                                 "\"structuredContent\":{\"n\":42,\"p\":0.5555555555554444,"
                                 "\"ts\":1700000000000}}"));
    /* Mask and hash styles apply to numbers too. */
    struct gw_config *mask = fx_load_ok("safety: {redaction: {style: mask}}\n");
    expect_redacted(mask, RESULT("{\"structuredContent\":{\"card\":4111111111111111}}"),
                    "\"card\":\"************1111\"", NULL);
    gw_config_free(mask);
    gw_config_free(cfg);
}

/* ---- class 6: every part of every message ------------------------------------------------- */

static void test_every_part_response(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok("server: {}\n");
    const char *msgs[] = {
        /* result._meta */
        RESULT("{\"content\":[],\"_meta\":{\"note\":\"SSN 134-67-7626\"}}"),
        /* content[].annotations */
        RESULT("{\"content\":[{\"type\":\"text\",\"text\":\"ok\",\"annotations\":{\"audience\":"
               "[\"user\"],\"x-note\":\"SSN 134-67-7626\"}}]}"),
        /* a resource link's name, title, description */
        RESULT("{\"content\":[{\"type\":\"resource_link\",\"uri\":\"file:///r\",\"name\":"
               "\"SSN 134-67-7626\",\"description\":\"d\"}]}"),
        RESULT("{\"content\":[{\"type\":\"resource_link\",\"uri\":\"file:///r\",\"name\":\"r\","
               "\"description\":\"for SSN 134-67-7626\"}]}"),
        /* an embedded resource's metadata */
        RESULT("{\"content\":[{\"type\":\"resource\",\"resource\":{\"uri\":\"file:///r\","
               "\"mimeType\":\"text/plain\",\"text\":\"ok\",\"_meta\":{\"k\":\"SSN "
               "134-67-7626\"}}}]}"),
        /* a tools/list answer: descriptions, schemas */
        RESULT("{\"tools\":[{\"name\":\"t\",\"description\":\"call SSN 134-67-7626\","
               "\"inputSchema\":{\"type\":\"object\"}}]}"),
        /* initialize: instructions, server info */
        RESULT("{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"serverInfo\":{\"name\":"
               "\"s\",\"version\":\"1\"},\"instructions\":\"SSN 134-67-7626\"}"),
        /* the logger of a log message */
        NOTE("notifications/message",
             "{\"level\":\"info\",\"logger\":\"SSN 134-67-7626\",\"data\":\"x\"}"),
        /* a progress token and the notification's _meta */
        NOTE("notifications/progress", "{\"progressToken\":\"SSN 134-67-7626\",\"progress\":1}"),
        NOTE("notifications/progress",
             "{\"progressToken\":1,\"progress\":1,\"_meta\":{\"n\":\"SSN 134-67-7626\"}}"),
        /* a member name */
        RESULT("{\"structuredContent\":{\"134-67-7626\":true}}"),
        /* an error's data, deep */
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32000,\"message\":\"m\",\"data\":"
        "{\"a\":[{\"b\":\"SSN 134-67-7626\"}]}}}",
        /* a server request: sampling */
        "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"sampling/createMessage\",\"params\":"
        "{\"messages\":[{\"role\":\"user\",\"content\":{\"type\":\"text\",\"text\":\"SSN "
        "134-67-7626\"}}],\"systemPrompt\":\"SSN 134-67-7626\",\"maxTokens\":5}}",
    };
    for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++)
        expect_redacted(cfg, msgs[i], "[REDACTED:SSN]", "7626");
    /* responses.default: block withholds them all. */
    struct gw_config *strict = fx_load_ok("safety: {responses: {default: block}}\n");
    for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++)
        expect_withheld(strict, msgs[i], "ssn");
    gw_config_free(strict);
    gw_config_free(cfg);
}

static void test_every_part_request(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok("server: {}\n");
    const char *bodies[] = {
        /* params._meta of a call */
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"t\","
        "\"arguments\":{},\"_meta\":{\"progressToken\":\"134-67-7626\"}}}",
        /* initialize */
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":"
        "\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"SSN 134-67-7626\","
        "\"version\":\"1\"}}}",
        /* a notification */
        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":3,"
        "\"reason\":\"SSN 134-67-7626\"}}",
        /* tools/list's cursor, ping's _meta */
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{\"cursor\":\"SSN "
        "134-67-7626\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"_meta\":{\"x\":\"SSN "
        "134-67-7626\"}}}",
        /* a client's error answer to a server request */
        "{\"jsonrpc\":\"2.0\",\"id\":9,\"error\":{\"code\":-1,\"message\":\"SSN 134-67-7626\"}}",
        /* completion's context */
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"completion/complete\",\"params\":{\"ref\":"
        "{\"type\":\"ref/prompt\",\"name\":\"p\"},\"argument\":{\"name\":\"a\",\"value\":\"b\"},"
        "\"context\":{\"arguments\":{\"x\":\"SSN 134-67-7626\"}}}}",
        /* a member name in the arguments */
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"t\","
        "\"arguments\":{\"134-67-7626\":1}}}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
        expect_block(run_request(cfg, bodies[i]), "ssn", NULL, bodies[i]);
    /* Redactions anywhere rewrite the forwarded body. */
    expect_forwarded(run_request(cfg, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\","
                                      "\"params\":{\"protocolVersion\":\"2025-06-18\","
                                      "\"capabilities\":{},\"clientInfo\":{\"name\":\"c\","
                                      "\"version\":\"4111 1111 1111 1111\"}}}"),
                     "\"version\":\"[REDACTED:CREDIT_CARD]\"", "4111", "initialize redact");
    gw_config_free(cfg);
}

/* ---- class 6: what cannot be rewritten --------------------------------------------------- */

static void test_fixed_values(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok("server: {}\n"); /* cards redact */
    /* The id, the tool's name and a resource URI: a redaction would change what the message
     * is (and what policy judged), so it blocks. */
    expect_block(run_request(cfg, "{\"jsonrpc\":\"2.0\",\"id\":\"4111111111111111\",\"method\":"
                                  "\"ping\"}"),
                 "credit_card", "/id", "string id");
    expect_block(run_request(cfg, "{\"jsonrpc\":\"2.0\",\"id\":4111111111111111,\"method\":"
                                  "\"ping\"}"),
                 "credit_card", "/id", "integer id");
    expect_block(run_request(cfg, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
                                  "\"params\":{\"name\":\"pay-4111111111111111\",\"arguments\":"
                                  "{}}}"),
                 "credit_card", "/params/name", "tool name");
    expect_block(run_request(cfg, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/read\","
                                  "\"params\":{\"uri\":\"file:///cards/4111111111111111\"}}"),
                 "credit_card", "/params/uri", "resource uri");
    expect_block(run_request(cfg, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"prompts/get\","
                                  "\"params\":{\"name\":\"p-4111111111111111\"}}"),
                 "credit_card", "/params/name", "prompt name");
    /* What only logs there passes untouched. */
    struct outcome o = run_request(cfg, "{\"jsonrpc\":\"2.0\",\"id\":\"jane@example.com\","
                                        "\"method\":\"ping\"}");
    assert_int_equal(o.verdict, GW_PASS);
    assert_string_equal(o.type, "email");
    free(o.upstream);
    /* In an answer, the error that replaces a withheld message does not echo such an id. */
    struct answer a = run_response(cfg, "{\"jsonrpc\":\"2.0\",\"id\":\"4111111111111111\","
                                        "\"result\":{\"content\":[]}}");
    assert_int_equal(a.verdict, GW_DENY);
    assert_string_equal(a.d.reason_code, "pii.credit_card");
    assert_true(json_is_null(json_object_get(a.msg, "id")));
    answer_free(&a);
    /* A server request's id likewise; the protocol's own member names are never renamed. */
    struct gw_config *names =
        fx_load_ok("safety: {custom: [{name: word, pattern: 'content|params', action: redact}]}\n");
    expect_withheld(names, RESULT("{\"content\":[]}"), "word");
    expect_block(run_request(names, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\","
                                    "\"params\":{}}"),
                 "word", "/params", "envelope name");
    /* ...but deeper names are data and are renamed. */
    expect_redacted(names, RESULT("{\"structuredContent\":{\"content\":1}}"),
                    "\"structuredContent\":{\"[REDACTED:WORD]\":1}", NULL);
    gw_config_free(names);
    gw_config_free(cfg);
}

/* ---- class 6: base64 -------------------------------------------------------------------- */

static void test_base64_text(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok("server: {}\n");
    /* base64("SSN 134-67-7626 ?>~") in four forms: redacted and encoded back the same way. */
    expect_redacted(cfg,
                    RESULT("{\"contents\":[{\"uri\":\"file:///a\",\"blob\":"
                           "\"U1NOIDEzNC02Ny03NjI2ID8+fg==\"}]}"),
                    "\"blob\":\"U1NOIFtSRURBQ1RFRDpTU05dID8+fg==\"", NULL);
    expect_redacted(cfg,
                    RESULT("{\"content\":[{\"type\":\"resource\",\"resource\":{\"uri\":"
                           "\"file:///a\",\"blob\":\"U1NOIDEzNC02Ny03NjI2ID8-fg\"}}]}"),
                    "\"blob\":\"U1NOIFtSRURBQ1RFRDpTU05dID8-fg\"", NULL);
    expect_redacted(cfg,
                    RESULT("{\"structuredContent\":{\"file\":\"data:text/plain;base64,"
                           "U1NOIDEzNC02Ny03NjI2ID8+fg==\"}}"),
                    "\"file\":\"data:text/plain;base64,U1NOIFtSRURBQ1RFRDpTU05dID8+fg==\"", NULL);
    /* Broken into lines (MIME). */
    expect_redacted(cfg,
                    RESULT("{\"structuredContent\":{\"b\":\"U1NOIDEz\\nNC02Ny03\\r\\nNjI2ID8+"
                           "fg==\\n\"}}"),
                    "\"b\":\"U1NOIFtSRURBQ1RFRDpTU05dID8+fg==\"", NULL);
    /* Any member, and image data that is really text. */
    expect_redacted(cfg,
                    RESULT("{\"content\":[{\"type\":\"image\",\"mimeType\":\"image/png\","
                           "\"data\":\"cGF0aWVudCBjYXJkIDQxMTEgMTExMSAxMTExIDExMTEgZXhw\"}]}"),
                    "\"data\":\"cGF0aWVudCBjYXJkIFtSRURBQ1RFRDpDUkVESVRfQ0FSRF0gZXhw\"", NULL);
    /* Decoded text with digits of another script. */
    expect_redacted(cfg,
                    RESULT("{\"contents\":[{\"uri\":\"file:///a\",\"blob\":"
                           "\"bm90ZTogc3NuINmh2aPZpC3ZptmnLdmn2abZotmm\"}]}"),
                    "\"blob\":\"bm90ZTogc3NuIFtSRURBQ1RFRDpTU05d\"", NULL);
    struct gw_config *strict = fx_load_ok("safety: {responses: {default: block}}\n");
    expect_withheld(strict,
                    RESULT("{\"contents\":[{\"uri\":\"file:///a\",\"blob\":"
                           "\"U1NOIDEzNC02Ny03NjI2\"}]}"),
                    "ssn");
    gw_config_free(strict);
    /* Requests: an argument hidden in base64 blocks like the plain one. */
    expect_block(call_args(cfg, "{\"doc\":{\"blob\":\"U1NOIDEzNC02Ny03NjI2\"}}"), "ssn",
                 "/params/arguments/doc/blob", "base64 argument");
    expect_forwarded(call_args(cfg, "{\"x\":\"cGF0aWVudCBjYXJkIDQxMTEgMTExMSAxMTExIDExMTEgZXhw\"}"),
                     "cGF0aWVudCBjYXJkIFtSRURBQ1RFRDpDUkVESVRfQ0FSRF0gZXhw", NULL,
                     "base64 argument redacted");
    /* Negatives: base64 of benign text, binary (a PNG header followed by digits that would be
     * an SSN as text: binary is not inspected), and ids that merely look like base64. */
    expect_untouched(cfg, RESULT("{\"contents\":[{\"uri\":\"file:///a\",\"blob\":"
                                 "\"aGVsbG8gd29ybGQsIG5vdGhpbmcgdG8gc2VlIGhlcmU=\"}]}"));
    expect_untouched(cfg, RESULT("{\"contents\":[{\"uri\":\"file:///a\",\"blob\":"
                                 "\"iVBORw0KGgoAAAANSUhEUjEzNC02Ny03NjI2\"}]}"));
    expect_clean(call_args(cfg, "{\"a\":\"deadbeefdeadbeef\",\"b\":\"get_patient\","
                                "\"c\":\"QUJD\",\"d\":\"U1NO\"}"),
                 "base64-looking ids");
    gw_config_free(cfg);
}

static void test_base64_decoder(void **state)
{
    (void)state;
    struct safety_b64 b;
    const char *yes[][2] = {
        {"U1NOIDEzNC02Ny03NjI2", "SSN 134-67-7626"},
        {"U1NOIDEzNC02Ny03NjI2ID8=", "SSN 134-67-7626 ?"},
        {"U1NOIDEzNC02Ny03NjI2ID8", "SSN 134-67-7626 ?"},
        {"U1NOIDEzNC02Ny03NjI2ID8/", "SSN 134-67-7626 ??"},
        {"U1NOIDEzNC02Ny03NjI2ID8_", "SSN 134-67-7626 ??"},
        {"  U1NOIDEz NC02Ny03\nNjI2  ", "SSN 134-67-7626"},
        {"data:text/plain;charset=utf-8;base64,U1NOIDEzNC02Ny03NjI2", "SSN 134-67-7626"},
        {"U1NOIDEzNC02Ny03NjI2ID9=", "SSN 134-67-7626 ?"}, /* leftover bits ignored */
        {"2aHZo9mkLdmm2act2afZptmi2aY=", "\xd9\xa1\xd9\xa3\xd9\xa4-\xd9\xa6\xd9\xa7-\xd9\xa7\xd9"
                                         "\xa6\xd9\xa2\xd9\xa6"},
    };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (safety_base64_text(yes[i][0], strlen(yes[i][0]), &b) != 1)
            fail_msg("not decoded: %s", yes[i][0]);
        assert_int_equal(b.len, strlen(yes[i][1]));
        assert_memory_equal(b.text, yes[i][1], b.len);
        free(b.text);
    }
    const char *no[] = {
        "",
        "U1NO",                       /* too short */
        "U1NOIDEzNC02Ny03NjI2ID8+_w", /* both alphabets */
        "U1NOIDEzNC02Ny03NjI2I",      /* one character in the last group */
        "U1NOIDEz=NC02Ny03NjI2",      /* padding inside */
        "U1NOIDEzNC02Ny03NjI2ID8===", /* too much padding */
        "U1NOIDEzNC02Ny03NjI2IDg==",  /* padding past the group */
        "U1NOIDEzNC02!Ny03NjI2",      /* a character outside the alphabet */
        "iVBORw0KGgoAAAANSUhEUg==",   /* binary */
        "AAAAAAAAAAAA",               /* NULs */
        "U1NOCTEzNC02Ny03NjI2Gw==",   /* an escape character */
        "wK/AryAxMzQtNjctNzYyNg==",   /* overlong UTF-8 */
        "7aCAIDEzNC02Ny03NjI2",       /* a surrogate */
        "data:text/plain,U1NOIDEzNC02Ny03NjI2",
    };
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (safety_base64_text(no[i], strlen(no[i]), &b) != 0)
            fail_msg("decoded: %s", no[i]);
    /* Encoding back: both alphabets, with and without padding. */
    struct safety_b64 forms[] = {{.url = 0, .padded = 1}, {.url = 1, .padded = 0}};
    const char *want[] = {"U1NOIFtSRURBQ1RFRDpTU05dID8+fg==", "U1NOIFtSRURBQ1RFRDpTU05dID8-fg"};
    for (size_t i = 0; i < 2; i++) {
        struct gw_buf out = {0};
        assert_int_equal(safety_base64_encode(&out, &forms[i], "SSN [REDACTED:SSN] ?>~", 22), 0);
        assert_int_equal(out.len, strlen(want[i]));
        assert_memory_equal(out.data, want[i], out.len);
        gw_buf_free(&out);
    }
}

static void test_number_text(void **state)
{
    (void)state;
    struct {
        json_t *n;
        const char *text;
    } cases[] = {
        {json_integer(4111111111111111), "4111111111111111"},
        {json_integer(-42), "-42"},
        {json_real(4111111111111111.0), "4111111111111111"},
        {json_real(134677626.0), "134677626"},
        {json_real(3.14), "3.14"},
        {json_real(0.1), "0.1"},
        {json_real(1e300), "1e+300"},
        {json_real(-0.5), "-0.5"},
        {json_real(48.8566), "48.8566"},
        {json_real(0.87), "0.87"},
        {json_real(-1234.5678), "-1234.5678"},
        {json_real(123456789.123), "123456789.123"},
        {json_real(0.000001), "0.000001"},
        {json_real(1e-7), "1e-07"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[64];
        size_t n = safety_number_text(cases[i].n, buf, sizeof buf);
        assert_int_equal(n, strlen(buf));
        assert_string_equal(buf, cases[i].text);
        json_decref(cases[i].n);
    }
    /* Every real's text reads back as the same value. */
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double v = (double)(x % 2000000000) / (double)(1 + x % 100000) - 5000.0;
        if (i % 3 == 0)
            v = (double)(int64_t)(x % 100000000) / 1e4;
        json_t *r = json_real(v);
        char buf[64];
        safety_number_text(r, buf, sizeof buf);
        if (strtod(buf, NULL) != v)
            fail_msg("%.17g written as %s", v, buf);
        json_decref(r);
    }
}

/* ---- class 6: Unicode ------------------------------------------------------------------------ */

/* Arabic-Indic, Extended Arabic-Indic, Devanagari, Bengali, Thai, fullwidth, Mathematical
 * bold, and a mix: "134-67-7626" in each. */
static const char *const ssn_scripts[] = {
    "\u0661\u0663\u0664-\u0666\u0667-\u0667\u0666\u0662\u0666",
    "\u06f1\u06f3\u06f4-\u06f6\u06f7-\u06f7\u06f6\u06f2\u06f6",
    "\u0967\u0969\u096a-\u096c\u096d-\u096d\u096c\u0968\u096c",
    "\u09e7\u09e9\u09ea-\u09ec\u09ed-\u09ed\u09ec\u09e8\u09ec",
    "\u0e51\u0e53\u0e54-\u0e56\u0e57-\u0e57\u0e56\u0e52\u0e56",
    "\uff11\uff13\uff14-\uff16\uff17-\uff17\uff16\uff12\uff16",
    ("\U0001d7cf\U0001d7d1\U0001d7d2-\U0001d7d4\U0001d7d5-\U0001d7d5\U0001d7d4\U0001d7d0"
     "\U0001d7d4"),
    "1\u0663\u096a-\u0e567-7\uff16\u09e8\U0001d7d4",
    "\u0661\u0663\u0664\u2013\u0666\u0667\u2212\u0667\u0666\u0662\u0666", /* en dash, minus */
};

/* Default-ignorable code points (and a keycap's combining mark) between the digits. */
static const char *const invisible[] = {
    "\u2063", "\u034f", "\ufe0f",     "\u180e",     "\u200b",     "\u200c",     "\u200d",
    "\u200e", "\u200f", "\u2060",     "\u2061",     "\u2062",     "\u2064",     "\ufeff",
    "\u00ad", "\ufe00", "\U000e0100", "\U000e0041", "\U000e007f", "\u061c",     "\u115f",
    "\u3164", "\uffa0", "\u202a",     "\u2066",     "\u17b4",     "\U0001bca0", "\ufe0f\u20e3",
};

static void test_unicode_digits(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok("server: {}\n");
    char args[512], msg[512];
    for (size_t i = 0; i < sizeof ssn_scripts / sizeof ssn_scripts[0]; i++) {
        snprintf(args, sizeof args, "{\"note\":\"SSN %s ok\"}", ssn_scripts[i]);
        expect_block(call_args(cfg, args), "ssn", "/params/arguments/note", ssn_scripts[i]);
        snprintf(args, sizeof args, "{\"note\":\"SSN %s ok\"}", ssn_scripts[i]);
        /* The redaction replaces exactly the original bytes. */
        snprintf(msg, sizeof msg,
                 RESULT("{\"content\":[{\"type\":\"text\",\"text\":\"SSN %s ok\"}]}"),
                 ssn_scripts[i]);
        expect_redacted(cfg, msg, "\"text\":\"SSN [REDACTED:SSN] ok\"", NULL);
    }
    /* A card in Devanagari and in Arabic-Indic digits, grouped and not. */
    expect_forwarded(call_args(cfg, "{\"c\":\"card \u096a\u0967\u0967\u0967 \u0967\u0967\u0967"
                                    "\u0967 \u0967\u0967\u0967\u0967 \u0967\u0967\u0967\u0967 "
                                    "exp\"}"),
                     "\"c\":\"card [REDACTED:CREDIT_CARD] exp\"", NULL, "devanagari card");
    expect_forwarded(call_args(cfg, "{\"c\":\"\u0664\u0661\u0661\u0661\u0661\u0661\u0661\u0661"
                                    "\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\"}"),
                     "\"c\":\"[REDACTED:CREDIT_CARD]\"", NULL, "arabic card");
    /* Context in the member name in other forms. */
    expect_block(call_args(cfg, "{\"\uff53\uff53\uff4e\":\"\u0661\u0663\u0664\u0666\u0667\u0667"
                                "\u0666\u0662\u0666\"}"),
                 "ssn", NULL, "fullwidth member name");
    /* Negatives: prose and numbers in other scripts that form nothing. */
    expect_clean(call_args(cfg, "{\"a\":\"\u0635\u0641\u062d\u0629 \u0664\u0662 \u0645\u0646 "
                                "\u0661\u0660\u0660\",\"b\":\"\u092a\u0943\u0937\u094d\u0920 "
                                "\u096a\u0968, \u0968\u0966\u0968\u096a\",\"c\":\"\uff14\uff12\","
                                "\"d\":\"\u0e1b\u0e35 \u0e52\u0e55\u0e56\u0e17\","
                                "\"e\":\"caf\u00e9 \u4e2d\u6587 \ud55c\uad6d\uc5b4 \u00bd\"}"),
                 "benign Nd text");
    gw_config_free(cfg);
}

static void test_invisible_between_digits(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok("server: {}\n");
    for (size_t i = 0; i < sizeof invisible / sizeof invisible[0]; i++) {
        const char *z = invisible[i];
        char ssn[256], card[512], args[1024], msg[1024];
        snprintf(ssn, sizeof ssn, "1%s3%s4-%s6%s7-7%s6%s2%s6", z, z, z, z, z, z, z);
        snprintf(card, sizeof card, "4%s1%s1%s1%s1111%s11%s11%s1111", z, z, z, z, z, z, z);
        snprintf(args, sizeof args, "{\"note\":\"SSN %s\"}", ssn);
        expect_block(call_args(cfg, args), "ssn", NULL, "invisible in an SSN");
        snprintf(args, sizeof args, "{\"note\":\"pay %s now\"}", card);
        expect_forwarded(call_args(cfg, args), "\"note\":\"pay [REDACTED:CREDIT_CARD] now\"", NULL,
                         "invisible in a card");
        snprintf(msg, sizeof msg,
                 RESULT("{\"content\":[{\"type\":\"text\",\"text\":\"SSN %s.\"}]}"), ssn);
        expect_redacted(cfg, msg, "\"text\":\"SSN [REDACTED:SSN].\"", NULL);
        /* Prose with them is not a finding. */
        snprintf(args, sizeof args, "{\"note\":\"pa%sge 4%s2 of 1%s00\"}", z, z, z);
        expect_clean(call_args(cfg, args), "invisible in prose");
    }
    gw_config_free(cfg);
}

static void test_normalizer(void **state)
{
    (void)state;
    char *out;
    size_t n;
    uint32_t *map;
    /* "١\u2063٣" -> "13": the map points at the lead byte of each kept character. */
    const char *s = "x\xd9\xa1\xe2\x81\xa3\xd9\xa3y";
    assert_int_equal(safety_normalize(s, strlen(s), &out, &n, &map), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(out, "x13y", 4);
    uint32_t want[] = {0, 1, 6, 8, 9};
    for (size_t i = 0; i <= n; i++)
        assert_int_equal(map[i], want[i]);
    free(out);
    free(map);
    /* Every Nd digit maps to its value: zeros of each run and the nines. */
    const uint32_t zeros[] = {0x0660,  0x07c0,  0x0966,  0x0de6,  0x1040,  0x1946,  0xa9f0,
                              0x104a0, 0x11066, 0x116d0, 0x16130, 0x1d7ce, 0x1e5f1, 0x1fbf0};
    for (size_t i = 0; i < sizeof zeros / sizeof zeros[0]; i++)
        for (uint32_t d = 0; d < 10; d++) {
            uint32_t cp = zeros[i] + d;
            char u[5];
            size_t k = cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
            if (k == 2) {
                u[0] = (char)(0xc0 | (cp >> 6));
                u[1] = (char)(0x80 | (cp & 63));
            } else if (k == 3) {
                u[0] = (char)(0xe0 | (cp >> 12));
                u[1] = (char)(0x80 | ((cp >> 6) & 63));
                u[2] = (char)(0x80 | (cp & 63));
            } else {
                u[0] = (char)(0xf0 | (cp >> 18));
                u[1] = (char)(0x80 | ((cp >> 12) & 63));
                u[2] = (char)(0x80 | ((cp >> 6) & 63));
                u[3] = (char)(0x80 | (cp & 63));
            }
            assert_int_equal(safety_normalize(u, k, &out, &n, &map), 0);
            assert_int_equal(n, 1);
            assert_int_equal(out[0], (char)('0' + d));
            free(out);
            free(map);
        }
    /* Letters of other scripts right after a run of digits are left alone (U+0E5A is Thai
     * punctuation after the Thai digits; U+1D800 is past the mathematical digits). */
    const char *keep[] = {"\u0e5a", "\U0001d800", "\u0670", "\u00e9", "\u4e2d"};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        assert_int_equal(safety_normalize(keep[i], strlen(keep[i]), &out, &n, &map), 0);
        assert_ptr_equal(out, keep[i]);
    }
}

/* ---- class 6: separators ----------------------------------------------------------------- */

static void test_separators(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok("server: {}\n");
    expect_block(call_args(cfg, "{\"n\":\"536.22.8411\"}"), "ssn", NULL, "dotted SSN");
    expect_block(call_args(cfg, "{\"n\":\"is 536\uff0e22\uff0e8411.\"}"), "ssn", NULL,
                 "fullwidth dots");
    expect_block(call_args(cfg, "{\"n\":\"536\u202422\u20248411\"}"), "ssn", NULL,
                 "one dot leader");
    expect_block(call_args(cfg, "{\"n\":\"536\u201022\u20118411\"}"), "ssn", NULL, "hyphens");
    expect_block(call_args(cfg, "{\"n\":\"536\u2e3a22\u30a08411\"}"), "ssn", NULL, "dashes");
    expect_block(call_args(cfg, "{\"n\":\"912.70.1234\"}"), "itin", NULL, "dotted ITIN");
    expect_redacted(cfg,
                    RESULT("{\"content\":[{\"type\":\"text\",\"text\":\"SSN 536.22.8411.\"}]}"),
                    "SSN [REDACTED:SSN].", "8411");
    /* Dotted cards. */
    expect_forwarded(call_args(cfg, "{\"c\":\"4111.1111.1111.1111\"}"),
                     "\"c\":\"[REDACTED:CREDIT_CARD]\"", NULL, "dotted card");
    expect_forwarded(call_args(cfg, "{\"c\":\"amex 3782.822463.10005 ok\"}"),
                     "\"c\":\"amex [REDACTED:CREDIT_CARD] ok\"", NULL, "dotted amex");
    /* Negatives: mixed separators, versions, decimals, IP addresses, dates. */
    expect_clean(call_args(cfg, "{\"a\":\"536.22-8411\",\"b\":\"v536.22.8411\",\"c\":\"1.536.22."
                                "8411\",\"d\":\"0.5555555555554444\",\"e\":\"12.4111111111111111\","
                                "\"f\":\"15.03.2024\",\"g\":\"4111.1111.1111.1112\"}"),
                 "dotted negatives");
    gw_config_free(cfg);
}

/* ---- class 7: the strictest finding decides -------------------------------------------------- */

static void test_custom_block_beats_builtin_redact(void **state)
{
    (void)state;
    struct gw_config *cfg =
        fx_load_ok("safety:\n"
                   "  custom:\n"
                   "    - {name: record, pattern: 'MRN-[0-9]{8}', action: block}\n"
                   "    - {name: badge, pattern: 'BDG-[0-9]{4}', action: "
                   "{request: block, response: block}}\n");
    const char *texts[] = {"MRN-00412345", "see MRN-00412345 today", "mrn MRN-00412345",
                           "MRN-00412345, MRN-00412346"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        char args[256];
        snprintf(args, sizeof args, "{\"note\":\"%s\"}", texts[i]);
        expect_block(call_args(cfg, args), "record", "/params/arguments/note", texts[i]);
    }
    /* As a member name, in _meta, as base64 ("MRN-00412345"). */
    expect_block(call_args(cfg, "{\"MRN-00412345\":\"x\"}"), "record", NULL, "as a name");
    expect_block(call_args(cfg, "{\"x\":\"TVJOLTAwNDEyMzQ1\"}"), "record", NULL, "as base64");
    /* In the answer the custom's explicit response action blocks too; the response default
     * (redact) makes the first one redact there, as configured. */
    expect_withheld(cfg, RESULT("{\"content\":[{\"type\":\"text\",\"text\":\"BDG-1234\"}]}"),
                    "badge");
    gw_config_free(cfg);
    cfg = fx_load_ok("safety:\n"
                     "  responses: {default: same}\n"
                     "  custom: [{name: record, pattern: 'MRN-[0-9]{8}', action: block}]\n");
    expect_withheld(cfg,
                    RESULT("{\"content\":[{\"type\":\"text\",\"text\":\"record MRN-00412345\"}]}"),
                    "record");
    expect_withheld(cfg, RESULT("{\"structuredContent\":{\"mrn\":\"MRN-00412345\"}}"), "record");
    gw_config_free(cfg);
    /* The other way round: a built-in block beats a custom redact over the same span. */
    cfg = fx_load_ok("safety: {custom: [{name: num, pattern: '[0-9]{3}-[0-9]{2}-[0-9]{4}', "
                     "action: redact}]}\n");
    expect_block(call_args(cfg, "{\"n\":\"134-67-7626\"}"), "ssn", NULL, "builtin block");
    gw_config_free(cfg);
}

static void test_stricter_beats_longer(void **state)
{
    (void)state;
    /* A longer span that only logs used to win over the card inside it. */
    struct gw_config *cfg =
        fx_load_ok("safety: {custom: [{name: ref, pattern: 'ref [0-9 ]{19}', action: log}]}\n");
    expect_forwarded(call_args(cfg, "{\"n\":\"ref 4111 1111 1111 1111\"}"), NULL, "4111",
                     "card inside a logged span");
    expect_redacted(cfg,
                    RESULT("{\"content\":[{\"type\":\"text\",\"text\":\"ref 4111 1111 1111 1111 "
                           "ok\"}]}"),
                    "[REDACTED:CREDIT_CARD] ok", "4111");
    gw_config_free(cfg);
    /* A detector that is off must not hide one that blocks (e-mail off, the badge inside
     * the address blocks). */
    cfg = fx_load_ok("safety:\n"
                     "  detectors: {email: off}\n"
                     "  custom: [{name: staff, pattern: 'EMP[0-9]{4}', action: block}]\n");
    expect_block(call_args(cfg, "{\"to\":\"EMP1234@example.com\"}"), "staff", NULL,
                 "off hides nothing");
    gw_config_free(cfg);
    /* Partly overlapping spans: the redaction covers both. */
    cfg = fx_load_ok("safety: {custom: [{name: tail, pattern: '1111 XY[0-9]{2}', action: "
                     "redact}]}\n");
    expect_forwarded(call_args(cfg, "{\"n\":\"4111 1111 1111 1111 XY12 end\"}"),
                     "\"n\":\"[REDACTED:CREDIT_CARD] end\"", "XY12", "union of spans");
    gw_config_free(cfg);
}

static void test_strictest_of_many(void **state)
{
    (void)state;
    struct gw_config *cfg =
        fx_load_ok("safety: {custom: [{name: staff, pattern: 'EMP-[0-9]{4}', action: block}]}\n");
    /* More findings than are itemised per string (256), and more candidates than are kept
     * (4096, the custom rule runs after the e-mail rule): what blocks after them still
     * blocks. */
    size_t counts[] = {300, 5000};
    const char *tails[][2] = {{"SSN 134-67-7626", "ssn"}, {"badge EMP-1234", "staff"}};
    for (size_t c = 0; c < 2; c++)
        for (size_t t = 0; t < 2; t++) {
            size_t cap = counts[c] * 24 + 256;
            char *args = malloc(cap);
            assert_non_null(args);
            size_t k = (size_t)snprintf(args, cap, "{\"note\":\"");
            for (size_t i = 0; i < counts[c]; i++)
                k += (size_t)snprintf(args + k, cap - k, "u%zu@example.com ", i);
            snprintf(args + k, cap - k, "%s\"}", tails[t][0]);
            expect_block(call_args(cfg, args), tails[t][1], NULL, "after many e-mails");
            free(args);
        }
    /* One string redacts, another blocks: the message blocks, whatever the order. */
    expect_block(call_args(cfg, "{\"a\":\"4111 1111 1111 1111\",\"b\":\"134-67-7626\"}"), "ssn",
                 "/params/arguments/b", "redact then block");
    expect_block(call_args(cfg, "{\"b\":\"134-67-7626\",\"a\":\"4111 1111 1111 1111\"}"), "ssn",
                 "/params/arguments/b", "block then redact");
    gw_config_free(cfg);
    /* The scanner itself: overlapping spans report the strictest, in either direction. */
    struct gw_config *c2 = fx_load_ok("safety:\n"
                                      "  custom: [{name: record, pattern: 'MRN-[0-9]{8}', action: "
                                      "{request: log, response: block}}]\n");
    const struct safety_config *sc = safety_config_of(c2);
    struct safety_match m[4];
    unsigned flags = 0;
    int n =
        safety_scan_text_as(sc, "MRN-00412345", 12, NULL, 0, GW_DIR_REQUEST, NULL, m, 4, &flags);
    assert_int_equal(n, 1);
    assert_string_equal(safety_detector_name(sc, m[0].detector), "mrn"); /* redact > log */
    n = safety_scan_text_as(sc, "MRN-00412345", 12, NULL, 0, GW_DIR_RESPONSE, NULL, m, 4, &flags);
    assert_int_equal(n, 1);
    assert_string_equal(safety_detector_name(sc, m[0].detector), "record"); /* block */
    gw_config_free(c2);
}

static int teardown(void **state)
{
    (void)state;
    safety_thread_cleanup();
    return 0;
}

/* More findings than are itemised: the first GW_MAX_FINDINGS are listed (their room grows as
 * they come), the rest counted as dropped, and every value is redacted all the same. */
static void test_findings_beyond_the_itemised(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok("server: {}\n");
    enum { N = GW_MAX_FINDINGS + 16 };
    struct gw_buf args = {0};
    gw_buf_append_str(&args, "{");
    for (int i = 0; i < N; i++)
        gw_buf_printf(&args, "%s\"c%d\":\"4111111111111111\"", i ? "," : "", i);
    gw_buf_append_str(&args, "}");
    char *body = NULL;
    assert_true(asprintf(&body,
                         "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":"
                         "{\"name\":\"ehr.note\",\"arguments\":%s}}",
                         args.data) > 0);
    struct gw_request *req = decoded(cfg, body);
    struct gw_decision d;
    memset(&d, 0, sizeof d);
    assert_int_equal(safety_layer.check(req, &d), GW_PASS);
    assert_int_equal(req->findings.n, GW_MAX_FINDINGS);
    assert_int_equal(req->findings.dropped, N - GW_MAX_FINDINGS);
    assert_true(req->findings.cap >= req->findings.n);
    for (size_t i = 0; i < req->findings.n; i++) {
        const struct gw_finding *f = &req->findings.items[i];
        assert_string_equal(f->type, "credit_card");
        assert_int_equal(strncmp(f->path, "/params/arguments/c", 19), 0);
        assert_int_equal(f->count, 1);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(f->path, req->findings.items[j].path);
    }
    struct gw_slice up = gw_request_upstream_body(req);
    char *sent = strndup(up.ptr, up.len);
    assert_null(strstr(sent, "4111111111111111"));
    free(sent);
    /* The set is emptied by its free and works again. */
    gw_findings_free(&req->findings);
    assert_null(req->findings.items);
    assert_int_equal(req->findings.n + req->findings.cap + req->findings.dropped, 0);
    assert_non_null(gw_findings_push(&req->findings));
    assert_int_equal(req->findings.n, 1);
    gw_request_free(req);
    free(body);
    gw_buf_free(&args);
    gw_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_findings_beyond_the_itemised),
        cmocka_unit_test(test_numbers_request),
        cmocka_unit_test(test_numbers_response),
        cmocka_unit_test(test_every_part_response),
        cmocka_unit_test(test_every_part_request),
        cmocka_unit_test(test_fixed_values),
        cmocka_unit_test(test_base64_text),
        cmocka_unit_test(test_base64_decoder),
        cmocka_unit_test(test_number_text),
        cmocka_unit_test(test_unicode_digits),
        cmocka_unit_test(test_invisible_between_digits),
        cmocka_unit_test(test_normalizer),
        cmocka_unit_test(test_separators),
        cmocka_unit_test(test_custom_block_beats_builtin_redact),
        cmocka_unit_test(test_stricter_beats_longer),
        cmocka_unit_test(test_strictest_of_many),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
