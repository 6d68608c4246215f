/* toolgate: command-line entry point. Each subcommand lives in its module. */
#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: toolgate <command> [options]\n"
                 "  --version    print the version\n"
                 "  --help       this text\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("toolgate %s (%s)\n", TOOLGATE_VERSION, TOOLGATE_REV);
        return 0;
    }
    usage(strcmp(argv[1], "--help") == 0 ? stdout : stderr);
    return strcmp(argv[1], "--help") == 0 ? 0 : 2;
}
