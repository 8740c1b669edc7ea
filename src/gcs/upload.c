/*
 * imgforge image-upload and image-list. An upload is planned whole before anything is sent:
 * every BUILD_DIR's manifest is read, every artifact found and hashed, every bucket checked;
 * only then are objects written, each artifact before its .sha256, so an error in the plan
 * uploads nothing and a half-finished upload never looks complete.
 */
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "attest.h"
#include "digest.h"
#include "config.h"
#include "error.h"
#include "fsutil.h"
#include "gcs.h"
#include "log.h"
#include "manifest.h"
#include "postprocessor.h"
#include "redact.h"
#include "sidecar.h"
#include "strbuf.h"
#include "upload-internal.h"
#include "upload.h"
#include "util.h"

#define SIDECAR_MAX 4096 /* a .sha256 object is one line */

struct upload_item {
	char *file; /* local path */
	char *bucket;
	char *object;  /* CHANNEL/VERSION/NAME.EXT */
	char *sidecar; /* OBJECT.sha256 */
	const char *channel;
	uint64_t size;
	char sha256[65];
};

struct upload_plan {
	struct upload_item *items;
	size_t n, alloc;
	char **buckets; /* distinct, NULL-terminated */
	char **exts;	/* what is uploaded: imgf_upload_exts() */
};

static void upload_plan_release(struct upload_plan *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->items[i].file);
		free(p->items[i].bucket);
		free(p->items[i].object);
		free(p->items[i].sidecar);
	}
	free(p->items);
	strv_free(p->buckets);
	strv_free(p->exts);
	memset(p, 0, sizeof(*p));
}

bool imgf_upload_version_is_release(const char *version)
{
	regex_t re;
	if (regcomp(&re, "^v?[0-9]+\\.[0-9]+\\.[0-9]+(-[0-9]+)?$", REG_EXTENDED | REG_NOSUB))
		abort(); /* a constant pattern: only out of memory fails */
	bool m = regexec(&re, version, 0, NULL, 0) == 0;
	regfree(&re);
	return m;
}

int imgf_upload_parse_sha256(const char *text, size_t len, char hex[65])
{
	size_t i = 0;
	while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r'))
		i++;
	if (len - i < 64 || !str_is_hex(text + i, 64))
		return -1;
	if (len - i > 64 && !strchr(" \t\r\n", text[i + 64]))
		return -1;
	for (size_t k = 0; k < 64; k++) {
		char c = text[i + k];
		hex[k] = (char)(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
	}
	hex[64] = '\0';
	return 0;
}

/* Names that become parts of an object name: no '/', nothing that is not plain. */
static bool name_part_ok(const char *s)
{
	if (!*s || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || strchr("._+-~", *p)))
			return false;
	return true;
}

/* A custom_data string; an empty one counts as missing. */
static const char *custom_string(json_t *cd, const char *key)
{
	const char *v = imgf_cfg_str(cd, key, NULL);
	return v && *v ? v : NULL;
}

/* The extension in exts (imgf_upload_exts) that name has, or NULL: not an artifact. */
static const char *artifact_ext(char *const *exts, const char *name)
{
	for (size_t i = 0; exts[i]; i++) {
		_cleanup_free_ char *suffix = xasprintf(".%s", exts[i]);
		if (str_has_suffix(name, suffix) && strlen(name) > strlen(suffix))
			return exts[i];
	}
	return NULL;
}

/* ".qcow2, .ova or .raw" for messages (newly allocated). */
static char *exts_text(char *const *exts)
{
	struct strbuf sb = STRBUF_INIT;
	size_t n = strv_len(exts);
	for (size_t i = 0; i < n; i++)
		strbuf_addf(&sb, "%s.%s", i == 0 ? "" : i + 1 == n ? " or " : ", ", exts[i]);
	return strbuf_detach(&sb, NULL);
}

/* The local file of a manifest entry: always in BUILD_DIR. Packer writes names relative to
 * where it ran ("output/NAME/NAME.ova"), imgforge bare names; nothing outside is uploaded. */
static char *artifact_path(const char *dir, const char *name)
{
	return path_join(dir, path_basename(name));
}

