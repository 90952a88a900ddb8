/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <regex.h>
#include <stdint.h>
#include <string.h>

#include "filter.h"

enum op { OP_PRESENT, OP_EQ, OP_NE, OP_MATCH };

struct selector {
	char **path;
	size_t n_path;
	enum op op;
	char *value;
	regex_t re;
	bool has_re;
};

/* One filter string: the AND of its selectors. */
struct conj {
	struct selector *sel;
	size_t n_sel;
};

struct snap_filter {
	struct conj *conj; /* OR of these */
	size_t n_conj;
};

static void selector_clear(struct selector *s)
{
	for (size_t i = 0; i < s->n_path; i++)
		free(s->path[i]);
	free(s->path);
	free(s->value);
	if (s->has_re)
		regfree(&s->re);
}

snap_filter *snap_filter_free(snap_filter *f)
{
	if (!f)
		return NULL;
	for (size_t i = 0; i < f->n_conj; i++) {
		for (size_t j = 0; j < f->conj[i].n_sel; j++)
			selector_clear(&f->conj[i].sel[j]);
		free(f->conj[i].sel);
	}
	free(f->conj);
	free(f);
	return NULL;
}

/* The scanner over one filter string. */
struct scan {
	const char *s;
	size_t pos;
	const char *err; /* static description of the first syntax error */
};

static void skip_ws(struct scan *sc)
{
	while (sc->s[sc->pos] && isspace((unsigned char)sc->s[sc->pos]))
		sc->pos++;
}

