/* SPDX-License-Identifier: MIT */
/*
 * Schema history. Never edit a migration that has shipped: add the next one and bump
 * META_SCHEMA_VERSION. Times are nanoseconds since the epoch (INTEGER). docs/on-disk-format.md
 * describes every table.
 */
#include "schema.h"

static const char v1[] =
        /* BuildKit's metadata store: items with JSON values, an optional search index per
         * value, and opaque external data. Cache records live here. */
        "CREATE TABLE items ("
        "  id TEXT PRIMARY KEY NOT NULL"
        ") WITHOUT ROWID;"
        "CREATE TABLE item_values ("
        "  item TEXT NOT NULL REFERENCES items(id) ON DELETE CASCADE,"
        "  key TEXT NOT NULL,"
        "  value TEXT NOT NULL,"
        "  idx TEXT,"
        "  PRIMARY KEY (item, key)"
        ") WITHOUT ROWID;"
        "CREATE INDEX item_values_idx ON item_values(idx, item) WHERE idx IS NOT NULL;"
        "CREATE TABLE item_external ("
        "  item TEXT NOT NULL REFERENCES items(id) ON DELETE CASCADE,"
        "  key TEXT NOT NULL,"
        "  data BLOB NOT NULL,"
        "  PRIMARY KEY (item, key)"
        ") WITHOUT ROWID;"
        /* Content labels (the blobs themselves are files under blobs/). */
        "CREATE TABLE content_labels ("
        "  digest TEXT NOT NULL,"
        "  key TEXT NOT NULL,"
        "  value TEXT NOT NULL,"
        "  PRIMARY KEY (digest, key)"
        ") WITHOUT ROWID;"
        /* Snapshots of every snapshotter; a directory snapshots/<id> per row. */
        "CREATE TABLE snapshots ("
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  snapshotter TEXT NOT NULL,"
        "  name TEXT NOT NULL,"
        "  kind INTEGER NOT NULL CHECK (kind IN (1, 2, 3)),"
        "  parent INTEGER REFERENCES snapshots(id),"
        "  created_at INTEGER NOT NULL,"
        "  updated_at INTEGER NOT NULL,"
        "  size INTEGER NOT NULL DEFAULT 0,"
        "  inodes INTEGER NOT NULL DEFAULT 0,"
        "  UNIQUE (snapshotter, name)"
        ");"
        "CREATE INDEX snapshots_parent ON snapshots(parent);"
        "CREATE TABLE snapshot_labels ("
        "  snapshot INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,"
        "  key TEXT NOT NULL,"
        "  value TEXT NOT NULL,"
        "  PRIMARY KEY (snapshot, key)"
        ") WITHOUT ROWID;"
        /* Leases hold resources against gc; a process lease names its pid and start time. */
        "CREATE TABLE leases ("
        "  id TEXT PRIMARY KEY NOT NULL,"
        "  created_at INTEGER NOT NULL,"
        "  expires_at INTEGER,"
        "  pid INTEGER,"
        "  pid_start INTEGER"
        ") WITHOUT ROWID;"
        "CREATE TABLE lease_labels ("
        "  lease TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,"
        "  key TEXT NOT NULL,"
        "  value TEXT NOT NULL,"
        "  PRIMARY KEY (lease, key)"
        ") WITHOUT ROWID;"
        "CREATE TABLE lease_resources ("
        "  lease TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,"
        "  type TEXT NOT NULL,"
        "  id TEXT NOT NULL,"
        "  PRIMARY KEY (lease, type, id)"
        ") WITHOUT ROWID;"
        /* Human names for records. */
        "CREATE TABLE tags ("
        "  name TEXT PRIMARY KEY NOT NULL,"
        "  target TEXT NOT NULL,"
        "  created_at INTEGER NOT NULL"
        ") WITHOUT ROWID;"
        /* Facts about the store itself: probes remembered, creation time. */
        "CREATE TABLE store_info ("
        "  key TEXT PRIMARY KEY NOT NULL,"
        "  value TEXT NOT NULL"
        ") WITHOUT ROWID;";

const char *const meta_migrations[META_SCHEMA_VERSION] = {v1};
