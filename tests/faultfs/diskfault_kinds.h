/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The disk fault kinds of test_diskfault (the engine) and
 * test_diskfault_daemon (a real kvstashd): the faultfs rule of each, the
 * counter that says it fired, when it is on and what the durable puts
 * made meanwhile must give. One table, so that both tests inject the same
 * faults. See docs/testing.md ("Faults below the engine").
 */
#ifndef KVS_TESTS_DISKFAULT_KINDS_H
#define KVS_TESTS_DISKFAULT_KINDS_H

#include <stdbool.h>

struct kvs_dfkind {
    const char *name;  /* for the report */
    const char *fired; /* faultfs counter */
    const char *rule;  /* faultfs rule */
    bool on_write;     /* on while writing (else while reading) */
    bool puts_fail;    /* the durable puts must fail */
    bool index;        /* RocksDB takes no writes after the first
                        * failed one, until the index reopens it */
};

static const struct kvs_dfkind kvs_dfkinds[] = {
    {"eio_read", "fired_eio_read", "rule eio_read data.kvs", false, false,
     false},
    {"flip_read header", "fired_flip_read",
     "rule flip_read data.kvs at 0 span 128", false, false, false},
    {"flip_read payload", "fired_flip_read",
     "rule flip_read data.kvs at 4096 span 4096", false, false, false},
    {"drop_write", "fired_drop_write", "rule drop_write data.kvs", true, false,
     false},
    {"torn_write", "fired_torn_write", "rule torn_write data.kvs arg 4096",
     true, false, false},
    {"eio_write", "fired_eio_write", "rule eio_write data.kvs", true, true,
     false},
    {"eio_write index", "fired_eio_write", "rule eio_write index/0", true, true,
     true},
};
#define KVS_DFKINDS (sizeof(kvs_dfkinds) / sizeof(kvs_dfkinds[0]))

#endif
