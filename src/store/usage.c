/* SPDX-License-Identifier: MIT */
/* The disk usage of a whole store, as `du -sx ROOT` counts it, broken down by part. */
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

#include "base/fs.h"
#include "store.h"

/* The part of the store that top-level entry @name belongs to, in @u. */
static uint64_t *part(cairn_store_usage *u, const char *name)
{
	if (strcmp(name, "blobs") == 0)
		return &u->blobs;
	if (strcmp(name, "snapshots") == 0)
		return &u->snapshots;
	if (strcmp(name, "ingest") == 0)
		return &u->ingest;
	if (strcmp(name, "tmp") == 0)
		return &u->tmp;
	if (strcmp(name, "meta.db") == 0 || strcmp(name, "meta.db-wal") == 0 ||
	    strcmp(name, "meta.db-shm") == 0 || strcmp(name, "meta.db-journal") == 0)
		return &u->metadata;
	return &u->other;
}

static int count_entries(cairn_store *s, fs_du *du, cairn_store_usage *u, cairn_error **reterr)
{
	DIR *d = NULL;
	int r = fs_opendir_fd(s->rootfd, s->root, &d, reterr);
	if (r < 0)
		return r;
	struct dirent *de;
	while (r == 0 && (de = fs_readdir(d))) {
		char what[4096];
		snprintf(what, sizeof(what), "%s/%s", s->root, de->d_name);
		r = fs_du_add(du, s->rootfd, de->d_name, what, part(u, de->d_name), reterr);
	}
	if (r == 0 && errno != 0)
		r = err_errno(reterr, -errno, "read directory '%s'", s->root);
	closedir(d);
	return r;
}

int cairn_store_disk_usage(cairn_store *s, cairn_store_usage *ret, cairn_error **reterr)
{
	if (!s || !ret)
		return err_set(reterr, -EINVAL, "disk usage of store: invalid arguments");
	cairn_store_usage u = {0};
	struct stat st;
	if (fstat(s->rootfd, &st) < 0)
		return err_errno(reterr, -errno, "stat '%s'", s->root);
	u.other = (uint64_t)st.st_blocks * 512; /* the root directory itself */
	_cleanup_(fs_du_freep) fs_du *du = NULL;
	int r = fs_du_new(s->rootfd, &du, reterr);
	if (r < 0 || (r = count_entries(s, du, &u, reterr)) < 0)
		return err_prefix(reterr, "disk usage of store '%s'", s->root);
	u.total = u.blobs + u.snapshots + u.metadata + u.ingest + u.tmp + u.other;
	*ret = u;
	return 0;
}
