/* cpu_quota.c — a cgroup's CPU bandwidth and memory limits, read from /proc
 * and the cgroup file system (see cpu_quota.h). */
#include "common/cpu_quota.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether the comma-separated list holds `name`. */
static int list_has(const char *list, const char *name)
{
    const size_t n = strlen(name);
    for (const char *p = list; p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return 1;
        p = end ? end + 1 : NULL;
    }
    return 0;
}

/* This process's cgroup: v2's line ("0::PATH"), or the v1 line whose
 * controllers include `controller` ("N:cpu,cpuacct:PATH"). */
static int cgroup_path(const char *file, int v2, const char *controller, char *out, size_t size)
{
    FILE *f = fopen(file, "re");
    if (!f)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *controllers = strchr(line, ':');
        char *path = controllers ? strchr(controllers + 1, ':') : NULL;
        if (!path)
            continue;
        *controllers++ = '\0';
        *path++ = '\0';
        int is_v2 = strcmp(line, "0") == 0 && *controllers == '\0';
        if (v2 ? is_v2 : !is_v2 && list_has(controllers, controller))
            found = snprintf(out, size, "%s", path) < (int)size;
    }
    fclose(f);
    return found;
}

/* Where that hierarchy is mounted (`point`), and which of its cgroups the
 * mount shows as its top (`root`: a container's own, in its namespace). */
static int cgroup_mount(const char *file, int v2, const char *controller, char *root, char *point, size_t size)
{
    FILE *f = fopen(file, "re");
    if (!f)
        return 0;
    char line[8192];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        /* id parent major:minor root mountpoint options [optional...] - type source super-options */
        char *field[64], *save = NULL;
        int n = 0, dash = -1;
        for (char *tok = strtok_r(line, " ", &save); tok && n < 64; tok = strtok_r(NULL, " ", &save)) {
            if (dash < 0 && n >= 6 && strcmp(tok, "-") == 0)
                dash = n;
            field[n++] = tok;
        }
        if (dash < 0 || dash + 1 >= n)
            continue;
        const char *type = field[dash + 1], *super = dash + 3 < n ? field[dash + 3] : "";
        if (v2 ? strcmp(type, "cgroup2") == 0 : strcmp(type, "cgroup") == 0 && list_has(super, controller))
            found = snprintf(root, size, "%s", field[3]) < (int)size && snprintf(point, size, "%s", field[4]) < (int)size;
    }
    fclose(f);
    return found;
}

static double number_in(const char *dir, const char *name)
{
    char path[8400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "re");
    double v = 0;
    if (f && fscanf(f, "%lf", &v) != 1)
        v = 0;
    if (f)
        fclose(f);
    return v;
}

/* The limit set on one cgroup, in CPUs; 0: none. */
static double cpu_limit_at(const char *dir, int v2)
{
    if (!v2) { /* cfs_quota_us -1: none */
        double quota = number_in(dir, "cpu.cfs_quota_us"), period = number_in(dir, "cpu.cfs_period_us");
        return quota > 0 && period > 0 ? quota / period : 0;
    }
    char path[8400], quota[32];
    double period = 0;
    snprintf(path, sizeof path, "%s/cpu.max", dir);
    FILE *f = fopen(path, "re"); /* "max 100000", or "150000 100000" */
    if (!f)
        return 0;
    int read = fscanf(f, "%31s %lf", quota, &period) == 2;
    fclose(f);
    if (!read || strcmp(quota, "max") == 0 || period <= 0)
        return 0;
    double q = strtod(quota, NULL);
    return q > 0 ? q / period : 0;
}

/* The limit set on one cgroup, in bytes; 0: none (v2 "max"; v1 says none
 * with a number near 2^63, page-aligned, which no machine's memory comes near). */
static double memory_limit_at(const char *dir, int v2)
{
    double limit = number_in(dir, v2 ? "memory.max" : "memory.limit_in_bytes");
    return limit >= 0x1p62 ? 0 : limit;
}

/* The tightest limit that limit_at finds on this process's cgroup of
 * `controller` and the cgroups above it; 0: none. */
static double tightest_limit(const char *cgroup_file, const char *mountinfo_file, int v2, const char *controller,
                             double (*limit_at)(const char *dir, int v2))
{
    char path[4096], root[4096], point[4096], dir[8300];
    if (!cgroup_path(cgroup_file, v2, controller, path, sizeof path) ||
        !cgroup_mount(mountinfo_file, v2, controller, root, point, sizeof root))
        return 0;
    /* the cgroup as the mount shows it: below the mount's top */
    const char *below = path;
    size_t root_len = strlen(root);
    if (strcmp(root, "/") != 0 && strncmp(path, root, root_len) == 0 &&
        (path[root_len] == '/' || path[root_len] == '\0'))
        below = path + root_len;
    snprintf(dir, sizeof dir, "%s%s", point, strcmp(below, "/") == 0 ? "" : below);
    /* each cgroup up to the mount's top may set one; the tightest holds (a
     * folder this namespace does not show limits nothing) */
    const size_t top = strlen(point);
    double tightest = 0;
    for (;;) {
        double limit = limit_at(dir, v2);
        if (limit > 0 && (tightest == 0 || limit < tightest))
            tightest = limit;
        char *slash = strrchr(dir, '/');
        if (strlen(dir) <= top || !slash || (size_t)(slash - dir) < top)
            break;
        *slash = '\0';
    }
    return tightest;
}

static int quota_of(const char *cgroup_file, const char *mountinfo_file, int v2)
{
    double tightest = tightest_limit(cgroup_file, mountinfo_file, v2, "cpu", cpu_limit_at);
    if (tightest <= 0)
        return 0;
    return tightest >= 1 << 20 ? 1 << 20 : (int)ceil(tightest - 1e-9); /* no limit worth the name */
}

int kvz_cpu_quota_from(const char *cgroup_path_file, const char *mountinfo_path)
{
    int quota = quota_of(cgroup_path_file, mountinfo_path, 1);
    return quota ? quota : quota_of(cgroup_path_file, mountinfo_path, 0);
}

int kvz_cpu_quota(void) { return kvz_cpu_quota_from("/proc/self/cgroup", "/proc/self/mountinfo"); }

double kvz_memory_limit_from(const char *cgroup_path_file, const char *mountinfo_path)
{
    double limit = tightest_limit(cgroup_path_file, mountinfo_path, 1, "memory", memory_limit_at);
    return limit > 0 ? limit : tightest_limit(cgroup_path_file, mountinfo_path, 0, "memory", memory_limit_at);
}

double kvz_memory_limit(void) { return kvz_memory_limit_from("/proc/self/cgroup", "/proc/self/mountinfo"); }
