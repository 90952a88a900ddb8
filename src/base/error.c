/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <string.h>

#include "error.h"

static struct cairn_error oom_error_storage;

/* Out of memory: hand out the static error, keeping the code. */
static int vset_oom(cairn_error **reterr, int code)
{
	oom_error_storage.code = code;
	oom_error_storage.message = (char *)"out of memory while reporting an error";
	*reterr = &oom_error_storage;
	return code;
}

static int vset(cairn_error **reterr, int code, int with_errno, const char *fmt, va_list ap)
{
	if (!reterr || *reterr)
		return code;
	cairn_error *e = calloc(1, sizeof(*e));
	if (!e)
		return vset_oom(reterr, code);
	char *msg = NULL;
	if (vasprintf(&msg, fmt, ap) < 0) {
		free(e);
		return vset_oom(reterr, code);
	}
	e->code = code;
	if (with_errno) {
		char *full = NULL;
		if (asprintf(&full, "%s: %s", msg, cairn_strerror(code)) >= 0) {
			free(msg);
			msg = full;
		}
	}
	e->message = msg;
	*reterr = e;
	return code;
}

int err_set(cairn_error **reterr, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vset(reterr, code, 0, fmt, ap);
	va_end(ap);
	return code;
}

int err_errno(cairn_error **reterr, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vset(reterr, code, 1, fmt, ap);
	va_end(ap);
	return code;
}

int err_prefix(cairn_error **reterr, const char *fmt, ...)
{
	if (!reterr || !*reterr)
		return -EIO;
	cairn_error *e = *reterr;
	if (e == &oom_error_storage)
		return e->code;
	char *prefix = NULL, *full = NULL;
	va_list ap;
	va_start(ap, fmt);
	int r = vasprintf(&prefix, fmt, ap);
	va_end(ap);
	if (r >= 0 && asprintf(&full, "%s: %s", prefix, e->message ? e->message : "") >= 0) {
		free(e->message);
		e->message = full;
	}
	free(prefix);
	return e->code;
}

int cairn_error_code(const cairn_error *e)
{
	return e ? e->code : 0;
}

const char *cairn_error_message(const cairn_error *e)
{
	return e && e->message ? e->message : "";
}

cairn_error *cairn_error_free(cairn_error *e)
{
	if (!e || e == &oom_error_storage)
		return NULL;
	free(e->message);
	free(e);
	return NULL;
}

const char *cairn_strerror(int code)
{
	static __thread char buf[64];
	switch (code) {
	case CAIRN_EDIGEST:
		return "Digest mismatch or malformed digest";
	case CAIRN_ECORRUPT:
		return "Store data is corrupt";
	case CAIRN_EPRECONDITION:
		return "Failed precondition";
	case CAIRN_ELOCKED:
		return "Locked by another user";
	case CAIRN_ESCHEMA:
		return "Store was written by a newer cairn";
	}
	if (code < 0 && code > -4096)
		return strerror_r(-code, buf, sizeof(buf));
	snprintf(buf, sizeof(buf), "Unknown error %d", code);
	return buf;
}
