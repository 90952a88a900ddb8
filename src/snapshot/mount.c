/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "config.h"
#include "mount.h"

bool snap_mount_no_fsconfig;

struct snap_mount *snap_mounts_free(struct snap_mount *m, size_t n)
{
	if (!m)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		free(m[i].type);
		free(m[i].source);
		for (size_t j = 0; j < m[i].n_options; j++)
			free(m[i].options[j]);
		free(m[i].options);
	}
	free(m);
	return NULL;
}

static void mount_clear(struct snap_mount *m)
{
	free(m->type);
	free(m->source);
	for (size_t j = 0; j < m->n_options; j++)
		free(m->options[j]);
	free(m->options);
	*m = (struct snap_mount){0};
}

/* Appends @opt (ownership taken, freed on failure). */
static int add_owned(struct snap_mount *m, char *opt)
{
	if (!opt)
		return -ENOMEM;
	char **n = realloc(m->options, (m->n_options + 1) * sizeof(*n));
	if (!n) {
		free(opt);
		return -ENOMEM;
	}
	m->options = n;
	m->options[m->n_options++] = opt;
	return 0;
}

int snap_mount_add_option(struct snap_mount *m, const char *fmt, ...)
{
	char *opt = NULL;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&opt, fmt, ap) < 0)
		opt = NULL;
	va_end(ap);
	return add_owned(m, opt);
}

int snap_mount_set(struct snap_mount *m, const char *type, const char *source,
                   const char *const *options)
{
	*m = (struct snap_mount){.type = strdup(type), .source = strdup(source)};
	int r = m->type && m->source ? 0 : -ENOMEM;
	for (size_t i = 0; r == 0 && options && options[i]; i++)
		r = add_owned(m, strdup(options[i]));
	if (r < 0)
		mount_clear(m);
	return r;
}

int snap_mounts_copy(const struct snap_mount *m, size_t n, struct snap_mount **ret,
                     cairn_error **reterr)
{
	struct snap_mount *c = calloc(n ? n : 1, sizeof(*c));
	if (!c)
		return err_set(reterr, -ENOMEM, "copy mounts: out of memory");
	for (size_t i = 0; i < n; i++) {
		c[i] = (struct snap_mount){.type = strdup(m[i].type),
		                           .source = strdup(m[i].source)};
		int r = c[i].type && c[i].source ? 0 : -ENOMEM;
		for (size_t j = 0; r == 0 && j < m[i].n_options; j++)
			r = add_owned(&c[i], strdup(m[i].options[j]));
		if (r < 0) {
			snap_mounts_free(c, i + 1);
			return err_set(reterr, -ENOMEM, "copy mounts: out of memory");
		}
	}
	*ret = c;
	return 0;
}

static bool has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The overlay half of the read-only conversion, in place on a private copy. */
static int overlay_readonly(struct snap_mount *m)
{
	const char *upper = NULL;
	size_t k = 0;
	for (size_t j = 0; j < m->n_options; j++)
		if (has_prefix(m->options[j], "upperdir="))
			upper = m->options[j] + strlen("upperdir=");
	_cleanup_free_ char *upper_copy = upper ? strdup(upper) : NULL;
	if (upper && !upper_copy)
		return -ENOMEM;
	for (size_t j = 0; j < m->n_options; j++) {
		char *o = m->options[j];
		if (has_prefix(o, "workdir=") || has_prefix(o, "upperdir=")) {
			free(o);
			continue;
		}
		if (upper_copy && has_prefix(o, "lowerdir=")) {
			char *n = NULL;
			if (asprintf(&n, "lowerdir=%s:%s", upper_copy, o + strlen("lowerdir=")) < 0)
				return -ENOMEM;
			free(o);
			o = n;
		}
		m->options[k++] = o;
	}
	m->n_options = k;
	return 0;
}

static int other_readonly(struct snap_mount *m)
{
	size_t k = 0;
	for (size_t j = 0; j < m->n_options; j++) {
		if (strcmp(m->options[j], "rw") == 0)
			free(m->options[j]);
		else
			m->options[k++] = m->options[j];
	}
	m->n_options = k;
	return add_owned(m, strdup("ro"));
}

int snap_mounts_readonly(const struct snap_mount *m, size_t n, struct snap_mount **ret,
                         cairn_error **reterr)
{
	struct snap_mount *c = NULL;
	int r = snap_mounts_copy(m, n, &c, reterr);
	if (r < 0)
		return r;
	for (size_t i = 0; r == 0 && i < n; i++)
		r = strcmp(c[i].type, "overlay") == 0 ? overlay_readonly(&c[i])
		                                      : other_readonly(&c[i]);
	if (r < 0) {
		snap_mounts_free(c, n);
		return err_set(reterr, r, "read-only mounts: out of memory");
	}
	*ret = c;
	return 0;
}

