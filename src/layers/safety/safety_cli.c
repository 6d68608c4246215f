/*
 * safety_cli: `toolgate safety validate|scan|redact`. `validate` lets other implementations
 * be compared with ours (one candidate per line in, 1 or 0 per line out); `scan` and `redact`
 * show what the layer would find in, and do to, a JSON document.
 */
#include "layers/safety/safety-int.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: toolgate safety validate --type "
            "iban|card|ssn|itin|npi|dea|email|phone|ipv4|ipv6|jwt|date\n"
            "           reads one candidate per line on stdin, prints 1 (valid) or 0 per line\n"
            "       toolgate safety scan [--config FILE] [--direction request|response] "
            "FILE.json|-\n"
            "           prints the findings: type, JSON Pointer, count, action\n"
            "       toolgate safety redact [--config FILE] [--direction request|response] "
            "FILE.json|-\n"
            "           prints the document with redactions applied\n");
}

static int validate_one(const char *type, const char *s, size_t n)
{
    if (strcmp(type, "iban") == 0)
        return safety_iban_ok(s, n);
    if (strcmp(type, "card") == 0)
        return safety_card_ok(s, n, NULL);
    if (strcmp(type, "ssn") == 0)
        return safety_ssn_ok(s, n);
    if (strcmp(type, "itin") == 0)
        return safety_itin_ok(s, n);
    if (strcmp(type, "npi") == 0)
        return safety_npi_ok(s, n);
    if (strcmp(type, "dea") == 0)
        return safety_dea_ok(s, n);
    if (strcmp(type, "email") == 0)
        return safety_email_ok(s, n);
    if (strcmp(type, "phone") == 0)
        return safety_phone_ok(s, n);
    if (strcmp(type, "ipv4") == 0)
        return safety_ipv4_ok(s, n);
    if (strcmp(type, "ipv6") == 0)
        return safety_ipv6_ok(s, n);
    if (strcmp(type, "jwt") == 0)
        return safety_jwt_ok(s, n);
    if (strcmp(type, "date") == 0)
        return safety_date_ok(s, n);
    return -1;
}

static int cmd_validate(int argc, char **argv)
{
    static const struct option opts[] = {
        {"type", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *type = NULL;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "t:h", opts, NULL)) != -1) {
        if (ch == 't') {
            type = optarg;
        } else {
            usage(ch == 'h' ? stdout : stderr);
            return ch == 'h' ? 0 : 2;
        }
    }
    if (!type || validate_one(type, "", 0) < 0) {
        fprintf(stderr, "toolgate safety validate: --type must be one of iban, card, ssn, itin, "
                        "npi, dea, email, phone, ipv4, ipv6, jwt, date\n");
        return 2;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        size_t len = (size_t)n;
        if (len && line[len - 1] == '\n')
            len--;
        if (len && line[len - 1] == '\r')
            len--;
        fputs(validate_one(type, line, len) == 1 ? "1\n" : "0\n", stdout);
    }
    free(line);
    return fflush(stdout) == 0 ? 0 : 2;
}

static const char *const action_names[] = {"log", "redact", "block"};

static int cmd_scan(int argc, char **argv, int redact)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"direction", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL, *dir = "request";
    struct gw_config *cfg = NULL;
    struct safety_config *own = NULL;
    const struct safety_config *sc;
    json_t *doc = NULL;
    int rc = 2, ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:d:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            config = optarg;
            break;
        case 'd':
            dir = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1 || (strcmp(dir, "request") != 0 && strcmp(dir, "response") != 0)) {
        usage(stderr);
        return 2;
    }
    if (config) {
        struct cfg_error err = {{0}};
        cfg = gw_config_load(config, &err);
        if (!cfg) {
            fprintf(stderr, "%s\n", err.msg);
            return 2;
        }
        sc = safety_config_of(cfg);
    } else {
        sc = own = safety_config_default();
        if (!own) {
            fprintf(stderr, "toolgate safety: cannot compile the built-in detectors\n");
            return 2;
        }
    }
    const char *file = argv[optind];
    struct gw_findings findings = {0};
    json_error_t jerr;
    doc = strcmp(file, "-") == 0 ? json_loadf(stdin, JSON_REJECT_DUPLICATES, &jerr)
                                 : json_load_file(file, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        fprintf(stderr, "toolgate safety: %s:%d:%d: %s\n", file, jerr.line, jerr.column, jerr.text);
        goto out;
    }
    size_t budget = sc->max_scan_bytes;
    struct safety_scan_opts o = {
        .direction = strcmp(dir, "response") == 0 ? GW_DIR_RESPONSE : GW_DIR_REQUEST,
        .redact = redact,
        .budget = &budget,
    };
    struct safety_result res;
    memset(&res, 0, sizeof res);
    safety_scan_json(sc, doc, "", &o, &findings, &res);
    if (res.error) {
        fprintf(stderr, "toolgate safety: %s: not scanned completely (%s)\n", file, res.error_code);
        goto out;
    }
    if (redact) {
        char *s = json_dumps(doc, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
        if (!s)
            goto out;
        printf("%s\n", s);
        free(s);
    } else {
        for (size_t i = 0; i < findings.n; i++) {
            const struct gw_finding *f = &findings.items[i];
            printf("%s\t%s\t%u\t%s\n", f->type, f->path[0] ? f->path : "/", f->count,
                   action_names[f->action]);
        }
        if (findings.dropped)
            printf("(%zu more findings not listed)\n", findings.dropped);
        if (res.flagged)
            printf("(not scanned completely: over safety.limits)\n");
    }
    rc = res.block && !redact ? 1 : 0;
out:
    gw_findings_free(&findings);
    json_decref(doc);
    safety_config_free(own);
    gw_config_free(cfg);
    return rc;
}

int safety_cli_main(int argc, char **argv)
{
    int rc;
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "validate") == 0)
        rc = cmd_validate(argc - 1, argv + 1);
    else if (strcmp(argv[1], "scan") == 0)
        rc = cmd_scan(argc - 1, argv + 1, 0);
    else if (strcmp(argv[1], "redact") == 0)
        rc = cmd_scan(argc - 1, argv + 1, 1);
    else {
        fprintf(stderr, "toolgate safety: unknown command \"%s\"\n", argv[1]);
        usage(stderr);
        rc = 2;
    }
    safety_thread_cleanup();
    return rc;
}
