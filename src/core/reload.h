/*
 * reload: a new configuration generation built off the event loop (SIGHUP, POST
 * /admin/reload). A thread re-reads and parses the file (policy index, safety database and
 * the rest are built by the modules' parse), checks what cannot change without a restart,
 * runs every module's prepare, loads the listeners' certificates, and on success commits and
 * swaps the generation in for new requests (core/generation.h); on failure the running one
 * keeps serving and the error is kept for the log, the answer, /admin/status and /metrics.
 * One reload runs at a time.
 */
#ifndef GW_RELOAD_H
#define GW_RELOAD_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct gw_config;
struct gw_metrics_out;

/* How one reload ended (borrowed by the done callback for the length of the call). */
struct gw_reload_outcome {
    int ok;
    /* The HTTP status for an answer: 200, 409 (a restart is needed, or busy), 422 (the file
     * is invalid), 503 (shutting down), 500 (internal). */
    int status;
    const char *code;    /* "ok" | "invalid" | "restart_required" | "busy" | "stopping" | "error" */
    const char *message; /* a sentence; the file's error as the loader wrote it */
    int line;            /* the file's line the error points at, or 0 */
    uint64_t generation; /* being served afterwards */
    uint64_t duration_ms;
};

/* The file a reload re-reads (kept as given at start). Called once before serving. */
void gw_reload_setup(const char *config_path);

enum { GW_RELOAD_STARTED = 0, GW_RELOAD_BUSY = 1, GW_RELOAD_REFUSED = -1 };

/*
 * Asks for a reload. `source` ("signal", "admin") labels the log line. With `done`, it is
 * called on the reload thread when the reload has ended (post to a worker from there).
 * Returns GW_RELOAD_STARTED; GW_RELOAD_BUSY when one is running (without `done`, a signal,
 * one more reload is run after it, however many signals came: they coalesce); or
 * GW_RELOAD_REFUSED when the process is shutting down or has no file to read (then `done`
 * is not called).
 */
int gw_reload_request(const char *source,
                      void (*done)(void *arg, const struct gw_reload_outcome *o), void *arg);
/* After a swap: every worker tells its open streams when their lists may have changed. */
void reload_notify_all(void);
/* SIGHUP: a reload without an answer to give. */
void gw_reload_on_signal(void);
/* Refuses further reloads from now on (the drain has begun); does not wait. Any thread. */
void gw_reload_refuse(void);
/* Refuses further reloads and waits for a running one to end (before the workers go). */
void gw_reload_shutdown(void);

/* {"generation", "running", "last": {...}, "succeeded", "failed"} for GET /admin/status. */
json_t *gw_reload_status_json(void);
/* toolgate_config_reloads_total{outcome}, toolgate_config_last_reload_* (GET /metrics). */
void gw_reload_metrics(struct gw_metrics_out *out);

/*
 * For a module's prepare: 0 when the top-level section `key` is the same in both
 * generations; else -1 with "<key> changed: <why>; a restart is needed ..." in err.
 */
struct cfg_error;
int gw_reload_require_same(const struct gw_config *running, const struct gw_config *next,
                           const char *key, const char *why, struct cfg_error *err);

/*
 * The core's own keys that cannot change without a restart: 0 when `next` keeps them, else
 * -1 with a sentence naming the first such key in err (exposed for tests).
 */
int gw_reload_check_restart(const struct gw_config *running, const struct gw_config *next,
                            char *err, size_t errlen);

#endif
