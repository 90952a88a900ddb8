/* SPDX-License-Identifier: MIT */
/*
 * Fault injection for crash tests. fault_point("snapshot.prepare.after-rename") kills the process
 * with SIGKILL (no cleanup, no atexit: a kill -9 at that instant) when the environment variable
 * CAIRN_FAULT equals the point's name. Costs one getenv() per point; points sit only on paths
 * that touch the disk anyway. Nothing else in the library reads CAIRN_FAULT.
 *
 * Every point is listed in FAULT_POINTS below, so that a crash test can visit each in turn and
 * none is missed: tests/cli/crash.bats runs each listed point's operation and fails when the
 * point is not reached, and it fails when a call of fault_point() in the tree names a point that
 * is not listed. A CAIRN_FAULT naming no listed point aborts the process at the first point it
 * passes (a typo in a test must not pass as "never reached").
 *
 * Names are "<operation>.<step>": the step that has just become durable, or is about to.
 */
#pragma once

/* X(name, what happens at the instant the process dies) */
#define FAULT_POINTS(X)                                                                            \
	X("content.ingest.written", "ingest data partly written, nothing committed")               \
	X("content.commit.synced", "ingest data fsynced and verified, not yet published")          \
	X("content.commit.renamed", "blob renamed into blobs/, directory not yet fsynced")         \
	X("content.commit.published", "blob durable, ingest directory not yet removed")            \
	X("import.resolved", "blob checked and diff id computed, no record yet")                   \
	X("import.recorded", "lazy record committed, not yet retained by the CLI")                 \
	X("extract.prepared", "active snapshot for the layer prepared, nothing applied")           \
	X("extract.opened", "blob opened, apply not started")                                      \
	X("extract.applying", "about half of the layer blob applied")                              \
	X("extract.applied", "layer applied, synced or marked unsynced, snapshot not committed")   \
	X("extract.committed", "layer snapshot committed, record not marked extracted")            \
	X("extract.recorded", "record marked extracted, later layers not yet done")                \
	X("recover.extracted-again",                                                               \
	  "after a reboot: one unsynced layer extracted again, unsynced")                          \
	X("commit.recorded", "lazy immutable record committed, not finalized")                     \
	X("commit.finalize-snapshot", "finalize: snapshot committed, rows not yet changed")        \
	X("commit.finalized", "finalize: rows changed, the id not yet printed")                    \
	X("remove.snapshot-removed", "removal: a record's snapshot removed, its row still there")  \
	X("prune.tombstoned", "prune: batch tombstoned (lazy victims gone), no files touched")     \
	X("prune.record-removed", "prune: one victim removed, others still tombstoned")            \
	X("gc.marked", "gc: mark and pick done, nothing changed")                                  \
	X("gc.meta-swept", "gc: dead leases and labels deleted, no files touched")                 \
	X("gc.snapshot-removed", "gc: one unreachable snapshot removed, others remain")            \
	X("gc.blob-removed", "gc: one unreachable blob deleted, others remain")                    \
	X("image.import.after-blobs", "image import: blobs copied, manifest not yet labelled")     \
	X("image.import.after-record", "image import: one layer's record made, others not yet")    \
	X("image.import.after-tag", "image import: the tag committed, refs not yet released")      \
	X("snapshot.prepare.staged", "prepare: directory staged, no row")                          \
	X("snapshot.prepare.after-rename", "prepare: directory renamed in, row not committed")     \
	X("snapshot.prepare.after-commit", "prepare: row committed")                               \
	X("snapshot.commit.before-commit", "commit: transaction not committed")                    \
	X("snapshot.commit.after-commit", "commit: transaction committed")                         \
	X("snapshot.remove.after-rename", "remove: directory renamed to rm-, row still there")     \
	X("snapshot.remove.after-commit", "remove: row deleted, directory not yet deleted")

/* The number of listed points, and their names in list order. */
extern const char *const fault_points[];
extern const unsigned fault_points_n;

void fault_point(const char *name);
