/*
 * tokex_response: what a token endpoint answered to a token exchange (RFC 8693 §2.2), read
 * as hostile input. A pure function: no I/O, no global state (tests/fuzz/fuzz_tokex.c).
 */
#include "layers/routing/tokex.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_EXPIRES_IN (366LL * 24 * 3600)

void tokex_answer_clear(struct tokex_answer *a)
{
    if (a->access_token) {
        memset(a->access_token, 0, strlen(a->access_token));
        free(a->access_token);
    }
    memset(a, 0, sizeof *a);
}

/* RFC 6750 §2.1 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=". */
static int is_b64token(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
        if (!ok)
            break;
        i++;
    }
    if (i == 0)
        return 0;
    while (i < len && s[i] == '=')
        i++;
    return i == len;
}

/* RFC 6749 §5.2: error = 1*( %x20-21 / %x23-5B / %x5D-7E ). */
static int is_error_code(const char *s, size_t len)
{
    if (len == 0 || len > TOKEX_MAX_ERROR)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
            return 0;
    }
    return 1;
}

static int read_expires_in(json_t *v, int64_t *out)
{
    *out = 0;
    if (!v)
        return 0;
    long long n = -1;
    if (json_is_integer(v)) {
        n = (long long)json_integer_value(v);
    } else if (json_is_string(v)) {
        /* Some providers send it as a string of digits; nothing else is taken. */
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        if (len == 0 || len > 10)
            return -1;
        n = 0;
        for (size_t i = 0; i < len; i++) {
            if (s[i] < '0' || s[i] > '9')
                return -1;
            n = n * 10 + (s[i] - '0');
        }
    } else {
        return -1;
    }
    if (n < 1 || n > MAX_EXPIRES_IN)
        return -1;
    *out = (int64_t)n;
    return 0;
}

static int parse_error_answer(json_t *doc, long status, struct tokex_answer *out, char *why,
                              size_t whylen)
{
    json_t *e = json_is_object(doc) ? json_object_get(doc, "error") : NULL;
    if (!json_is_string(e) || !is_error_code(json_string_value(e), json_string_length(e))) {
        snprintf(why, whylen, "the token endpoint answered HTTP %ld without an OAuth error code",
                 status);
        return TOKEX_E_MALFORMED;
    }
    memcpy(out->error, json_string_value(e), json_string_length(e));
    out->error[json_string_length(e)] = '\0';
    snprintf(why, whylen, "the token endpoint refused the exchange (HTTP %ld, %s)", status,
             out->error);
    return TOKEX_E_REFUSED;
}

static int parse_success(json_t *doc, const char *want_type, struct tokex_answer *out, char *why,
                         size_t whylen)
{
    if (!json_is_object(doc)) {
        snprintf(why, whylen, "the token endpoint's answer is not a JSON object");
        return TOKEX_E_MALFORMED;
    }
    json_t *tok = json_object_get(doc, "access_token");
    json_t *tt = json_object_get(doc, "token_type");
    json_t *itt = json_object_get(doc, "issued_token_type");
    if (!json_is_string(tok) || json_string_length(tok) > TOKEX_MAX_TOKEN ||
        !is_b64token(json_string_value(tok), json_string_length(tok))) {
        snprintf(why, whylen,
                 "the answer has no access_token of at most %d token characters (RFC 6750)",
                 TOKEX_MAX_TOKEN);
        return TOKEX_E_MALFORMED;
    }
    if (!json_is_string(tt) || strcasecmp(json_string_value(tt), "bearer") != 0 ||
        json_string_length(tt) != 6) {
        snprintf(why, whylen, "the answer's token_type is not Bearer");
        return TOKEX_E_MALFORMED;
    }
    if (!json_is_string(itt) || strlen(want_type) != json_string_length(itt) ||
        strcmp(json_string_value(itt), want_type) != 0) {
        snprintf(why, whylen, "the answer's issued_token_type is not the requested %s", want_type);
        return TOKEX_E_MALFORMED;
    }
    if (read_expires_in(json_object_get(doc, "expires_in"), &out->expires_in) != 0) {
        snprintf(why, whylen, "the answer's expires_in is not a positive number of seconds");
        return TOKEX_E_MALFORMED;
    }
    if (!(out->access_token = strdup(json_string_value(tok)))) {
        snprintf(why, whylen, "out of memory");
        return TOKEX_E_INTERNAL;
    }
    return TOKEX_OK;
}

int tokex_response_parse(long status, const char *body, size_t len, const char *want_type,
                         struct tokex_answer *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    if (status >= 500 && status <= 599) {
        snprintf(why, whylen, "the token endpoint answered HTTP %ld", status);
        return TOKEX_E_UNAVAILABLE;
    }
    if (len > TOKEX_MAX_RESPONSE) {
        snprintf(why, whylen, "the token endpoint's answer is larger than %u bytes",
                 TOKEX_MAX_RESPONSE);
        return TOKEX_E_MALFORMED;
    }
    if (status != 200 && status != 400 && status != 401 && status != 403) {
        snprintf(why, whylen, "the token endpoint answered HTTP %ld", status);
        return TOKEX_E_MALFORMED;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
    int rc;
    if (!doc) {
        snprintf(why, whylen, "the token endpoint's answer (HTTP %ld) is not JSON", status);
        return TOKEX_E_MALFORMED;
    }
    if (status == 200)
        rc = parse_success(doc, want_type, out, why, whylen);
    else
        rc = parse_error_answer(doc, status, out, why, whylen);
    json_decref(doc);
    if (rc != TOKEX_OK && rc != TOKEX_E_REFUSED)
        tokex_answer_clear(out);
    return rc;
}
