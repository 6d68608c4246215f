/* Shared by the files of `toolgate audit ...` (audit_cli.c). */
#ifndef AUDIT_CLI_H
#define AUDIT_CLI_H

#include <stddef.h>

/* "sqlite:PATH" and "postgres://..." as given; a bare PATH as "sqlite:PATH" (in buf). */
const char *audit_cli_store_url(const char *arg, char *buf, size_t len);

/* `migrate FROM TO` (argv[0] = "audit"). Exit status: 0, 1 (a damaged record), 2. */
int audit_cli_migrate(int argc, char **argv);

#endif