/* A growing string for the JSON renderer. */
struct buf {
	char *s;
	size_t len, cap;
	bool oom;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *ns = realloc(b->s, cap);
		if (!ns) {
			b->oom = true;
			return;
		}
		b->s = ns;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

static void buf_json_string(struct buf *b, const char *s)
{
	buf_add(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char esc[8];
		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			buf_add(b, esc, 2);
		} else if (*p < 0x20 || *p == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", *p);
			buf_add(b, esc, 6);
		} else {
			buf_add(b, (const char *)p, 1);
		}
	}
	buf_add(b, "\"", 1);
}

int snap_mounts_json(const struct snap_mount *m, size_t n, char **ret, cairn_error **reterr)
{
	struct buf b = {0};
	buf_str(&b, "[");
	for (size_t i = 0; i < n; i++) {
		buf_str(&b, i ? ",{\"type\":" : "{\"type\":");
		buf_json_string(&b, m[i].type);
		buf_str(&b, ",\"source\":");
		buf_json_string(&b, m[i].source);
		buf_str(&b, ",\"options\":[");
		for (size_t j = 0; j < m[i].n_options; j++) {
			if (j)
				buf_str(&b, ",");
			buf_json_string(&b, m[i].options[j]);
		}
		buf_str(&b, "]}");
	}
	buf_str(&b, "]");
	if (b.oom) {
		free(b.s);
		return err_set(reterr, -ENOMEM, "render mounts: out of memory");
	}
	*ret = b.s;
	return 0;
}

/* containerd's option words (mount_linux.go); `clear` words unset their flag. */
static const struct flag_word {
	const char *word;
	bool clear;
	unsigned long flag;
} flag_words[] = {
	{"async", true, MS_SYNCHRONOUS},
	{"atime", true, MS_NOATIME},
	{"bind", false, MS_BIND},
	{"defaults", false, 0},
	{"dev", true, MS_NODEV},
	{"diratime", true, MS_NODIRATIME},
	{"dirsync", false, MS_DIRSYNC},
	{"exec", true, MS_NOEXEC},
	{"mand", false, MS_MANDLOCK},
	{"noatime", false, MS_NOATIME},
	{"nodev", false, MS_NODEV},
	{"nodiratime", false, MS_NODIRATIME},
	{"noexec", false, MS_NOEXEC},
	{"nomand", true, MS_MANDLOCK},
	{"norelatime", true, MS_RELATIME},
	{"nostrictatime", true, MS_STRICTATIME},
	{"nosuid", false, MS_NOSUID},
	{"rbind", false, MS_BIND | MS_REC},
	{"relatime", false, MS_RELATIME},
	{"remount", false, MS_REMOUNT},
	{"ro", false, MS_RDONLY},
	{"rw", true, MS_RDONLY},
	{"strictatime", false, MS_STRICTATIME},
	{"suid", true, MS_NOSUID},
	{"sync", false, MS_SYNCHRONOUS},
};

/* Propagation words: applied by a second mount(2) call, never passed as data. */
static const struct flag_word propagation_words[] = {
	{"private", false, MS_PRIVATE},       {"rprivate", false, MS_PRIVATE | MS_REC},
	{"shared", false, MS_SHARED},         {"rshared", false, MS_SHARED | MS_REC},
	{"slave", false, MS_SLAVE},           {"rslave", false, MS_SLAVE | MS_REC},
	{"unbindable", false, MS_UNBINDABLE}, {"runbindable", false, MS_UNBINDABLE | MS_REC},
};

static const struct flag_word *find_word(const struct flag_word *t, size_t n, const char *w)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(t[i].word, w) == 0)
			return &t[i];
	return NULL;
}

/* A mount spec split into flags and filesystem data. */
struct parsed {
	unsigned long flags, propagation;
	char *data; /* comma-joined non-flag options; "" when none */
};

static void parsed_clear(struct parsed *p)
{
	free(p->data);
}

static int parse_options(const struct snap_mount *m, struct parsed *p)
{
	struct buf data = {0};
	buf_str(&data, "");
	*p = (struct parsed){0};
	for (size_t i = 0; i < m->n_options; i++) {
		const char *o = m->options[i];
		const struct flag_word *w = find_word(flag_words, ELEMENTSOF(flag_words), o);
		const struct flag_word *pw =
			find_word(propagation_words, ELEMENTSOF(propagation_words), o);
		if (w && w->clear)
			p->flags &= ~w->flag;
		else if (w)
			p->flags |= w->flag;
		else if (pw)
			p->propagation |= pw->flag;
		else {
			if (data.len)
				buf_str(&data, ",");
			buf_str(&data, o);
		}
	}
	if (data.oom) {
		free(data.s);
		return -ENOMEM;
	}
	p->data = data.s;
	return 0;
}

