#include "core/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gw_tls_ctx {
    SSL_CTX *ssl_ctx;
};

struct gw_tls_conn {
    SSL *ssl;
    BIO *rbio; /* ciphertext in (from the socket) */
    BIO *wbio; /* ciphertext out (to the socket) */
};

/* Plaintext is read out in pieces of this size. */
#define TLS_READ_CHUNK 16384

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    /* Only HTTP/1.1 is spoken; a client offering only h2 gets no ALPN and may give up. */
    for (unsigned int i = 0; i < inlen;) {
        unsigned int l = in[i];
        if (i + 1 + l > inlen)
            break;
        if (l == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)l;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + l;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static void openssl_error(char *err, size_t errlen, const char *what, const char *file)
{
    unsigned long e = ERR_get_error();
    char reason[256] = "unknown error";
    if (e)
        ERR_error_string_n(e, reason, sizeof reason);
    snprintf(err, errlen, "%s %s: %s", what, file, reason);
    ERR_clear_error();
}

struct gw_tls_ctx *gw_tls_ctx_new(const char *cert_file, const char *key_file, char *err,
                                  size_t errlen)
{
    struct gw_tls_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ctx->ssl_ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx->ssl_ctx) {
        openssl_error(err, errlen, "cannot create a TLS context for", cert_file);
        goto fail;
    }
    SSL_CTX_set_min_proto_version(ctx->ssl_ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx->ssl_ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                          SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx->ssl_ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_alpn_select_cb(ctx->ssl_ctx, alpn_select, NULL);
    if (SSL_CTX_use_certificate_chain_file(ctx->ssl_ctx, cert_file) != 1) {
        openssl_error(err, errlen, "cannot load the certificate chain", cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx->ssl_ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        openssl_error(err, errlen, "cannot load the private key", key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx->ssl_ctx) != 1) {
        openssl_error(err, errlen, "the private key does not match the certificate", key_file);
        goto fail;
    }
    return ctx;
fail:
    gw_tls_ctx_free(ctx);
    return NULL;
}

void gw_tls_ctx_free(struct gw_tls_ctx *ctx)
{
    if (!ctx)
        return;
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx);
}

struct gw_tls_conn *gw_tls_conn_new(struct gw_tls_ctx *ctx)
{
    struct gw_tls_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->ssl = SSL_new(ctx->ssl_ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (!c->ssl || !c->rbio || !c->wbio) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        SSL_free(c->ssl);
        free(c);
        ERR_clear_error();
        return NULL;
    }
    /* An empty read BIO means "no data yet", not end of file. */
    BIO_set_mem_eof_return(c->rbio, -1);
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_accept_state(c->ssl);
    return c;
}

void gw_tls_conn_free(struct gw_tls_conn *c)
{
    if (!c)
        return;
    SSL_free(c->ssl); /* frees both BIOs */
    free(c);
}

/* Moves whatever OpenSSL wrote to the outgoing BIO into out. */
static int drain_out(struct gw_tls_conn *c, struct gw_buf *out)
{
    char tmp[TLS_READ_CHUNK];
    int n;
    while ((n = BIO_read(c->wbio, tmp, sizeof tmp)) > 0)
        if (gw_buf_append(out, tmp, (size_t)n) != 0)
            return -1;
    return 0;
}

int gw_tls_feed(struct gw_tls_conn *c, const char *in, size_t len, struct gw_buf *plain,
                struct gw_buf *out)
{
    int rc = GW_TLS_OK;
    while (len > 0) {
        int w = BIO_write(c->rbio, in, len > 65536 ? 65536 : (int)len);
        if (w <= 0) {
            rc = GW_TLS_ERROR;
            goto out;
        }
        in += w;
        len -= (size_t)w;
        for (;;) {
            if (gw_buf_reserve(plain, TLS_READ_CHUNK) != 0) {
                rc = GW_TLS_ERROR;
                goto out;
            }
            int r = SSL_read(c->ssl, plain->data + plain->len, TLS_READ_CHUNK);
            if (r > 0) {
                plain->len += (size_t)r;
                plain->data[plain->len] = '\0';
                continue;
            }
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ)
                break;
            if (e == SSL_ERROR_ZERO_RETURN) {
                rc = GW_TLS_CLOSED;
                goto out;
            }
            rc = GW_TLS_ERROR;
            goto out;
        }
    }
out:
    if (drain_out(c, out) != 0)
        rc = GW_TLS_ERROR;
    ERR_clear_error();
    return rc;
}

int gw_tls_encrypt(struct gw_tls_conn *c, const char *plain, size_t len, struct gw_buf *out)
{
    while (len > 0) {
        int chunk = len > 65536 ? 65536 : (int)len;
        int w = SSL_write(c->ssl, plain, chunk);
        if (w <= 0) {
            ERR_clear_error();
            return GW_TLS_ERROR;
        }
        plain += w;
        len -= (size_t)w;
    }
    return drain_out(c, out) == 0 ? GW_TLS_OK : GW_TLS_ERROR;
}

void gw_tls_close_notify(struct gw_tls_conn *c, struct gw_buf *out)
{
    if (SSL_is_init_finished(c->ssl))
        SSL_shutdown(c->ssl);
    drain_out(c, out);
    ERR_clear_error();
}

int gw_tls_established(const struct gw_tls_conn *c)
{
    return SSL_is_init_finished(c->ssl);
}
