/* SPDX-License-Identifier: MIT */
/*
 * The registry client: the OCI distribution API over libcurl (spec: opencontainers/distribution-
 * spec, and Docker's token authentication). Internal to libcairn; the image module builds push
 * and pull on it.
 *
 * Every reply is treated as hostile: sizes are capped and checked against what was asked,
 * digests are recomputed, JSON is parsed only after the size cap, header values are length-
 * checked, redirects are followed only for GET/HEAD, at most 5 times and only to https (http too
 * when the client is insecure). Every error message names the registry and the object
 * ("registry '127.0.0.1:5000': blob 'sha256:ab..' in 'lib/x': ...").
 *
 * Error codes used throughout: -ENOENT (the registry says 404 / unknown), -EACCES (401 or 403
 * after authentication was tried), -ECONNREFUSED, -EHOSTUNREACH, -ETIMEDOUT, -ECONNRESET
 * (transport failures, after the retries), -EPROTO (a reply that breaks the protocol: HTML where
 * JSON was expected, a missing Location, a bad Range, TLS failures), -EFBIG (a reply over its
 * cap), CAIRN_EDIGEST (content that does not hash to its digest, a digest header that disagrees),
 * -EIO (any other status after the retries), -EINVAL (bad arguments), -ENOMEM.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/digest.h"
#include "base/error.h"
#include "content/content.h"

/* The limits of the distribution spec's grammar, and ours. */
#define REMOTE_HOST_MAX     255
#define REMOTE_REPO_MAX     255
#define REMOTE_TAG_MAX      128
#define REMOTE_MANIFEST_MAX (4u * 1024 * 1024)

/* The registry Docker Hub references name, and the host that serves its API. */
#define REMOTE_DOCKER_HUB      "docker.io"
#define REMOTE_DOCKER_HUB_HOST "registry-1.docker.io"

/* The manifest media types cairn knows. */
#define REMOTE_MT_OCI_MANIFEST    "application/vnd.oci.image.manifest.v1+json"
#define REMOTE_MT_OCI_INDEX       "application/vnd.oci.image.index.v1+json"
#define REMOTE_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define REMOTE_MT_DOCKER_LIST     "application/vnd.docker.distribution.manifest.list.v2+json"

/*
 * A parsed reference REGISTRY/REPO[:TAG][@DIGEST]. Plain value, copy freely.
 * registry is as written ("localhost:5000", "docker.io" when none was given, "index.docker.io"
 * folded into "docker.io"); repo is the full path ("library/" prefixed on Docker Hub for one-
 * component names); tag and digest are "" when absent (both may be set: the digest rules).
 */
typedef struct remote_ref {
	char registry[REMOTE_HOST_MAX + 1];
	char repo[REMOTE_REPO_MAX + 1];
	char tag[REMOTE_TAG_MAX + 1];
	char digest[DIGEST_STR_LEN + 1];
} remote_ref;

/*
 * remote_ref_parse() - parse @s. A first component containing '.' or ':', or equal to
 * "localhost", is the registry; otherwise the registry is docker.io. Repository components
 * follow [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*, the whole repo is at most 255 bytes; tags follow
 * [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}; digests must be sha256 (digest_parse()).
 * Errors: -EINVAL naming @s and what is wrong; CAIRN_EDIGEST for a bad digest. *@ret is
 * untouched on failure.
 */
int remote_ref_parse(const char *s, remote_ref *ret, cairn_error **reterr);

/* remote_repo_valid() / remote_tag_valid() - the grammar checks remote_ref_parse() applies. */
bool remote_repo_valid(const char *repo);
bool remote_tag_valid(const char *tag);

/* remote_ref_reference() - the digest when set, else the tag ("latest" when neither); borrowed
 * from @r. */
const char *remote_ref_reference(const remote_ref *r);

/* Client options (zero-initialise, then set what you need). */
typedef struct remote_options {
	/* Plain http instead of https (any host); without it every request is https, verified
	 * against the system CAs. Tokens realms and redirects follow the same rule. */
	bool insecure;
	/* "USER:PASS", or NULL: then $DOCKER_CONFIG/config.json (else ~/.docker/config.json),
	 * "auths" entry for the registry ("auth": base64 of USER:PASS, or "username"/"password").
	 * Credential helpers (credsStore, credHelpers) are not supported: such entries are skipped.
	 */
	const char *creds;
	/* Attempts per request on 5xx, 429 and dropped connections (0: 5), the first backoff in ms
	 * (0: 250; doubled each time, at most 8 s) and the total time one request may spend in
	 * retries (0: 120 s). */
	unsigned max_attempts;
	unsigned backoff_ms;
	unsigned total_timeout_s;
	/* Connect timeout (0: 15 s); a transfer under 1 byte/s for @stall_timeout_s (0: 60 s)
	 * counts as dropped. */
	unsigned connect_timeout_s;
	unsigned stall_timeout_s;
	/* Blob uploads larger than this go in PATCH chunks of this size (0: 32 MiB). */
	uint64_t chunk_size;
} remote_options;

