/*
 * routing-int: what the routing layer's request path (routing.c) and its vetting of URL
 * arguments (routing_args.c) share: one request's name lookups.
 */
#ifndef GW_ROUTING_INT_H
#define GW_ROUTING_INT_H

#include <uv.h>

#include "layers/routing/routing.h"

/* Distinct host names one request may make toolgate look up (backend included). */
#define ROUTING_MAX_NAMES 8
/* How deep the search for URL strings goes into tool arguments. */
#define ROUTING_MAX_ARG_DEPTH 32

struct job;

struct lookup {
    char host[GW_URL_MAX_HOST + 1];
    int port;
    int backend; /* the backend's name (else a URL argument) */
    const struct ssrf_allow *allow;
    char arg[80]; /* URL argument: the argument shown in a denial */
    struct gw_addr addrs[ROUTING_MAX_ADDRS];
    size_t n_addrs;
    int denied_extra; /* an address past ROUTING_MAX_ADDRS was denied */
    enum ssrf_class extra_class;
    int status; /* 0 resolved, < 0 failed */
    int done;   /* the lookup has answered */
    uv_getaddrinfo_t gai;
    struct job *job;
};

struct job {
    struct gw_request *req; /* NULL once answered (a timeout) */
    struct gw_decision *out;
    const struct egress_config *ec;
    struct routing_runtime *rt; /* the request's generation's (NULL: not started) */
    const struct gw_backend *be;
    const char *url; /* the endpoint of be this request goes to */
    struct gw_url be_url;
    char be_host_raw[GW_URL_MAX_HOST + 1]; /* the name as the URL writes it (curl matches it) */
    size_t n;
    size_t outstanding;
    struct lookup lk[ROUTING_MAX_NAMES];
    uv_timer_t timer;
    int timer_live;
    int finished;
};

/* Adds (or reuses) a lookup of u's host for the job. 0, or -1 when there are too many. */
int routing_add_lookup(struct job *job, const struct gw_url *u, int backend,
                       const struct ssrf_allow *allow, const char *arg);

/* A URL argument denial: a tool result the model can act on. Returns GW_DENY. */
int routing_deny_arg(struct gw_decision *out, const char *arg, const char *what);
int routing_deny_arg_host(struct gw_decision *out, const char *arg, const char *host,
                          enum ssrf_class cls);

/*
 * Vets the URL-valued arguments of the request's tool calls (routing_args.c): each URL is
 * parsed strictly and a lookup of its host added to the job. GW_PASS, or GW_DENY (out set).
 */
int routing_vet_arguments(struct job *job, const struct gw_request *req, struct gw_decision *out);

#endif
