/* Declared config keys, checked before anything runs: unknown keys list the known ones. */
#ifndef IMGF_KEYS_H
#define IMGF_KEYS_H

#include <stdbool.h>

#include <jansson.h>

struct imgf_error;

enum imgf_key_type {
	IMGF_KEY_STRING,
	IMGF_KEY_BOOL,
	IMGF_KEY_INT,
	IMGF_KEY_STRING_LIST, /* a list of strings (a single string is accepted too) */
	IMGF_KEY_OBJECT,
	IMGF_KEY_ANY,
	/*
	 * A string naming a host file or directory the step reads, relative to the working
	 * directory as the provisioner opens it; a URL (scheme://) names none. The step cache
	 * hashes what it names into the step's key (provisioner.h: imgf_step_host_paths).
	 */
	IMGF_KEY_HOST_PATH,
	/* A string of words (whitespace or commas): those written as paths (/…, ./…, ../…) are
	 * host paths as above, the others are not (registry references). */
	IMGF_KEY_HOST_PATH_WORDS,
};

struct imgf_key {
	const char *name;
	enum imgf_key_type type;
	bool required;
};

/* Check obj against keys (terminated by {NULL}); `type` is always allowed. `where` prefixes
 * messages: "images/kind-node.json: provisioners[2] (containerd)". */
int imgf_keys_check(json_t *obj, const struct imgf_key *keys, const char *where,
		    struct imgf_error **err);

#endif
