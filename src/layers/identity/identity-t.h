/* identity-t.h: the verified identity carried by a request (types only). */
#ifndef GW_IDENTITY_T_H
#define GW_IDENTITY_T_H

#include <stddef.h>
#include <stdint.h>

/*
 * Who a request acts for, as verified from the bearer token. Owned by the request context
 * (freed with it). The raw token is never stored here.
 */
struct gw_identity {
    int verified;    /* 1 once the identity layer has verified a token */
    char *subject;   /* sub */
    char *issuer;    /* iss */
    char *tenant;    /* from the configured tenant claim; may be NULL */
    char *client_id; /* azp / client_id: which LLM runtime presented the token */
    char **roles;    /* NULL-terminated */
    size_t n_roles;
    char **scopes; /* NULL-terminated */
    size_t n_scopes;
    int64_t expires_at;  /* exp, seconds since epoch */
    char token_hash[65]; /* hex SHA-256 of the token: cache key, never logged */
};

#endif