/* A .sha256 file the build wrote beside the artifact must agree with the artifact. */
static int check_local_sidecar(const struct upload_item *it, struct imgf_error **err)
{
	_cleanup_free_ char *path = xasprintf("%s.sha256", it->file);
	struct stat st;
	if (stat(path, &st) < 0)
		return 0;
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	if (read_file(path, SIDECAR_MAX, &text, &len, err) < 0)
		return -1;
	char want[65];
	if (imgf_upload_parse_sha256(text, len, want) < 0)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "'%s': not a sha256 file", path);
	if (strcmp(want, it->sha256) != 0)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "'%s' does not match '%s': sha256 %s, the file says %s (was "
				      "the artifact changed after the build?)",
				      it->file, path, it->sha256, want);
	return 0;
}

static void plan_add_bucket(struct upload_plan *p, const char *bucket)
{
	for (size_t i = 0; p->buckets && p->buckets[i]; i++)
		if (!strcmp(p->buckets[i], bucket))
			return;
	p->buckets = strv_push(p->buckets, xstrdup(bucket));
}

/* A regular file of the build directory (a symlink there could name any file, a key). */
static int plan_stat(const char *path, const char *name, const char *mpath, size_t index,
		     uint64_t *size, struct imgf_error **err)
{
	struct stat st;
	errno = 0;
	if (lstat(path, &st) == 0 && S_ISREG(st.st_mode)) {
		*size = (uint64_t)st.st_size;
		return 0;
	}
	int e = errno;
	bool link = !e && S_ISLNK(st.st_mode);
	return e ? imgf_error_errno(err, e, "%s: builds[%zu].files: artifact '%s'", mpath, index,
				    name)
		 : imgf_error_set(err, IMGF_EXIT_FAIL, "%s: builds[%zu].files: artifact '%s' is %s",
				  mpath, index, name,
				  link ? "a symlink (only a regular file of the build directory is "
					 "uploaded)"
				       : "not a regular file");
}

/*
 * The build's SBOM and provenance (attest.h), each to be uploaded beside the artifact `art`
 * as ARTIFACT_OBJECT.spdx.json and .provenance.json, before the artifact, so the artifact's
 * .sha256, written last, says all of them are there.
 */
static int plan_attestations(struct upload_plan *p, const char *dir, json_t *files,
			     const struct upload_item *art, const char *mpath, size_t index,
			     struct imgf_error **err)
{
	static const char *const suffixes[] = {IMGF_SBOM_SUFFIX, IMGF_PROVENANCE_SUFFIX};
	size_t i;
	json_t *f;
	json_array_foreach(files, i, f)
	{
		const char *name = json_string_value(json_object_get(f, "name"));
		for (size_t k = 0; name && k < ARRAY_SIZE(suffixes); k++) {
			if (!str_has_suffix(name, suffixes[k]))
				continue;
			struct upload_item it = {.channel = art->channel};
			it.file = artifact_path(dir, name);
			if (plan_stat(it.file, name, mpath, index, &it.size, err) < 0) {
				free(it.file);
				return -1;
			}
			it.bucket = xstrdup(art->bucket);
			it.object = xasprintf("%s%s", art->object, suffixes[k]);
			it.sidecar = xasprintf("%s.sha256", it.object);
			ALLOC_GROW(p->items, p->n + 1, p->alloc);
			p->items[p->n++] = it;
		}
	}
	return 0;
}

