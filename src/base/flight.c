/* SPDX-License-Identifier: MIT */
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "flight.h"

struct call {
	struct call *next;
	char *key;
	flight_fn fn;
	void *userdata;
	unsigned waiters; /* callers still waiting */
	unsigned refs;    /* waiters + the worker thread */
	bool done;
	atomic_bool cancelled;
	int rc;
	int64_t value;
	cairn_error *err;
	pthread_cond_t cond;
};

struct flight_group {
	pthread_mutex_t lock;
	pthread_cond_t idle;
	struct call *calls;
	unsigned running;
};

flight_group *flight_group_new(void)
{
	flight_group *g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->idle, NULL);
	return g;
}

flight_group *flight_group_free(flight_group *g)
{
	if (!g)
		return NULL;
	pthread_mutex_lock(&g->lock);
	while (g->running > 0)
		pthread_cond_wait(&g->idle, &g->lock);
	pthread_mutex_unlock(&g->lock);
	pthread_mutex_destroy(&g->lock);
	pthread_cond_destroy(&g->idle);
	free(g);
	return NULL;
}

struct worker_arg {
	flight_group *g;
	struct call *c;
};

/* Drop one reference; the last one frees the call. Called with g->lock held. */
static void call_unref(struct call *c)
{
	if (--c->refs > 0)
		return;
	cairn_error_free(c->err);
	pthread_cond_destroy(&c->cond);
	free(c->key);
	free(c);
}

static void unlink_call(flight_group *g, struct call *c)
{
	for (struct call **p = &g->calls; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			return;
		}
}

static void *worker(void *arg)
{
	struct worker_arg wa = *(struct worker_arg *)arg;
	free(arg);
	struct call *c = wa.c;
	cairn_error *err = NULL;
	int64_t value = 0;
	int rc = c->fn(c->userdata, &c->cancelled, &value, &err);

	pthread_mutex_lock(&wa.g->lock);
	c->rc = rc;
	c->value = value;
	c->err = err;
	c->done = true;
	unlink_call(wa.g, c);
	pthread_cond_broadcast(&c->cond);
	call_unref(c);
	if (--wa.g->running == 0)
		pthread_cond_broadcast(&wa.g->idle);
	pthread_mutex_unlock(&wa.g->lock);
	return NULL;
}

static struct call *start_call(flight_group *g, const char *key, flight_fn fn, void *userdata)
{
	struct call *c = calloc(1, sizeof(*c));
	struct worker_arg *wa = malloc(sizeof(*wa));
	if (!c || !wa || !(c->key = strdup(key))) {
		free(wa);
		if (c)
			free(c->key);
		free(c);
		return NULL;
	}
	c->fn = fn;
	c->userdata = userdata;
	c->refs = 1; /* the worker */
	atomic_init(&c->cancelled, false);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &ca);
	pthread_condattr_destroy(&ca);
	*wa = (struct worker_arg){g, c};
	pthread_t t;
	if (pthread_create(&t, NULL, worker, wa) != 0) {
		free(wa);
		pthread_cond_destroy(&c->cond);
		free(c->key);
		free(c);
		return NULL;
	}
	pthread_detach(t);
	c->next = g->calls;
	g->calls = c;
	g->running++;
	return c;
}

int flight_do(flight_group *g, const char *key, flight_fn fn, void *userdata,
              const atomic_bool *cancel, int64_t *ret_value, cairn_error **reterr)
{
	/* A caller that has already given up must not start work nobody will wait for. */
	if (cancel && atomic_load(cancel))
		return err_set(reterr, -ECANCELED, "waiting for '%s': cancelled", key);
	pthread_mutex_lock(&g->lock);
	struct call *c = g->calls;
	while (c && strcmp(c->key, key) != 0)
		c = c->next;
	if (!c)
		c = start_call(g, key, fn, userdata);
	if (!c) {
		pthread_mutex_unlock(&g->lock);
		return err_set(reterr, -ENOMEM, "start work for '%s': out of resources", key);
	}
	c->waiters++;
	c->refs++;
	while (!c->done) {
		if (cancel && atomic_load(cancel))
			break;
		/* Poll the caller's flag every few milliseconds; the worker's broadcast wakes us
		 * at once when the result is ready. */
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += 2 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&c->cond, &g->lock, &ts);
	}
	int rc;
	if (c->done) {
		rc = c->rc;
		if (rc >= 0 && ret_value)
			*ret_value = c->value;
		if (rc < 0)
			err_set(reterr, rc, "%s", c->err ? cairn_error_message(c->err) : "failed");
	} else {
		rc = err_set(reterr, -ECANCELED, "waiting for '%s': cancelled", key);
	}
	if (--c->waiters == 0 && !c->done) {
		/* The last waiter left: tell the work, and let the next caller start afresh. */
		atomic_store(&c->cancelled, true);
		unlink_call(g, c);
	}
	call_unref(c);
	pthread_mutex_unlock(&g->lock);
	return rc;
}
