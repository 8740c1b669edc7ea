/*
 * What the parts of the docker builder share: docker.c (its options, the commit and the ops),
 * docker-engine.c (the Docker Engine API client), docker-container.c (the base image, the build
 * container, images on the engine), docker-target.c (the target ops), docker-squash.c (the
 * squashed image) and docker-cache.c (the step cache). Not for other users; what the rest of
 * imgforge uses is in src/dockerengine.h.
 */
#ifndef IMGF_DOCKER_INTERNAL_H
#define IMGF_DOCKER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "strbuf.h"
#include "target.h"

struct imgf_artifact;
struct imgf_build;
struct imgf_builder_cache_ops;
struct imgf_error;

#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct docker {
	char *socket; /* unix socket path, or NULL for tcp */
	char *base;   /* "http://docker" or "https://host:port" */
	char *ca, *cert, *key;
	bool verify;
	char api[16]; /* "/v1.41" */
};

struct docker_target {
	struct imgf_target t;
	struct docker *d;
	char *id;
	char *name;
	json_t *base_config;   /* the base image's Config, for defaults at commit */
	json_t *base_platform; /* {Architecture, Os, Variant} of the base, for a squashed image */
};

/* ---- the Engine API client (docker-engine.c) --------------------------------------------- */

struct docker_call {
	const char *method;
	char *path;   /* after the API prefix */
	json_t *body; /* JSON body or NULL */
	FILE *upload; /* tar body for PUT or NULL */
	int64_t upload_size;
	/* Streamed reply: called for every chunk; NULL = collect into reply. */
	size_t (*on_data)(void *opaque, const char *data, size_t len);
	void *opaque;
	/* Streamed body of unknown length (sent chunked) when set: returns the bytes put in
	 * buf, 0 at the end, CURL_READFUNC_ABORT on error. */
	size_t (*on_read)(void *opaque, char *buf, size_t len);
	void *read_opaque;
	bool interruptible; /* abort when SIGINT/SIGTERM arrives */
	bool unversioned;   /* /version is asked before the API version is known */
	long status;
	struct strbuf reply;
};

/* The engine DOCKER_HOST names (unix:///var/run/docker.sock when unset), its API version
 * negotiated. */
int imgf_docker_connect(struct docker **out, struct imgf_error **err);
void imgf_docker_free(struct docker *d);

/* One call; c->status gets the HTTP status (a status of 300 or more is no error here). */
int imgf_docker_do(struct docker *d, struct docker_call *c, struct imgf_error **err);
void imgf_docker_call_release(struct docker_call *c);

/* A message for a failed call: the Engine's own {"message": ...} when there is one. */
int imgf_docker_call_error(struct docker_call *c, const char *what, struct imgf_error **err);

/* A JSON request whose 2xx reply (if any) is parsed into *out (may be NULL). */
int imgf_docker_json(struct docker *d, const char *method, json_t *body, json_t **out, long *status,
		     struct imgf_error **err, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));
/* The same for a call that freezes the container (pause; commit with pause=true), tried again
 * when the engine could not freeze it ("unable to freeze": runc's cgroup v1 freezer timed
 * out, nothing changed); a status of 300 or more is an error. */
int imgf_docker_json_freezing(struct docker *d, const char *method, json_t *body, json_t **out,
			      struct imgf_error **err, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

/* An on_data callback writing to the FILE * in opaque. */
size_t imgf_docker_file_sink(void *opaque, const char *data, size_t len);

/* An on_data callback for the JSON lines of a pull or load: the last error into the
 * struct strbuf * in opaque. */
size_t imgf_docker_pull_progress(void *opaque, const char *data, size_t len);

/* ---- the target (docker-target.c) -------------------------------------------------------- */

extern const struct imgf_target_ops imgf_docker_target_ops;

/* ---- containers and images (docker-container.c) ----------------------------------------- */

/* The builder option `key` as a JSON array of strings: a string is one, missing is [def]
 * (or [] without def). */
json_t *imgf_docker_cfg_list(struct imgf_build *b, const char *key, const char *def);

/* Split "repo[:tag]" where a ':' before the last '/' belongs to a registry port. */
void imgf_docker_split_tag(const char *ref, char **repo, char **tag);

/* The base image, present (pulled per `pull`), recorded as the input "base-image" once. */
int imgf_docker_base_image(struct imgf_build *b, struct docker *d, json_t **info,
			   struct imgf_error **err);

/* A build container from `from` (the base image, or a cached step's image), started. */
int imgf_docker_create_container(struct imgf_build *b, struct docker *d, const char *from,
				 char **id, char **name_out, struct imgf_error **err);

/* The container removed (with its volumes); a failure is only a warning. */
void imgf_docker_remove_container(struct docker *d, const char *id);

/* The container committed by the engine (POST /commit) with config, tagged `tag` if set. */
int imgf_docker_engine_commit(struct docker_target *dt, json_t *config, const char *tag, char **id,
			      struct imgf_error **err);

/* "OS/ARCH[/VARIANT]" of an image inspect reply (or the base_platform subset of one). */
char *imgf_docker_platform_of(json_t *info);

/* The loaded image is there under the ID its config gives. */
int imgf_docker_check_loaded(struct docker *d, const char *want, struct imgf_error **err);

/* ---- the squashed image (docker-squash.c) ------------------------------------------------ */

/*
 * The container's filesystem exported, rewritten as one reproducible layer and loaded with
 * a config of its own (created at SOURCE_DATE_EPOCH): the same build gives the same ID.
 */
int imgf_docker_squash_commit(struct imgf_build *b, struct docker_target *dt, json_t *commit_cfg,
			      const char *tag, char **id, struct imgf_error **err);

/* ---- the step cache (docker-cache.c) ----------------------------------------------------- */

extern const struct imgf_builder_cache_ops imgf_docker_cache;

#endif