static int plan_build(struct upload_plan *p, const struct imgf_upload_opts *o, const char *dir,
		      json_t *build, const char *mpath, size_t index, struct imgf_error **err)
{
	json_t *cd = json_object_get(build, "custom_data");
	const char *build_name = custom_string(cd, "build_name");
	const char *version = custom_string(cd, "kubernetes_semver");
	if (!build_name || !version)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "%s: builds[%zu].custom_data: '%s' is missing", mpath, index,
				      build_name ? "kubernetes_semver" : "build_name");
	if (!name_part_ok(build_name) || !name_part_ok(version))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "%s: builds[%zu].custom_data: build_name '%s' or "
				      "kubernetes_semver '%s' cannot be part of an object name",
				      mpath, index, build_name, version);
	const char *bucket = o->bucket ? o->bucket : custom_string(cd, "upload_bucket");
	if (!bucket)
		return imgf_error_set(err, IMGF_EXIT_USAGE,
				      "%s: builds[%zu]: no bucket: pass --bucket or set the "
				      "'upload_bucket' variable",
				      mpath, index);
	_cleanup_free_ char *gs = xasprintf("gs://%s", bucket);
	_cleanup_free_ char *b = NULL, *prefix = NULL;
	if (imgf_gs_url_parse(gs, &b, &prefix, err) < 0 || *prefix)
		return imgf_error_set(err, IMGF_EXIT_USAGE, "bucket '%s' is not a bucket name",
				      bucket);
	const char *channel;
	if (o->channel == IMGF_CHANNEL_CI)
		channel = "ci";
	else if (o->channel == IMGF_CHANNEL_RELEASE)
		channel = "release";
	else
		channel = imgf_upload_version_is_release(version) ? "release" : "ci";

	json_t *files = json_object_get(build, "files");
	size_t i;
	json_t *f;
	json_array_foreach(files, i, f)
	{
		const char *name = json_string_value(json_object_get(f, "name"));
		const char *ext = name ? artifact_ext(p->exts, name) : NULL;
		if (!ext)
			continue;
		struct upload_item it = {.channel = channel};
		it.file = artifact_path(dir, name);
		/* Not followed: a symlink in the build directory could name any file (a key) */
		if (plan_stat(it.file, name, mpath, index, &it.size, err) < 0) {
			free(it.file);
			return -1;
		}
		it.bucket = xstrdup(bucket);
		_cleanup_free_ char *stem = imgf_output_name(build_name, version);
		it.object = xasprintf("%s/%s/%s.%s", channel, version, stem, ext);
		it.sidecar = xasprintf("%s.sha256", it.object);
		/* Packer appends a build per run: the same file twice is one upload */
		int clash = 0;
		for (size_t k = 0; k < p->n && !clash; k++)
			if (!strcmp(p->items[k].bucket, it.bucket) &&
			    !strcmp(p->items[k].object, it.object))
				clash = strcmp(p->items[k].file, it.file) ? -1 : 1;
		if (clash < 0)
			imgf_error_set(err, IMGF_EXIT_FAIL,
				       "'%s' and another artifact would both be uploaded to "
				       "'gs://%s/%s'",
				       it.file, it.bucket, it.object);
		if (clash) {
			free(it.file);
			free(it.bucket);
			free(it.object);
			free(it.sidecar);
			if (clash < 0)
				return -1;
			continue;
		}
		if (plan_attestations(p, dir, files, &it, mpath, index, err) < 0) {
			free(it.file);
			free(it.bucket);
			free(it.object);
			free(it.sidecar);
			return -1;
		}
		ALLOC_GROW(p->items, p->n + 1, p->alloc);
		p->items[p->n++] = it;
		plan_add_bucket(p, bucket);
	}
	return 0;
}

static int plan_dir(struct upload_plan *p, const struct imgf_upload_opts *o, const char *dir,
		    struct imgf_error **err)
{
	struct stat st;
	if (stat(dir, &st) < 0)
		return imgf_error_errno(err, errno, "build directory '%s'", dir);
	if (!S_ISDIR(st.st_mode))
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "build directory '%s' is not a directory", dir);
	_cleanup_free_ char *mpath = path_join(dir, "manifest.json");
	if (stat(mpath, &st) < 0 && errno == ENOENT)
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "build directory '%s' has no manifest.json (is it a build's "
				      "output directory?)",
				      dir);
	json_t *m = NULL;
	if (imgf_manifest_read(dir, &m, err) < 0)
		return -1;
	size_t before = p->n;
	size_t i;
	json_t *b;
	int r = 0;
	json_array_foreach(json_object_get(m, "builds"), i, b)
	{
		if ((r = plan_build(p, o, dir, b, mpath, i, err)) < 0)
			break;
	}
	json_decref(m);
	if (r == 0 && p->n == before) {
		_cleanup_free_ char *known = exts_text(p->exts);
		return imgf_error_set(err, IMGF_EXIT_FAIL,
				      "%s: no %s artifact in any build's files", mpath, known);
	}
	return r;
}

/*
 * The sha256 of every artifact, before any network traffic, so a bad file uploads nothing:
 * the build's own (its stamped sidecar, see sidecar.h) when the artifact is unchanged since
 * the build hashed it, else read and hashed here. Either way the upload hashes the bytes it
 * sends and fails unless they have this sha256.
 */