/* Flags the kernel locks on a mount (in a user namespace): a read-only remount must repeat them. */
static unsigned long locked_flags(const char *target)
{
	struct statvfs sv;
	if (statvfs(target, &sv) < 0)
		return 0;
	unsigned long f = 0;
	if (sv.f_flag & ST_NOSUID)
		f |= MS_NOSUID;
	if (sv.f_flag & ST_NODEV)
		f |= MS_NODEV;
	if (sv.f_flag & ST_NOEXEC)
		f |= MS_NOEXEC;
	if (sv.f_flag & ST_NOATIME)
		f |= MS_NOATIME;
	if (sv.f_flag & ST_NODIRATIME)
		f |= MS_NODIRATIME;
	if (sv.f_flag & ST_RELATIME)
		f |= MS_RELATIME;
	return f;
}

static int mount_bind(const struct snap_mount *m, const struct parsed *p, const char *target,
                      cairn_error **reterr)
{
	unsigned long flags = p->flags | MS_BIND;
	if (mount(m->source, target, NULL, flags & ~MS_RDONLY, NULL) < 0)
		return err_errno(reterr, -errno, "bind mount '%s' on '%s'", m->source, target);
	/* Linux ignores MS_RDONLY (and the other per-mount flags) on the first bind call. */
	unsigned long extra = flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME |
	                               MS_NODIRATIME | MS_RELATIME | MS_STRICTATIME);
	if (!extra)
		return 0;
	unsigned long rflags = MS_REMOUNT | MS_BIND | extra | locked_flags(target);
	if (mount(NULL, target, NULL, rflags, NULL) < 0) {
		int r = -errno;
		umount2(target, MNT_DETACH | UMOUNT_NOFOLLOW);
		return err_errno(reterr, r, "remount '%s' on '%s' read-only", m->source, target);
	}
	return 0;
}

static int read_fs_log(int fsfd, char *msg, size_t len)
{
	ssize_t n = read(fsfd, msg, len - 1);
	if (n <= 0)
		return -1;
	msg[n] = '\0';
	msg[strcspn(msg, "\n")] = '\0';
	return 0;
}

/* The result of overlay_fsconfig when the kernel lacks the new mount API or `lowerdir+`. */
#define NO_NEW_API 1

static unsigned mount_attrs(unsigned long flags)
{
	unsigned a = 0;
	if (flags & MS_RDONLY)
		a |= MOUNT_ATTR_RDONLY;
	if (flags & MS_NOSUID)
		a |= MOUNT_ATTR_NOSUID;
	if (flags & MS_NODEV)
		a |= MOUNT_ATTR_NODEV;
	if (flags & MS_NOEXEC)
		a |= MOUNT_ATTR_NOEXEC;
	if (flags & MS_NOATIME)
		a |= MOUNT_ATTR_NOATIME;
	else if (flags & MS_STRICTATIME)
		a |= MOUNT_ATTR_STRICTATIME;
	if (flags & MS_NODIRATIME)
		a |= MOUNT_ATTR_NODIRATIME;
	return a;
}

/*
 * A path parameter. fsconfig copies at most 256 bytes of a string value, so a longer path goes
 * as an fd (overlay takes those since 6.13); a kernel that refuses both gets NO_NEW_API.
 */
static int config_path(int fsfd, const char *key, const char *path)
{
	if (strlen(path) < 256)
		return fsconfig(fsfd, FSCONFIG_SET_STRING, key, path, 0) < 0 ? -errno : 0;
	_cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsconfig(fsfd, FSCONFIG_SET_FD, key, NULL, fd) < 0)
		return errno == EINVAL || errno == EBADF ? NO_NEW_API : -errno;
	return 0;
}

static bool is_path_key(const char *key)
{
	return strcmp(key, "upperdir") == 0 || strcmp(key, "workdir") == 0;
}

