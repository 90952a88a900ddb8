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

/* Cache records (src/meta/records.h): one row per BuildKit cache record, the persistent mounts
 * that hold them, and indexes for the lookups of the cache manager. */
static const char v2[] =
	"CREATE TABLE records ("
	"  id TEXT PRIMARY KEY NOT NULL,"
	"  snapshotter TEXT NOT NULL,"
	"  kind INTEGER NOT NULL CHECK (kind IN (1, 2)),"
	"  parent TEXT REFERENCES records(id),"
	"  equal_mutable TEXT UNIQUE REFERENCES records(id),"
	"  snapshot TEXT,"
	"  description TEXT NOT NULL DEFAULT '',"
	"  record_type TEXT NOT NULL DEFAULT '',"
	"  layer_type TEXT NOT NULL DEFAULT '',"
	"  retain INTEGER NOT NULL DEFAULT 0,"
	"  deleted INTEGER NOT NULL DEFAULT 0,"
	"  extracted INTEGER NOT NULL DEFAULT 1,"
	"  created_at INTEGER NOT NULL,"
	"  last_used INTEGER,"
	"  usage_count INTEGER NOT NULL DEFAULT 0,"
	"  gen INTEGER NOT NULL DEFAULT 0,"
	"  size INTEGER,"
	"  size_gen INTEGER,"
	"  blob TEXT,"
	"  diff_id TEXT,"
	"  media_type TEXT,"
	"  chain_id TEXT,"
	"  blob_chain_id TEXT,"
	"  CHECK (equal_mutable IS NULL OR kind = 2),"
	"  CHECK (snapshot IS NOT NULL OR equal_mutable IS NOT NULL)"
	") WITHOUT ROWID;"
	"CREATE INDEX records_parent ON records(parent) WHERE parent IS NOT NULL;"
	"CREATE INDEX records_snapshot ON records(snapshotter, snapshot);"
	"CREATE INDEX records_chain_id ON records(chain_id) WHERE chain_id IS NOT NULL;"
	"CREATE INDEX records_blob_chain_id ON records(blob_chain_id) "
	"  WHERE blob_chain_id IS NOT NULL;"
	"CREATE INDEX tags_target ON tags(target);"
	"CREATE TABLE mounts ("
	"  target TEXT PRIMARY KEY NOT NULL,"
	"  record TEXT NOT NULL REFERENCES records(id),"
	"  view TEXT,"
	"  readonly INTEGER NOT NULL,"
	"  created_at INTEGER NOT NULL"
	") WITHOUT ROWID;"
	"CREATE INDEX mounts_record ON mounts(record);";

/* Images: a tag may name the image manifest blob its record came from (GC keeps that blob, and
 * what its containerd.io/gc.ref.content labels name, while the tag lives); the GC looks up
 * content labels by key. */
static const char v3[] = "ALTER TABLE tags ADD COLUMN manifest TEXT;"
			 "CREATE INDEX content_labels_key ON content_labels(key, digest);"
			 /* Prune asks whether a lease holds a record. */
			 "CREATE INDEX lease_resources_id ON lease_resources(type, id);";

/* Extracted snapshots whose files may not be on disk yet: committed without a sync, trusted only
 * in the boot that wrote them (src/cache/unsynced.c). */
static const char v4[] = "CREATE TABLE unsynced ("
			 "  snapshotter TEXT NOT NULL,"
			 "  snapshot TEXT NOT NULL,"
			 "  boot TEXT NOT NULL,"
			 "  at INTEGER NOT NULL,"
			 "  PRIMARY KEY (snapshotter, snapshot)"
			 ") WITHOUT ROWID;";

const char *const meta_migrations[META_SCHEMA_VERSION] = {v1, v2, v3, v4};