static int plan_hash(struct upload_plan *p, struct imgf_error **err)
{
	for (size_t i = 0; i < p->n; i++) {
		struct upload_item *it = &p->items[i];
		const char *why = NULL;
		if (imgf_sidecar_reuse(it->file, it->sha256, &why)) {
			log_debug("sha256 of '%s': %s, from its stamped sidecar (unchanged since "
				  "the build hashed it)",
				  it->file, it->sha256);
			continue;
		}
		log_debug("sha256 of '%s' (its sidecar cannot be reused: %s)", it->file, why);
		if (imgf_digest_file(it->file, IMGF_SHA256, it->sha256, err) < 0 ||
		    check_local_sidecar(it, err) < 0)
			return -1;
		if (imgf_interrupted)
			return imgf_error_set(err, IMGF_EXIT_INTERRUPTED, "interrupted");
	}
	return 0;
}

static void print_urls(struct imgf_gcs *g, const struct upload_item *it)
{
	_cleanup_free_ char *raw_url = imgf_gcs_download_url(g, it->bucket, it->object);
	_cleanup_free_ char *raw_sum = imgf_gcs_download_url(g, it->bucket, it->sidecar);
	_cleanup_free_ char *url = imgf_redact(raw_url);
	_cleanup_free_ char *sum = imgf_redact(raw_sum);
	printf("  %s\n  %s\n", url, sum);
	fflush(stdout);
}

static void item_event(struct imgf_gcs *g, const struct upload_item *it, const char *action)
{
	_cleanup_free_ char *url = imgf_gcs_download_url(g, it->bucket, it->object);
	_cleanup_free_ char *sum = imgf_gcs_download_url(g, it->bucket, it->sidecar);
	imgf_event("image-upload",
		   json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:s,s:s,s:s}", "action", action, "file",
			     it->file, "bucket", it->bucket, "object", it->object, "channel",
			     it->channel, "size", (json_int_t)it->size, "sha256", it->sha256, "url",
			     url, "sha256_url", sum),
		   NULL);
	if (!imgf_log_json()) {
		if (!strcmp(action, "would-upload"))
			printf("would upload: %s -> gs://%s/%s (%llu bytes, sha256 %s)\n", it->file,
			       it->bucket, it->object, (unsigned long long)it->size, it->sha256);
		else if (!strcmp(action, "up-to-date"))
			printf("up to date: gs://%s/%s\n", it->bucket, it->object);
		else
			printf("uploaded: gs://%s/%s (%llu bytes, sha256 %s)\n", it->bucket,
			       it->object, (unsigned long long)it->size, it->sha256);
		print_urls(g, it);
	}
}

/* Up to date: the remote .sha256 names our sha256 and the artifact is there, same size. */
static int item_up_to_date(struct imgf_gcs *g, const struct upload_item *it, bool *yes,
			   struct imgf_error **err)
{
	*yes = false;
	struct strbuf sb = STRBUF_INIT;
	bool found = false;
	int r = imgf_gcs_get_small(g, it->bucket, it->sidecar, SIDECAR_MAX, &sb, &found, err);
	char remote[65];
	bool same = r == 0 && found && imgf_upload_parse_sha256(sb.buf, sb.len, remote) == 0 &&
		    !strcmp(remote, it->sha256);
	strbuf_release(&sb);
	if (r < 0 || !same)
		return r;
	json_t *meta = NULL;
	if (imgf_gcs_stat(g, it->bucket, it->object, &meta, err) < 0)
		return -1;
	const char *size = json_string_value(json_object_get(meta, "size"));
	*yes = meta && size && strtoull(size, NULL, 10) == it->size;
	if (!*yes)
		log_warn("gs://%s/%s: the .sha256 matches but the object is %s; uploading it again",
			 it->bucket, it->sidecar, meta ? "of another size" : "missing");
	json_decref(meta);
	return 0;
}

static int item_upload(struct imgf_gcs *g, const struct upload_item *it, struct imgf_error **err)
{
	log_info("uploading '%s' to gs://%s/%s", it->file, it->bucket, it->object);
	struct imgf_gcs_upload_result res;
	if (imgf_gcs_upload_file(g, it->bucket, it->object, it->file, it->sha256, &res, err) < 0)
		return -1;
	/* Last, so a .sha256 names only an artifact that is complete and verified. */
	_cleanup_free_ char *line = xasprintf("%s\n", it->sha256);
	return imgf_gcs_put_small(g, it->bucket, it->sidecar, line, strlen(line), "text/plain",
				  err);
}