/* One fsconfig parameter from an option word; lowerdir= becomes one `lowerdir+` per layer. */
static int config_option(int fsfd, const char *o, bool *first_lower)
{
	if (has_prefix(o, "lowerdir=")) {
		_cleanup_free_ char *dirs = strdup(o + strlen("lowerdir="));
		if (!dirs)
			return -ENOMEM;
		for (char *s = NULL, *d = strtok_r(dirs, ":", &s); d; d = strtok_r(NULL, ":", &s)) {
			int r = config_path(fsfd, "lowerdir+", d);
			if (r == -EINVAL && *first_lower)
				return NO_NEW_API; /* no `lowerdir+` before 6.8 */
			if (r != 0)
				return r;
			*first_lower = false;
		}
		return 0;
	}
	const char *eq = strchr(o, '=');
	if (!eq)
		return fsconfig(fsfd, FSCONFIG_SET_FLAG, o, NULL, 0) < 0 ? -errno : 0;
	_cleanup_free_ char *key = strndup(o, (size_t)(eq - o));
	if (!key)
		return -ENOMEM;
	if (is_path_key(key))
		return config_path(fsfd, key, eq + 1);
	return fsconfig(fsfd, FSCONFIG_SET_STRING, key, eq + 1, 0) < 0 ? -errno : 0;
}

