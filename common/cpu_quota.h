/* cpu_quota.h — the CPUs a cgroup's CPU bandwidth limit allows this process
 * (a container's `cpus:`, a Kubernetes pod's CPU limit, systemd's CPUQuota),
 * and the memory its memory limit allows. The affinity mask OpenMP reads
 * shows every core of the node there: threads sized by it take turns under
 * the quota, and a team waiting at a barrier for a thread the quota paused
 * waits the rest of the period. */
#ifndef KVZ_COMMON_CPU_QUOTA_H
#define KVZ_COMMON_CPU_QUOTA_H

/* The tightest limit of this process's cgroup and the cgroups above it
 * (cgroup v2 cpu.max, v1 cpu.cfs_quota_us over cpu.cfs_period_us), in CPUs
 * rounded up; 0 where none is set or none can be read. */
int kvz_cpu_quota(void);

/* The same from the given /proc/self/cgroup and /proc/self/mountinfo (tests). */
int kvz_cpu_quota_from(const char *cgroup_path, const char *mountinfo_path);

/* The tightest memory limit of this process's cgroup and those above it
 * (cgroup v2 memory.max, v1 memory.limit_in_bytes), in bytes; 0 where none is
 * set or none can be read. A container's memory limit, which the physical
 * memory sysconf reports (the node's) knows nothing of. */
double kvz_memory_limit(void);
double kvz_memory_limit_from(const char *cgroup_path, const char *mountinfo_path);

#endif