int imgf_upload_run(const struct imgf_upload_opts *o, char *const *build_dirs,
		    struct imgf_error **err)
{
	if (!build_dirs || !build_dirs[0])
		return imgf_error_set(
			err, IMGF_EXIT_USAGE,
			"image-upload: no BUILD_DIR given (see 'imgforge image-upload "
			"--help')");
	struct upload_plan plan = {.exts = imgf_upload_exts()};
	struct imgf_gcs *g = NULL;
	int r = -1;
	for (size_t i = 0; build_dirs[i]; i++)
		if (plan_dir(&plan, o, build_dirs[i], err) < 0)
			goto out;
	/* the key is checked before the long hashing, the buckets after it (network) */
	if (imgf_gcs_open(o->key_file, &g, err) < 0 || plan_hash(&plan, err) < 0)
		goto out;
	for (size_t i = 0; plan.buckets && plan.buckets[i]; i++)
		if (imgf_gcs_bucket_check(g, plan.buckets[i], err) < 0)
			goto out;

	for (size_t i = 0; i < plan.n; i++) {
		const struct upload_item *it = &plan.items[i];
		bool current = false;
		if (item_up_to_date(g, it, &current, err) < 0)
			goto out;
		if (current) {
			item_event(g, it, "up-to-date");
			continue;
		}
		if (o->dry_run) {
			item_event(g, it, "would-upload");
			continue;
		}
		if (item_upload(g, it, err) < 0)
			goto out;
		item_event(g, it, "uploaded");
	}
	r = 0;
out:
	imgf_gcs_free(g);
	upload_plan_release(&plan);
	return r;
}

int imgf_image_list(const struct imgf_upload_opts *o, const char *gs_url, struct imgf_error **err)
{
	if (!gs_url)
		return imgf_error_set(err, IMGF_EXIT_USAGE,
				      "image-list: no gs://BUCKET/PREFIX given (see 'imgforge "
				      "image-list --help')");
	_cleanup_free_ char *bucket = NULL, *prefix = NULL;
	if (imgf_gs_url_parse(gs_url, &bucket, &prefix, err) < 0)
		return -1;
	_cleanup_strv_ char **exts = imgf_upload_exts();
	struct imgf_gcs *g = NULL;
	if (imgf_gcs_open(o->key_file, &g, err) < 0)
		return -1;
	json_t *items = NULL;
	int r = -1;
	if (imgf_gcs_list(g, bucket, prefix, &items, err) < 0)
		goto out;
	/* name -> the listing's entry, to find each artifact's .sha256 beside it */
	json_t *byname = json_object();
	size_t i;
	json_t *it;
	json_array_foreach(items, i, it)
	{
		const char *name = json_string_value(json_object_get(it, "name"));
		if (name)
			json_object_set(byname, name, it);
	}
	size_t shown = 0;
	r = 0;
	json_array_foreach(items, i, it)
	{
		const char *name = json_string_value(json_object_get(it, "name"));
		if (!name || !artifact_ext(exts, name))
			continue;
		const char *size = json_string_value(json_object_get(it, "size"));
		_cleanup_free_ char *side = xasprintf("%s.sha256", name);
		char sha[65] = "-";
		if (json_object_get(byname, side)) {
			struct strbuf sb = STRBUF_INIT;
			bool found = false;
			if (imgf_gcs_get_small(g, bucket, side, SIDECAR_MAX, &sb, &found, err) <
			    0) {
				strbuf_release(&sb);
				r = -1;
				break;
			}
			if (!found || imgf_upload_parse_sha256(sb.buf, sb.len, sha) < 0)
				snprintf(sha, sizeof(sha), "-");
			strbuf_release(&sb);
		}
		_cleanup_free_ char *url = imgf_gcs_download_url(g, bucket, name);
		imgf_event("image",
			   json_pack("{s:s,s:s,s:s,s:s,s:s}", "bucket", bucket, "object", name,
				     "size", size ? size : "", "sha256", sha, "url", url),
			   NULL);
		if (!imgf_log_json()) {
			_cleanup_free_ char *shown_url = imgf_redact(url);
			printf("%s\t%s\t%s\t%s\n", name, size ? size : "-", sha, shown_url);
		}
		shown++;
	}
	json_decref(byname);
	if (r == 0 && !shown) {
		_cleanup_free_ char *known = exts_text(exts);
		log_info("no %s objects under gs://%s/%s", known, bucket, prefix);
	}
out:
	json_decref(items);
	imgf_gcs_free(g);
	return r;
}
