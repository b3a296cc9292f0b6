/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The DRAM eviction order (docs/policy.md): an adaptive window and main
 * list with two ghost lists, in the manner of ARC. A block seen for the
 * first time enters the window; a block hit, or put again while its key is
 * still remembered in a ghost list, enters the main list. Eviction takes
 * window blocks first while the window is over its target share, and the
 * target follows the ghosts: a put of a key recently dropped from the
 * window grows it, one recently dropped from the main list shrinks it.
 *
 * The policy knows blocks by slot (the store's entry index, < nslots) and
 * the hash of their key. It never frees anything itself: the store walks
 * candidates with kvs_policy_coldest() / kvs_policy_warmer() and removes
 * what it evicts. A block with tracked children is not evictable, so the
 * order never leaves a gap in a chain. O(1) per call. Not thread-safe: the
 * store's lock guards it.
 */
#ifndef KVS_POLICY_H
#define KVS_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KVS_POLICY_NIL UINT32_MAX
/* window_pct for the default, adaptive window. */
#define KVS_POLICY_ADAPTIVE UINT32_MAX

typedef struct kvs_policy kvs_policy_t;

/* nslots > 0; cache_blocks: the most blocks the cache can hold at once,
 * which sizes the ghost lists and the adaptation step (0, or more than
 * nslots: nslots); window_pct 0..100 for a fixed window share, or
 * KVS_POLICY_ADAPTIVE. -EINVAL or -ENOMEM. */
int kvs_policy_create(uint32_t nslots, uint32_t cache_blocks,
                      uint32_t window_pct, kvs_policy_t **policy_out);
void kvs_policy_destroy(kvs_policy_t *policy);

/* Slot enters the order (it is now in DRAM). parent: the tracked slot of
 * its parent block, or KVS_POLICY_NIL; the block goes just behind it when
 * both are in the same list, so a chain's leaves are reached first. */
void kvs_policy_insert(kvs_policy_t *policy, uint32_t slot, uint64_t hash,
                       uint32_t parent);
/* An access to a tracked slot. A chain is touched deepest block first. */
void kvs_policy_touch(kvs_policy_t *policy, uint32_t slot);
/* Touches slots[0..n-1] (a chain, root first) the way touching them one
 * by one deepest first would, in one splice, when they already lie in
 * the main list in that order (a chain matched before); false, touching
 * nothing, otherwise. */
bool kvs_policy_touch_run(kvs_policy_t *policy, const uint32_t *slots,
                          size_t n);
/* Slot leaves the order. remember: it was evicted or written behind (its
 * key goes to a ghost list), not deleted or replaced. No-op if untracked. */
void kvs_policy_remove(kvs_policy_t *policy, uint32_t slot, uint64_t hash,
                       bool remember);
bool kvs_policy_tracked(const kvs_policy_t *policy, uint32_t slot);

/* Eviction candidates, best first: kvs_policy_coldest(), then
 * kvs_policy_warmer() of the previous one, until KVS_POLICY_NIL. Every
 * tracked slot is visited once; a walk may remove the slot it is on after
 * taking its successor. */
uint32_t kvs_policy_coldest(kvs_policy_t *policy);
uint32_t kvs_policy_warmer(const kvs_policy_t *policy, uint32_t slot);
/* Whether evicting slot now leaves no tracked child without its parent. */
bool kvs_policy_evictable(const kvs_policy_t *policy, uint32_t slot);

/* The window's current target share, in 1/65536 of the tracked blocks. */
uint32_t kvs_policy_window_share(const kvs_policy_t *policy);
/* Bytes of memory the policy holds (order and ghosts). */
size_t kvs_policy_bytes(const kvs_policy_t *policy);
/* Consistency of the lists; 0 or KVS_ECORRUPT, logging what is wrong. */
int kvs_policy_check(const kvs_policy_t *policy);

#endif