/*
 * A client for one registry: its base URL, credentials, the last token and one curl handle
 * reused across requests (keep-alive). Locking: not thread-safe; use one client per thread.
 * Signals: libcurl runs with CURLOPT_NOSIGNAL, so it never changes signal dispositions; a TLS
 * write to a connection the peer closed can raise SIGPIPE, which a program using the client
 * should ignore.
 */
typedef struct remote_client remote_client;

/*
 * remote_client_new() - a client for @registry (host[:port], as in remote_ref.registry; docker.io
 * is served by registry-1.docker.io). Reads the credentials (see remote_options.creds) but does
 * not touch the network. *@ret is the caller's; free with remote_client_free().
 * Errors: -EINVAL for a bad host or a @creds without ':'; -EINVAL naming the docker config file
 * when it is not valid JSON; -ENOMEM.
 */
int remote_client_new(const char *registry, const remote_options *opts, remote_client **ret,
                      cairn_error **reterr);

/* remote_client_free() - NULL-safe. Returns NULL. */
remote_client *remote_client_free(remote_client *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(remote_client *, remote_client_free)

/* remote_client_registry() - the registry name given at creation; borrowed from @c. */
const char *remote_client_registry(const remote_client *c);

/*
 * remote_ping() - the version check: GET /v2/, authenticating when challenged (no scope).
 * Errors: -EACCES when the registry refuses the credentials (or wants some and has none);
 * -EPROTO when /v2/ is not a registry API (404, HTML); transport errors.
 */
int remote_ping(remote_client *c, cairn_error **reterr);

/*
 * remote_blob_exists() - HEAD blob @dgst in @repo: 1 when present (*@ret_size, may be NULL,
 * gets its Content-Length), 0 when absent (404). A Docker-Content-Digest header that names
 * another digest is CAIRN_EDIGEST. Errors: as above.
 */
int remote_blob_exists(remote_client *c, const char *repo, const char *dgst, uint64_t *ret_size,
                       cairn_error **reterr);

/*
 * A sink for blob bytes: @write gets every byte in order and returns 0, or a negative code (and
 * sets its error) to stop the download.
 */
typedef int (*remote_write_fn)(void *userdata, const void *buf, size_t len, cairn_error **reterr);

/*
 * remote_blob_get() - stream blob @dgst of @repo from byte @offset to its end into @fn.
 * @size is the blob's size (0: unknown; then at most @max_size bytes, 0: no cap): more bytes than
 * that, or fewer at the end, is -EPROTO. A dropped connection or a 5xx is retried with backoff,
 * resuming with `Range: bytes=N-` (a server that ignores Range and answers 200 has its first N
 * bytes skipped). When @offset is 0 the bytes are hashed and must match @digest (CAIRN_EDIGEST
 * after the last byte was written, so the caller must discard what @fn got); with @offset > 0
 * the caller holds the first bytes and verifies the whole itself.
 * Errors: -ENOENT for a blob the registry does not have; the others above; @fn's.
 */
int remote_blob_get(remote_client *c, const char *repo, const char *dgst, uint64_t size,
                    uint64_t max_size, uint64_t offset, remote_write_fn fn, void *userdata,
                    cairn_error **reterr);

/*
 * remote_blob_fetch_to_store() - download blob @dgst (@size bytes, required) of @repo into
 * content store @cs through the resumable ingest "remote-<digest>": bytes an earlier failed
 * fetch left there are kept and the download resumes after them with Range. Returns 1 when the
 * blob was fetched, 0 when the store had it already.
 * On a digest or size mismatch the ingest is aborted (nothing half-written stays); on a
 * transport failure it stays for the next call to resume.
 * Errors: those of remote_blob_get(); CAIRN_ELOCKED when another writer holds the ingest; the
 * content store's.
 */
int remote_blob_fetch_to_store(remote_client *c, content_store *cs, const char *repo,
                               const char *dgst, uint64_t size, cairn_error **reterr);

/* remote_blob_fetch_progress() - remote_blob_fetch_to_store() telling @progress (may be NULL)
 * the bytes held so far (a resumed ingest's first) of @size, after each write. */
int remote_blob_fetch_progress(remote_client *c, content_store *cs, const char *repo,
                               const char *dgst, uint64_t size,
                               void (*progress)(uint64_t done, uint64_t total, void *userdata),
                               void *userdata, cairn_error **reterr);

/*
 * A positional source for uploads: fill @buf with up to @len bytes of the blob from @offset and
 * return the count (0 only at the end), or a negative code with the error set. It is called
 * again from earlier offsets when a request is retried.
 */
typedef ssize_t (*remote_read_fn)(void *userdata, void *buf, size_t len, uint64_t offset,
                                  cairn_error **reterr);

/*
 * remote_blob_put() - upload @size bytes from @fn as blob @dgst of @repo, unless the registry
 * has it (HEAD first: returns 0 then). With @from_repo (may be NULL) a cross-repository mount is
 * tried first (returns 0 when the registry mounted it). Otherwise POST an upload session, then one
 * PUT when @size <= chunk_size, else PATCH chunks and a closing PUT. The bytes are hashed while
 * sent; when they do not hash to @dgst (or are not @size long) the upload is aborted before
 * the registry could commit it, and the session is cancelled. A request that fails on the way
 * (dropped connection, 5xx, a session the registry invalidated) is not blindly replayed: the
 * session's status (GET, Range) says where to go on, or a new session starts from byte 0; at
 * most max_attempts failures in all. A final PUT whose reply was lost counts as done when HEAD
 * then finds the blob. Returns 1 when uploaded.
 * Errors: CAIRN_EDIGEST for a mismatch (ours or the registry's DIGEST_INVALID); -EPROTO for a
 * session Location or Range the registry garbles; the others above; @fn's.
 */
int remote_blob_put(remote_client *c, const char *repo, const char *dgst, uint64_t size,
                    remote_read_fn fn, void *userdata, const char *from_repo, cairn_error **reterr);

/* remote_blob_put_fd() - remote_blob_put() reading @fd with pread(2); @fd stays the caller's. */
int remote_blob_put_fd(remote_client *c, const char *repo, const char *dgst, uint64_t size, int fd,
                       const char *from_repo, cairn_error **reterr);

/* A fetched manifest. Free with remote_manifest_free() (NULL-safe, returns NULL). */
typedef struct remote_manifest {
	char *body; /* NUL-terminated after @len bytes (the NUL is not part of the content) */
	size_t len;
	char media_type[256]; /* Content-Type without parameters, else the body's mediaType */
	char digest[DIGEST_STR_LEN + 1]; /* sha256 of body, verified against the request */
} remote_manifest;
remote_manifest *remote_manifest_free(remote_manifest *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(remote_manifest *, remote_manifest_free)

/*
 * remote_manifest_get() - GET manifest @reference (a tag or a digest) of @repo, accepting the
 * NULL-terminated @accept media types (NULL: the four REMOTE_MT_*). The body is capped at
 * REMOTE_MANIFEST_MAX (-EFBIG), must be a JSON object (-EPROTO otherwise, "HTML/non-JSON" when
 * it is not JSON at all), and must hash to @reference when that is a digest and to the
 * Docker-Content-Digest header when one is sent (CAIRN_EDIGEST). *@ret is the caller's.
 * Errors: -ENOENT "manifest 'TAG' not found in 'REPO' on registry 'R'"; the others above.
 */
int remote_manifest_get(remote_client *c, const char *repo, const char *reference,
                        const char *const *accept, remote_manifest **ret, cairn_error **reterr);

/*
 * remote_manifest_put() - PUT @len bytes of @body (at most REMOTE_MANIFEST_MAX, -EFBIG) as
 * manifest @reference (a tag, or a digest which must be the body's: CAIRN_EDIGEST) of @repo with
 * Content-Type @media_type. *@ret_digest (may be NULL) gets the body's digest; a
 * Docker-Content-Digest reply that disagrees is CAIRN_EDIGEST.
 * Errors: -EINVAL for an invalid tag or media type; the registry's (MANIFEST_BLOB_UNKNOWN is
 * -ENOENT); the others above.
 */
int remote_manifest_put(remote_client *c, const char *repo, const char *reference,
                        const char *media_type, const void *body, size_t len, digest *ret_digest,
                        cairn_error **reterr);
