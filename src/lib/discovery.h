/*
 * discovery: where an issuer's metadata lives and what toolgate takes from it. Shared by the
 * identity layer (the issuer's jwks_uri) and the routing layer (the token_endpoint a token
 * exchange posts to).
 *
 * With only `issuer` configured, toolgate reads the issuer's authorization server metadata
 * (RFC 8414) or OpenID Provider metadata (OpenID Connect Discovery 1.0) for its jwks_uri and
 * token_endpoint. The URLs are tried in the order the MCP authorization specification gives
 * clients, so toolgate finds the same document its clients find:
 *
 *   issuer without a path (https://idp.example):
 *     1. https://idp.example/.well-known/oauth-authorization-server
 *     2. https://idp.example/.well-known/openid-configuration
 *   issuer with a path (https://idp.example/tenant1):
 *     1. https://idp.example/.well-known/oauth-authorization-server/tenant1  (RFC 8414 §3.1)
 *     2. https://idp.example/.well-known/openid-configuration/tenant1
 *     3. https://idp.example/tenant1/.well-known/openid-configuration        (OIDC §4)
 *
 * A terminating "/" of the path is removed before either suffix is placed. A document is used
 * only when its "issuer" equals the configured issuer byte for byte (RFC 8414 §3.3, OIDC
 * Discovery §4.3); the metadata is hostile input: bounded, duplicate keys rejected, every URL
 * held to the rule the JWKS fetch has (https, http only to loopback).
 */
#ifndef GW_DISCOVERY_H
#define GW_DISCOVERY_H

#include <stddef.h>

/* Bounds on what is read: the metadata body and every URL in or built from it. */
#define DISCOVERY_MAX_BYTES (64u * 1024)
#define DISCOVERY_MAX_URL 2048
#define DISCOVERY_MAX_ISSUER 1024
#define DISCOVERY_MAX_URLS 3

/*
 * 1 when url is an https:// URL with a host, or an http:// URL to 127.0.0.1, localhost or
 * [::1] (tests, a local IdP); 0 otherwise. The one rule for every URL toolgate fetches keys
 * or metadata from.
 */
int discovery_url_ok(const char *url);

/*
 * Builds the metadata URLs of issuer, in the order they are tried, into urls[0..*n-1]
 * (each DISCOVERY_MAX_URL bytes). Returns 0, or -1 with why when the issuer cannot be
 * discovered (not an allowed URL, has a query or fragment, too long).
 */
int discovery_urls(const char *issuer, char urls[DISCOVERY_MAX_URLS][DISCOVERY_MAX_URL], size_t *n,
                   char *why, size_t whylen);

/* What toolgate uses from a metadata document; strings are malloc'd (discovery_meta_clear). */
struct discovery_meta {
    char *jwks_uri;       /* required */
    char *token_endpoint; /* optional (NULL) */
};

/*
 * Parses and checks one metadata document (len bytes, not NUL-terminated) against the
 * configured issuer. Returns 0 with out filled, -1 with why (a sentence for operators; it
 * names no secret: metadata is public). A mismatching issuer returns -2 (so a caller can
 * say that rather than "not found").
 */
int discovery_parse(const char *body, size_t len, const char *issuer, struct discovery_meta *out,
                    char *why, size_t whylen);
void discovery_meta_clear(struct discovery_meta *m);

#endif
