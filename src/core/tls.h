/*
 * tls: TLS termination for client connections, OpenSSL 3 over memory BIOs so the event loop
 * owns the socket: ciphertext read from the socket is fed in, plaintext comes out for the
 * HTTP parser; plaintext responses go in, ciphertext comes out for the socket.
 *
 * A context is built once per TLS listener at start-up (certificate chain and key from PEM
 * files) and shared read-only by every worker; a connection object belongs to one client
 * connection on one worker.
 */
#ifndef GW_TLS_H
#define GW_TLS_H

#include <stddef.h>

#include "lib/buf.h"

struct gw_tls_ctx;
struct gw_tls_conn;

/* Loads the certificate chain and private key. Returns NULL with a sentence in err. */
struct gw_tls_ctx *gw_tls_ctx_new(const char *cert_file, const char *key_file, char *err,
                                  size_t errlen);
void gw_tls_ctx_free(struct gw_tls_ctx *ctx);

struct gw_tls_conn *gw_tls_conn_new(struct gw_tls_ctx *ctx);
void gw_tls_conn_free(struct gw_tls_conn *c);

enum {
    GW_TLS_OK = 0,
    GW_TLS_CLOSED = 1, /* the peer sent close_notify */
    GW_TLS_ERROR = -1, /* handshake or record failure: close the connection */
};

/*
 * Feeds ciphertext from the socket. Plaintext that became available is appended to `plain`;
 * TLS records to send back (handshake, alerts) are appended to `out`.
 */
int gw_tls_feed(struct gw_tls_conn *c, const char *in, size_t len, struct gw_buf *plain,
                struct gw_buf *out);
/* Encrypts plaintext for the socket, appending the records to `out`. */
int gw_tls_encrypt(struct gw_tls_conn *c, const char *plain, size_t len, struct gw_buf *out);
/* Appends a close_notify alert to `out` (best effort). */
void gw_tls_close_notify(struct gw_tls_conn *c, struct gw_buf *out);
/* True once the handshake has completed. */
int gw_tls_established(const struct gw_tls_conn *c);

#endif
