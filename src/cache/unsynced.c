/* SPDX-License-Identifier: MIT */
/*
 * Unsynced extracts: an overlay extract commits its snapshot without waiting for the disk, and
 * durability is settled later (see internal.h). Why this is safe:
 *   - the snapshot is marked (table unsynced: boot id, CLOCK_BOOTTIME) before the commit that
 *     publishes it, in its own transaction, so no published snapshot lacks its mark;
 *   - a killed process loses no written data: it is in the page cache, which the next process
 *     reads; only a kernel crash or power loss drops it, and then the boot id changes;
 *   - a mark of another boot is therefore a snapshot whose files may be torn: the first open
 *     after the reboot empties it and applies its blob again (blobs are fsynced when added),
 *     parents first, then syncs, then forgets the marks; a crash in the middle leaves the marks,
 *     and the next open starts over;
 *   - in the same boot, the first open that finds marks CACHE_UNSYNCED_SETTLE_NS old (the
 *     kernel has written most of such data back by then) runs one syncfs() and forgets every
 *     mark made before it started.
 * Only overlay defers: its layer directory holds the layer's own files, so it can be extracted
 * again in place under children that use it as a lower layer.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/fault.h"
#include "base/fs.h"
#include "base/log.h"
#include "internal.h"

static int64_t boottime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void cache_boot_id(char buf[40])
{
	buf[0] = '\0';
	const char *env = secure_getenv("CAIRN_BOOT_ID");
	char tmp[40] = "";
	if (env && *env) {
		snprintf(tmp, sizeof(tmp), "%s", env);
	} else {
		int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return;
		ssize_t n = read(fd, tmp, sizeof(tmp) - 1);
		close(fd);
		if (n <= 0)
			return;
		tmp[n] = '\0';
		tmp[strcspn(tmp, "\n")] = '\0';
	}
	if (strlen(tmp) < 8 || strspn(tmp, "0123456789abcdefABCDEF-") != strlen(tmp))
		return;
	memcpy(buf, tmp, strlen(tmp) + 1);
}

int cache_unsynced_mark(cairn_cache *c, const char *snapshot, cairn_error **reterr)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(c->db, &tx, true, reterr);
	if (r < 0 ||
	    (r = meta_unsynced_add(&tx, c->driver, snapshot, c->boot, boottime_ns(), reterr)) < 0 ||
	    (r = meta_tx_commit(&tx, reterr)) < 0)
		return err_prefix(reterr, "snapshot '%s'", snapshot);
	return 0;
}

/* syncfs() of the filesystem holding the snapshots. */
static int sync_snapshots(cairn_cache *c, cairn_error **reterr)
{
	_cleanup_close_ int fd = fs_openat(c->store->rootfd, "snapshots",
	                                   O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, reterr);
	if (fd < 0)
		return err_prefix(reterr, "store '%s'", c->store->root);
	if (syncfs(fd) < 0)
		return err_errno(reterr, -errno, "sync '%s/snapshots'", c->store->root);
	return 0;
}

static int forget(cairn_cache *c, const char *snapshot, bool lazy, cairn_error **reterr)
{
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(c->db, &tx, true, reterr);
	if (r >= 0 && lazy)
		r = meta_record_set_extracted_snapshot(&tx, c->driver, snapshot, false, reterr);
	if (r >= 0 && (r = meta_unsynced_remove(&tx, c->driver, snapshot, reterr)) >= 0)
		r = meta_tx_commit(&tx, reterr);
	return r;
}

/* A snapshot that could not be extracted again goes, and its records become lazy (a later
 * extract reports what is wrong); one with children stays, marked. */
static int give_up(cairn_cache *c, const char *snapshot, const cairn_error *why,
                   cairn_error **reterr)
{
	_cleanup_(cairn_error_freep) cairn_error *err = NULL;
	int r = snap_remove(c->snap, snapshot, &err);
	if (r < 0 && r != -ENOENT) {
		log_debug("unsynced snapshot '%s' cannot be extracted again (%s) nor removed (%s): "
		          "it stays marked",
		          snapshot, cairn_error_message(why), cairn_error_message(err));
		return 0;
	}
	log_debug("unsynced snapshot '%s' cannot be extracted again (%s): removed, its records "
	          "are lazy again",
	          snapshot, cairn_error_message(why));
	return forget(c, snapshot, true, reterr);
}

static int recover_locked(cairn_cache *c, cairn_error **reterr)
{
	char **names = NULL;
	size_t n = 0;
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(c->db, &tx, false, reterr);
	if (r >= 0)
		r = meta_unsynced_other(&tx, c->driver, c->boot, &names, &n, reterr);
	meta_tx_end(&tx);
	_cleanup_free_ bool *done = calloc(n ? n : 1, sizeof(bool));
	if (r >= 0 && !done)
		r = err_set(reterr, -ENOMEM, "recover unsynced snapshots: out of memory");
	if (r >= 0 && n)
		log_debug(
			"extracting %zu snapshot(s) again: extracted before the machine restarted, "
			"they may not have reached the disk",
			n);
	for (size_t i = 0; r >= 0 && i < n; i++) {
		_cleanup_(cairn_error_freep) cairn_error *err = NULL;
		int k = cache_reextract(c, names[i], &err);
		if (k >= 0) {
			done[i] = true;
			fault_point("recover.extracted-again");
		} else {
			r = give_up(c, names[i], err, reterr);
		}
	}
	if (r >= 0 && n)
		r = sync_snapshots(c, reterr);
	for (size_t i = 0; r >= 0 && i < n; i++)
		if (done[i])
			r = forget(c, names[i], false, reterr);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return r;
}

/* Recovery runs once for all processes: byte 0 of ROOT/LOCK (an OFD lock, apart from the
 * flock every process holds on the same file) is held while it runs. */
static int recover(cairn_cache *c, cairn_error **reterr)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
	while (fcntl(c->store->lockfd, F_OFD_SETLKW, &fl) < 0)
		if (errno != EINTR)
			return err_errno(reterr, -errno, "lock '%s/LOCK' for recovery",
			                 c->store->root);
	int r = recover_locked(c, reterr);
	fl.l_type = F_UNLCK;
	(void)fcntl(c->store->lockfd, F_OFD_SETLK, &fl);
	return r;
}

int cache_unsynced_settle(cairn_cache *c, cairn_error **reterr)
{
	int64_t other = 0, settled = 0;
	_cleanup_(meta_tx_end) meta_tx tx = {0};
	int r = meta_tx_begin(c->db, &tx, false, reterr);
	if (r >= 0)
		r = meta_unsynced_count(&tx, c->driver, c->boot,
		                        boottime_ns() - CACHE_UNSYNCED_SETTLE_NS, &other, &settled,
		                        reterr);
	meta_tx_end(&tx);
	if (r < 0)
		return r;
	if (other > 0 && (r = recover(c, reterr)) < 0)
		return r;
	if (settled > 0 && c->boot[0]) {
		int64_t start = boottime_ns();
		if ((r = sync_snapshots(c, reterr)) < 0 ||
		    (r = meta_tx_begin(c->db, &tx, true, reterr)) < 0 ||
		    (r = meta_unsynced_clear(&tx, c->driver, c->boot, start, reterr)) < 0 ||
		    (r = meta_tx_commit(&tx, reterr)) < 0)
			return r;
		log_debug("synced the snapshots extracted before %" PRId64 " ns of boot '%s'",
		          start, c->boot);
	}
	return 0;
}