static bool field_char(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

static void put_utf8(char **o, uint32_t cp)
{
	char *p = *o;
	if (cp < 0x80) {
		*p++ = (char)cp;
	} else if (cp < 0x800) {
		*p++ = (char)(0xc0 | (cp >> 6));
		*p++ = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		*p++ = (char)(0xe0 | (cp >> 12));
		*p++ = (char)(0x80 | ((cp >> 6) & 0x3f));
		*p++ = (char)(0x80 | (cp & 0x3f));
	} else {
		*p++ = (char)(0xf0 | (cp >> 18));
		*p++ = (char)(0x80 | ((cp >> 12) & 0x3f));
		*p++ = (char)(0x80 | ((cp >> 6) & 0x3f));
		*p++ = (char)(0x80 | (cp & 0x3f));
	}
	*o = p;
}

/* Reads @n hex digits at @p; -1 when they are not all hex. */
static int64_t hex_n(const char *p, int n)
{
	int64_t v = 0;
	for (int i = 0; i < n; i++) {
		if (!isxdigit((unsigned char)p[i]))
			return -1;
		v = v * 16 + (isdigit((unsigned char)p[i]) ? p[i] - '0' : (p[i] | 0x20) - 'a' + 10);
	}
	return v;
}

/* One escape after a backslash at @p (past the backslash); writes into *@o; returns the bytes
 * consumed or 0 when invalid. */
static size_t unescape(const char *p, char quote, char **o)
{
	static const char simple[] = "a\ab\bf\fn\nr\rt\tv\v\\\\";
	for (size_t i = 0; simple[i]; i += 2)
		if (*p == simple[i]) {
			*(*o)++ = simple[i + 1];
			return 1;
		}
	if (*p == quote) {
		*(*o)++ = quote;
		return 1;
	}
	if (*p >= '0' && *p <= '7') {
		if (p[1] < '0' || p[1] > '7' || p[2] < '0' || p[2] > '7')
			return 0;
		*(*o)++ = (char)(((p[0] - '0') << 6) | ((p[1] - '0') << 3) | (p[2] - '0'));
		return 3;
	}
	int n = *p == 'x' ? 2 : *p == 'u' ? 4 : *p == 'U' ? 8 : 0;
	int64_t v = n ? hex_n(p + 1, n) : -1;
	if (v < 0 || v > 0x10ffff)
		return 0;
	if (n == 2)
		*(*o)++ = (char)v;
	else
		put_utf8(o, (uint32_t)v);
	return (size_t)n + 1;
}

/* A string quoted by @quote at the current position; NULL with sc->err set on error. */
static char *quoted(struct scan *sc, char quote, bool escapes)
{
	const char *p = sc->s + sc->pos + 1;
	char *out = malloc(strlen(p) * 4 + 1), *o = out;
	if (!out) {
		sc->err = "out of memory";
		return NULL;
	}
	while (*p && *p != quote) {
		if (*p == '\\' && escapes) {
			size_t k = unescape(p + 1, quote, &o);
			if (!k) {
				sc->err = "invalid escape";
				free(out);
				return NULL;
			}
			p += k + 1;
		} else if (*p == '\\' && p[1] == quote) {
			*o++ = quote; /* /a\/b/ : the delimiter escaped inside a regex quote */
			p += 2;
		} else {
			*o++ = *p++;
		}
	}
	if (*p != quote) {
		sc->err = "unterminated quoted string";
		free(out);
		return NULL;
	}
	*o = '\0';
	sc->pos = (size_t)(p + 1 - sc->s);
	return out;
}

static char *scan_field(struct scan *sc)
{
	if (sc->s[sc->pos] == '"')
		return quoted(sc, '"', true);
	size_t start = sc->pos;
	while (field_char(sc->s[sc->pos]))
		sc->pos++;
	if (sc->pos == start) {
		sc->err = "expected a field name";
		return NULL;
	}
	char *f = strndup(sc->s + start, sc->pos - start);
	if (!f)
		sc->err = "out of memory";
	return f;
}

static int add_path(struct selector *sel, char *f)
{
	char **n = realloc(sel->path, (sel->n_path + 1) * sizeof(*n));
	if (!n) {
		free(f);
		return -ENOMEM;
	}
	sel->path = n;
	sel->path[sel->n_path++] = f;
	return 0;
}

static int fieldpath(struct scan *sc, struct selector *sel)
{
	for (;;) {
		char *f = scan_field(sc);
		if (!f || add_path(sel, f) < 0)
			return -EINVAL;
		if (sc->s[sc->pos] != '.')
			return 0;
		sc->pos++;
	}
}

static char *value(struct scan *sc, enum op op)
{
	char c = sc->s[sc->pos];
	if (c == '"')
		return quoted(sc, '"', true);
	if (op == OP_MATCH && (c == '/' || c == '|'))
		return quoted(sc, c, false);
	size_t start = sc->pos;
	while (sc->s[sc->pos] && sc->s[sc->pos] != ',' && !isspace((unsigned char)sc->s[sc->pos]))
		sc->pos++;
	char *v = strndup(sc->s + start, sc->pos - start);
	if (!v)
		sc->err = "out of memory";
	return v;
}

static int operator(struct scan *sc, enum op *op)
{
	const char *p = sc->s + sc->pos;
	if (!*p || *p == ',') {
		*op = OP_PRESENT;
		return 0;
	}
	if (p[1] != '=' || (p[0] != '=' && p[0] != '!' && p[0] != '~')) {
		sc->err = "expected ==, != or ~=";
		return -EINVAL;
	}
	*op = p[0] == '=' ? OP_EQ : p[0] == '!' ? OP_NE : OP_MATCH;
	sc->pos += 2;
	return 0;
}

static int selector(struct scan *sc, struct selector *sel)
{
	skip_ws(sc);
	if (fieldpath(sc, sel) < 0)
		return -EINVAL;
	skip_ws(sc);
	if (operator(sc, &sel->op) < 0)
		return -EINVAL;
	if (sel->op == OP_PRESENT)
		return 0;
	skip_ws(sc);
	sel->value = value(sc, sel->op);
	if (!sel->value)
		return -EINVAL;
	if (sel->op == OP_MATCH) {
		if (regcomp(&sel->re, sel->value, REG_EXTENDED | REG_NOSUB) != 0) {
			sc->err = "invalid regular expression";
			return -EINVAL;
		}
		sel->has_re = true;
	}
	skip_ws(sc);
	return 0;
}

static int parse_conj(const char *s, struct conj *c, cairn_error **reterr)
{
	struct scan sc = {.s = s};
	skip_ws(&sc);
	while (sc.s[sc.pos]) {
		struct selector *n = realloc(c->sel, (c->n_sel + 1) * sizeof(*n));
		if (!n)
			return err_set(reterr, -ENOMEM, "parse filter '%s': out of memory", s);
		c->sel = n;
		c->sel[c->n_sel] = (struct selector){0};
		int r = selector(&sc, &c->sel[c->n_sel]);
		c->n_sel++;
		if (r == 0 && sc.s[sc.pos] && sc.s[sc.pos] != ',') {
			sc.err = "expected ','";
			r = -EINVAL;
		}
		if (r < 0)
			return err_set(reterr, -EINVAL, "invalid filter '%s' at offset %zu: %s", s,
			               sc.pos, sc.err ? sc.err : "syntax error");
		if (sc.s[sc.pos] == ',') {
			sc.pos++;
			skip_ws(&sc);
			if (!sc.s[sc.pos])
				return err_set(reterr, -EINVAL, "invalid filter '%s': trailing ','",
				               s);
		}
	}
	return 0;
}

int snap_filter_parse(const char *const *filters, size_t n, snap_filter **ret, cairn_error **reterr)
{
	_cleanup_(snap_filter_freep) snap_filter *f = calloc(1, sizeof(*f));
	if (!f || (n && !(f->conj = calloc(n, sizeof(*f->conj)))))
		return err_set(reterr, -ENOMEM, "parse filters: out of memory");
	for (size_t i = 0; i < n; i++) {
		f->n_conj++;
		int r = parse_conj(filters[i] ? filters[i] : "", &f->conj[i], reterr);
		if (r < 0)
			return r;
	}
	*ret = TAKE_PTR(f);
	return 0;
}

static bool selector_match(const struct selector *s, snap_filter_field_fn field, void *userdata)
{
	const char *v = field((const char *const *)s->path, s->n_path, userdata);
	switch (s->op) {
	case OP_PRESENT:
		return v != NULL;
	case OP_EQ:
		return v && strcmp(v, s->value) == 0;
	case OP_NE:
		return strcmp(v ? v : "", s->value) != 0;
	case OP_MATCH:
		return regexec(&s->re, v ? v : "", 0, NULL, 0) == 0;
	}
	return false;
}

bool snap_filter_match(const snap_filter *f, snap_filter_field_fn field, void *userdata)
{
	if (!f || f->n_conj == 0)
		return true;
	for (size_t i = 0; i < f->n_conj; i++) {
		bool all = true;
		for (size_t j = 0; all && j < f->conj[i].n_sel; j++)
			all = selector_match(&f->conj[i].sel[j], field, userdata);
		if (all)
			return true;
	}
	return false;
}
