/*
 * admin: the handler of the admin listener (admin.listen): liveness (/healthz), readiness
 * (/readyz: the configuration, and every module's own checks) and Prometheus metrics
 * (/metrics: the core's counters and every module's). Nothing else is served there, route
 * paths included, and none of it is served on the gateway's listeners.
 *
 * Every request is authorized first (admin_authorize): with admin.token_file, it must carry
 * `Authorization: Bearer <token>`; without it, only loopback peers are answered.
 */
#ifndef GW_ADMIN_H
#define GW_ADMIN_H

#include <sys/socket.h>

#include "core/config.h"
#include "core/server.h"

/* The admin listener's handler (static; never freed). */
const struct gw_handler *admin_handler(void);

/* True when the peer is a loopback address (127.0.0.0/8, ::1, or ::ffff:127.x.y.z). */
int admin_peer_is_loopback(const struct sockaddr_storage *peer);

/*
 * Whether a request may be answered: 0 when it may, 401 when a token is configured and the
 * request carries none (or not as one Bearer credential), 403 when it carries a wrong token,
 * or when no token is configured and the peer is not loopback. `authorization` is the value
 * of the Authorization header (NULL slice when absent), `n_authorization` how many the
 * request had. Tokens are compared through their SHA-256 with CRYPTO_memcmp, in time that
 * does not depend on where they differ or on their lengths.
 */
int admin_authorize(const struct gw_admin_config *ac, const struct sockaddr_storage *peer,
                    struct gw_slice authorization, size_t n_authorization);

/*
 * `toolgate status --admin URL [--token-file FILE]`: a terminal summary of GET /admin/status.
 * Exit 0 when the gateway is ready, 1 when it is not (or draining), 2 on a usage error or
 * when the admin listener cannot be reached.
 */
/*
 * POST /admin/reload (admin_reload.c): reloads the configuration and answers with the
 * outcome once it has ended. Called for that path after authorization.
 */
void admin_reload_post(struct gw_conn *c, const struct http1_parser *p);

int admin_status_main(int argc, char **argv);

#endif
