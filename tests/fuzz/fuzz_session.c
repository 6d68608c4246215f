/*
 * Fuzz driver for the session records the stores keep (a shared Redis is outside input too):
 * decoding arbitrary bytes never crashes or leaks, and whatever decodes is within the
 * record's bounds and encodes to a record that decodes to the same session.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/session.h"

static int same(const struct mcp_session *a, const struct mcp_session *b)
{
    if (memcmp(a->owner, b->owner, sizeof a->owner) != 0 || strcmp(a->route, b->route) != 0 ||
        a->n_backends != b->n_backends)
        return 0;
    for (size_t i = 0; i < a->n_backends; i++) {
        if ((a->backends[i] == NULL) != (b->backends[i] == NULL))
            return 0;
        if (a->backends[i] && strcmp(a->backends[i], b->backends[i]) != 0)
            return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mcp_session s;
    memset(&s, 0, sizeof s);
    if (mcp_session_decode((const char *)data, size, &s) == 0) {
        if (s.n_backends > MCP_SESSION_MAX_BACKENDS || !memchr(s.route, '\0', sizeof s.route))
            abort();
        for (size_t i = 0; i < s.n_backends; i++)
            if (s.backends[i] && strlen(s.backends[i]) > MCP_SESSION_MAX_BACKEND_ID)
                abort();
        char *enc = NULL;
        size_t len = 0;
        if (mcp_session_encode(&s, &enc, &len) != 0)
            abort();
        struct mcp_session t;
        memset(&t, 0, sizeof t);
        if (mcp_session_decode(enc, len, &t) != 0 || !same(&s, &t))
            abort();
        mcp_session_clear(&t);
        free(enc);
    }
    mcp_session_clear(&s);
    return 0;
}
