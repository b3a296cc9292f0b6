/* SPDX-License-Identifier: Apache-2.0 */
/* Small compiler helpers used across kvstash. */
#ifndef KVS_COMPILER_H
#define KVS_COMPILER_H

#include <stddef.h>

#define kvs_likely(x) __builtin_expect(!!(x), 1)
#define kvs_unlikely(x) __builtin_expect(!!(x), 0)

#define KVS_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define KVS_ALIGN_UP(x, a) (((x) + ((a)-1)) & ~((__typeof__(x))(a)-1))
#define KVS_IS_ALIGNED(x, a) (((x) & ((__typeof__(x))(a)-1)) == 0)
#define KVS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define KVS_MAX(a, b) ((a) > (b) ? (a) : (b))

#define kvs_container_of(ptr, type, member)                                    \
    ((type *)((char *)(ptr)-offsetof(type, member)))

#define KVS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define KVS_UNUSED __attribute__((unused))

/* One step of a spin-wait: tells the CPU (and a hypervisor watching for
 * spinning vCPUs) that this thread waits. */
static inline void kvs_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

#endif
