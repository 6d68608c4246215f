/*
 * proxy: the request handler the server runs on its listeners, and the gateway's own
 * well-known documents.
 */
#ifndef GW_PROXY_H
#define GW_PROXY_H

#include "core/http1.h"
#include "core/server.h"

/* The handler for the gateway's listeners: routes, the layers, relaying. Static storage. */
const struct gw_handler *proxy_handler(void);

/*
 * Answers GET /.well-known/... documents the gateway serves itself (OAuth protected resource
 * metadata). Returns 1 when it answered (the connection's response is done), 0 otherwise.
 */
int proxy_handle_well_known(struct gw_conn *c, struct http1_parser *p);

#endif
