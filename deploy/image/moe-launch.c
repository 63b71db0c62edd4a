/*
 * The image's entrypoint: starts the moe command's JVM with the arguments it is given (the java
 * binary, the JVM flags, the main class dev.moecluster.cli.Moe, then the container's arguments), as
 * the ./moe script does. The image has no shell, so this is what leaves the Vector API's incubator
 * module out of --add-modules for help and version requests (and for no subcommand): the JDK
 * announces an incubator module with a "WARNING: Using incubator modules" line on every start, and
 * help output needs no kernels. The process replaces itself with the JVM (exec), so the JVM is the
 * container's process 1 and receives its signals.
 *
 * Built by deploy/image/rootfs.sh into /opt/moe/bin/moe-launch.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAIN_CLASS "dev.moecluster.cli.Moe"
#define INCUBATOR "jdk.incubator.vector"

static int asks_for_help(int argc, char **argv, int first) {
    if (first >= argc) {
        return 1; /* no subcommand: moe prints its help */
    }
    for (int i = first; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help") || !strcmp(argv[i], "-V")
                || !strcmp(argv[i], "--version")) {
            return 1;
        }
    }
    return 0;
}

/* The comma-separated module list without the incubator module; "java.se" if nothing else is left. */
static char *without_incubator(const char *modules) {
    char *copy = strdup(modules);
    char *out = calloc(strlen(modules) + sizeof "java.se", 1);
    if (copy == NULL || out == NULL) {
        perror("moe-launch");
        exit(127);
    }
    for (char *save = NULL, *m = strtok_r(copy, ",", &save); m != NULL; m = strtok_r(NULL, ",", &save)) {
        if (strcmp(m, INCUBATOR) != 0) {
            if (*out) {
                strcat(out, ",");
            }
            strcat(out, m);
        }
    }
    if (!*out) {
        strcpy(out, "java.se");
    }
    free(copy);
    return out;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "moe-launch: usage: moe-launch JAVA [JVM FLAGS] " MAIN_CLASS " [ARGS]\n");
        return 127;
    }
    int main_class = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], MAIN_CLASS)) {
            main_class = i;
            break;
        }
    }
    if (main_class < 0) {
        fprintf(stderr, "moe-launch: " MAIN_CLASS " is not among the arguments\n");
        return 127;
    }
    if (asks_for_help(argc, argv, main_class + 1)) {
        for (int i = 1; i + 1 < main_class; i++) {
            if (!strcmp(argv[i], "--add-modules")) {
                argv[i + 1] = without_incubator(argv[i + 1]);
            }
        }
    }
    execv(argv[1], argv + 1);
    fprintf(stderr, "moe-launch: cannot run %s: ", argv[1]);
    perror(NULL);
    return 127;
}