static int overlay_fsconfig(const struct snap_mount *m, const struct parsed *p, const char *target,
                            cairn_error **reterr)
{
	if (snap_mount_no_fsconfig)
		return NO_NEW_API;
	_cleanup_close_ int fsfd = fsopen(m->type, FSOPEN_CLOEXEC);
	if (fsfd < 0)
		return errno == ENOSYS ? NO_NEW_API
		                       : err_errno(reterr, -errno, "fsopen '%s'", m->type);
	bool first_lower = true;
	char msg[512] = "";
	for (size_t i = 0; i < m->n_options; i++) {
		const char *o = m->options[i];
		if (find_word(flag_words, ELEMENTSOF(flag_words), o) ||
		    find_word(propagation_words, ELEMENTSOF(propagation_words), o))
			continue;
		int r = config_option(fsfd, o, &first_lower);
		if (r == NO_NEW_API)
			return r;
		if (r < 0) {
			read_fs_log(fsfd, msg, sizeof(msg));
			return err_errno(reterr, r, "mount %s on '%s': option '%.200s'%s%s",
			                 m->type, target, o, *msg ? ": " : "", msg);
		}
	}
	if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
		int r = -errno;
		read_fs_log(fsfd, msg, sizeof(msg));
		return err_errno(reterr, r, "mount %s on '%s'%s%s", m->type, target,
		                 *msg ? ": " : "", msg);
	}
	_cleanup_close_ int mfd = fsmount(fsfd, FSMOUNT_CLOEXEC, mount_attrs(p->flags));
	if (mfd < 0)
		return err_errno(reterr, -errno, "mount %s on '%s': fsmount", m->type, target);
	if (move_mount(mfd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		return err_errno(reterr, -errno, "mount %s on '%s': move_mount", m->type, target);
	return 0;
}

/* What the compaction thread needs: it chdirs to @dir, so @target is absolute. */
struct compact_job {
	const char *dir, *target, *type, *data;
	unsigned long flags;
	int result;
};

static void *compact_thread(void *arg)
{
	struct compact_job *j = arg;
	/* unshare(CLONE_FS) gives this thread its own cwd; the process's stays put. */
	if (unshare(CLONE_FS) < 0 || chdir(j->dir) < 0 ||
	    mount(j->type, j->target, j->type, j->flags, j->data) < 0)
		j->result = -errno;
	return NULL;
}

/* Longest directory that is a prefix of every path in the ':'-list @dirs ("" if none). */
static char *common_dir(const char *dirs)
{
	const char *end = strchr(dirs, ':');
	size_t len = end ? (size_t)(end - dirs) : strlen(dirs);
	for (const char *d = dirs; d; d = strchr(d, ':') ? strchr(d, ':') + 1 : NULL) {
		size_t k = 0;
		while (k < len && d[k] && d[k] != ':' && d[k] == dirs[k])
			k++;
		len = k;
	}
	while (len > 0 && dirs[len - 1] != '/')
		len--; /* snapshot ids are numbers, so the prefix may end inside a name */
	return strndup(dirs, len > 1 ? len - 1 : len);
}

/* Data with lowerdir paths made relative to @dir and moved to the end (containerd's compaction). */
static char *compact_data(const struct snap_mount *m, const char *lower, const char *dir)
{
	struct buf b = {0};
	buf_str(&b, "");
	for (size_t i = 0; i < m->n_options; i++) {
		const char *o = m->options[i];
		if (has_prefix(o, "lowerdir=") ||
		    find_word(flag_words, ELEMENTSOF(flag_words), o) ||
		    find_word(propagation_words, ELEMENTSOF(propagation_words), o))
			continue;
		buf_str(&b, o);
		buf_str(&b, ",");
	}
	buf_str(&b, "lowerdir=");
	size_t cut = strlen(dir) + 1;
	for (const char *d = lower; d; d = strchr(d, ':') ? strchr(d, ':') + 1 : NULL) {
		const char *e = strchr(d, ':');
		size_t n = e ? (size_t)(e - d) : strlen(d);
		if (d != lower)
			buf_str(&b, ":");
		buf_add(&b, d + cut, n - cut);
	}
	if (b.oom) {
		free(b.s);
		return NULL;
	}
	return b.s;
}

static int overlay_compact(const struct snap_mount *m, const struct parsed *p, const char *target,
                           cairn_error **reterr)
{
	const char *lower = NULL;
	for (size_t i = 0; i < m->n_options; i++)
		if (has_prefix(m->options[i], "lowerdir="))
			lower = m->options[i] + strlen("lowerdir=");
	_cleanup_free_ char *dir = lower ? common_dir(lower) : NULL;
	if (!dir || strlen(dir) <= 1)
		return err_set(reterr, -E2BIG,
		               "mount %s on '%s': options too long (%zu bytes) to mount", m->type,
		               target, strlen(p->data));
	_cleanup_free_ char *data = compact_data(m, lower, dir);
	_cleanup_free_ char *abs_target = realpath(target, NULL);
	if (!data || !abs_target)
		return err_errno(reterr, data ? -errno : -ENOMEM, "mount %s on '%s'", m->type,
		                 target);
	if (strlen(data) >= (size_t)sysconf(_SC_PAGESIZE))
		return err_set(reterr, -E2BIG,
		               "mount %s on '%s': options too long even relative to '%s'", m->type,
		               target, dir);
	struct compact_job j = {dir, abs_target, m->type, data, p->flags, 0};
	pthread_t t;
	int r = pthread_create(&t, NULL, compact_thread, &j);
	if (r != 0)
		return err_errno(reterr, -r, "mount %s on '%s': start thread", m->type, target);
	pthread_join(t, NULL);
	if (j.result < 0)
		return err_errno(reterr, j.result, "mount %s on '%s' (lowerdirs relative to '%s')",
		                 m->type, target, dir);
	return 0;
}

static int mount_overlay(const struct snap_mount *m, const struct parsed *p, const char *target,
                         cairn_error **reterr)
{
	if (!m->n_options)
		return err_set(reterr, -EINVAL, "mount overlay on '%s': no options", target);
	/* mount(2) data is one page; containerd leaves 512 bytes of slack, so do we. */
	if (strlen(p->data) < (size_t)sysconf(_SC_PAGESIZE) - 512) {
		if (mount(m->source, target, m->type, p->flags, p->data) < 0)
			return err_errno(reterr, -errno, "mount %s on '%s'", m->type, target);
		return 0;
	}
	int r = overlay_fsconfig(m, p, target, reterr);
	if (r != NO_NEW_API)
		return r;
	return overlay_compact(m, p, target, reterr);
}

static int mount_one(const struct snap_mount *m, const char *target, cairn_error **reterr)
{
	struct parsed p;
	if (parse_options(m, &p) < 0)
		return err_set(reterr, -ENOMEM, "mount on '%s': out of memory", target);
	int r;
	if (strcmp(m->type, "bind") == 0 || (p.flags & MS_BIND))
		r = mount_bind(m, &p, target, reterr);
	else if (strcmp(m->type, "overlay") == 0)
		r = mount_overlay(m, &p, target, reterr);
	else if (mount(m->source, target, m->type, p.flags, p.data) < 0)
		r = err_errno(reterr, -errno, "mount %s '%s' on '%s'", m->type, m->source, target);
	else
		r = 0;
	if (r == 0 && p.propagation && mount(NULL, target, NULL, p.propagation, NULL) < 0)
		r = err_errno(reterr, -errno, "set propagation of '%s'", target);
	parsed_clear(&p);
	return r;
}

int snap_mount_all(const struct snap_mount *m, size_t n, const char *target, cairn_error **reterr)
{
	for (size_t i = 0; i < n; i++) {
		int r = mount_one(&m[i], target, reterr);
		if (r < 0)
			return r;
	}
	return 0;
}

int snap_unmount(const char *target, cairn_error **reterr)
{
	for (;;) {
		int tries = 0;
		while (umount2(target, UMOUNT_NOFOLLOW) < 0) {
			if (errno == EINVAL || errno == ENOENT)
				return 0; /* nothing (more) mounted there */
			if (errno == EBUSY && ++tries < 50) {
				usleep(50 * 1000);
				continue;
			}
			return err_errno(reterr, -errno, "unmount '%s'", target);
		}
	}
}
