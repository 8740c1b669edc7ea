#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "attest.h"
#include "build.h"
#include "builder.h"
#include "config.h"
#include "contract.h"
#include "digest.h"
#include "error.h"
#include "fsutil.h"
#include "postprocessor.h"
#include "provisioner.h"
#include "redact.h"
#include "sidecar.h"
#include "strbuf.h"
#include "util.h"

/* Percent-encode what a purl part may not hold as is (purl-spec: all but unreserved). */
static void purl_add(struct strbuf *sb, const char *s)
{
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (isalnum(ch) || strchr(".-_~", ch))
			strbuf_addch(sb, (char)ch);
		else
			strbuf_addf(sb, "%%%02X", ch);
	}
}

char *imgf_purl_deb(const char *distro, const char *name, const char *version, const char *arch,
		    const char *distro_release)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, "pkg:deb/");
	purl_add(&sb, distro);
	strbuf_addch(&sb, '/');
	purl_add(&sb, name);
	strbuf_addch(&sb, '@');
	purl_add(&sb, version);
	strbuf_addstr(&sb, "?arch=");
	purl_add(&sb, arch);
	if (distro_release) {
		strbuf_addstr(&sb, "&distro=");
		purl_add(&sb, distro_release);
	}
	return strbuf_detach(&sb, NULL);
}

/* pkg:oci/NAME@sha256%3AHEX?repository_url=REGISTRY/REPO&tag=TAG for a pulled image. */
static char *purl_oci(const char *ref, const char *sha256)
{
	/* ref: REGISTRY/REPO[:TAG][@DIGEST] as the images step records it */
	_cleanup_free_ char *repo = xstrdup(ref);
	char *at = strchr(repo, '@');
	if (at)
		*at = '\0';
	char *slash = strrchr(repo, '/');
	char *colon = strrchr(repo, ':');
	const char *tag = NULL;
	if (colon && (!slash || colon > slash)) {
		*colon = '\0';
		tag = colon + 1;
	}
	slash = strrchr(repo, '/');
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, "pkg:oci/");
	purl_add(&sb, slash ? slash + 1 : repo);
	strbuf_addstr(&sb, "@sha256%3A");
	strbuf_addstr(&sb, sha256);
	strbuf_addstr(&sb, "?repository_url=");
	for (const char *p = repo; *p; p++) /* '/' separates the path: kept */
		if (*p == '/')
			strbuf_addch(&sb, '/');
		else
			purl_add(&sb, (char[]){*p, '\0'});
	if (tag) {
		strbuf_addstr(&sb, "&tag=");
		purl_add(&sb, tag);
	}
	return strbuf_detach(&sb, NULL);
}

/* SPDX ids hold letters, digits, '.' and '-' only. */
static json_t *spdx_id(const char *kind, size_t n, const char *name)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addf(&sb, "SPDXRef-%s-%zu-", kind, n);
	for (const char *p = name; *p; p++)
		strbuf_addch(&sb, isalnum((unsigned char)*p) || *p == '.' || *p == '-' ? *p : '-');
	json_t *j = json_string(sb.buf);
	strbuf_release(&sb);
	return j;
}

static json_t *rfc3339(time_t t)
{
	struct tm tm;
	char buf[32];
	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_string(buf);
}

static const char *str_of(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static bool is_deb(json_t *in)
{
	const char *k = str_of(in, "kind");
	return k && !strcmp(k, "deb");
}

static json_t *sha256_checksums(const char *hex)
{
	return json_pack("[{s:s,s:s}]", "algorithm", "SHA256", "checksumValue", hex);
}

static json_t *purl_ref(char *purl)
{
	json_t *r = json_pack("[{s:s,s:s,s:s}]", "referenceCategory", "PACKAGE-MANAGER",
			      "referenceType", "purl", "referenceLocator", purl);
	free(purl);
	return r;
}

/* An SPDX package for one input of the manifest; NULL for one without a sha256. */
static json_t *input_package(const struct imgf_attest *a, json_t *in, size_t n)
{
	const char *name = str_of(in, "name");
	const char *sha = str_of(in, "sha256");
	if (!name || !sha)
		return NULL;
	const char *url = str_of(in, "url");
	json_t *p = json_object();
	json_object_set_new(p, "filesAnalyzed", json_false());
	json_object_set_new(p, "checksums", sha256_checksums(sha));
	if (is_deb(in)) {
		const char *distro = imgf_config_var(a->config, "distro_name");
		const char *dv = imgf_config_var(a->config, "distro_version");
		_cleanup_free_ char *release = distro && dv ? xasprintf("%s-%s", distro, dv) : NULL;
		json_object_set_new(p, "SPDXID", spdx_id("deb", n, str_of(in, "package")));
		json_object_set_new(p, "name", json_string(str_of(in, "package")));
		json_object_set_new(p, "versionInfo", json_string(str_of(in, "version")));
		json_object_set_new(p, "downloadLocation", json_string(url ? url : "NOASSERTION"));
		json_object_set_new(p, "primaryPackagePurpose", json_string("INSTALL"));
		json_object_set_new(
			p, "externalRefs",
			purl_ref(imgf_purl_deb(distro ? distro : "debian", str_of(in, "package"),
					       str_of(in, "version"), str_of(in, "architecture"),
					       release)));
		const char *archive = str_of(in, "archive");
		if (archive && *archive)
			json_object_set_new(p, "sourceInfo",
					    json_sprintf("from the archive %s", archive));
		return p;
	}
	json_object_set_new(p, "SPDXID", spdx_id("input", n, name));
	json_object_set_new(p, "name", json_string(name));
	const char *version = json_string_value(json_object_get(a->versions, name));
	if (version)
		json_object_set_new(p, "versionInfo", json_string(version));
	bool local = json_is_true(json_object_get(in, "local"));
	/* the docker builder's base is an Engine image name, not a place to download from */
	bool located = url && !local && strstr(url, "://");
	json_object_set_new(p, "downloadLocation", json_string(located ? url : "NOASSERTION"));
	if (url && !located && !local)
		json_object_set_new(p, "sourceInfo", json_sprintf("the image '%s'", url));
	if (local)
		json_object_set_new(p, "sourceInfo",
				    json_sprintf("a local file: %s", str_of(in, "path") ?: ""));
	if (url && str_has_prefix(url, "docker://") && strcmp(name, "base-image")) {
		json_object_set_new(p, "primaryPackagePurpose", json_string("CONTAINER"));
		json_object_set_new(p, "externalRefs", purl_ref(purl_oci(name, sha)));
	} else if (located) {
		struct strbuf sb = STRBUF_INIT;
		strbuf_addstr(&sb, "pkg:generic/");
		purl_add(&sb, name);
		if (version) {
			strbuf_addch(&sb, '@');
			purl_add(&sb, version);
		}
		strbuf_addf(&sb, "?checksum=sha256%%3A%s&download_url=", sha);
		purl_add(&sb, url);
		json_object_set_new(p, "externalRefs", purl_ref(strbuf_detach(&sb, NULL)));
	}
	return p;
}

json_t *imgf_attest_spdx(const struct imgf_attest *a)
{
	bool docker = !strcmp(a->builder, "docker");
	const char *first = str_of(json_array_get(a->subjects, 0), "sha256");
	json_t *packages = json_array();
	json_t *rels = json_array();
	json_t *described = json_array();
	size_t i;
	json_t *sub;
	json_array_foreach(a->subjects, i, sub)
	{
		json_t *id = spdx_id("image", i, a->image);
		json_t *p = json_pack(
			"{s:O,s:s,s:s,s:b,s:o,s:s}", "SPDXID", id, "name", str_of(sub, "name"),
			"downloadLocation", "NOASSERTION", "filesAnalyzed", 0, "checksums",
			sha256_checksums(str_of(sub, "sha256")), "primaryPackagePurpose",
			docker ? "CONTAINER" : "OPERATING-SYSTEM");
		const char *kv = imgf_config_var(a->config, "kubernetes_semver");
		if (kv)
			json_object_set_new(p, "versionInfo", json_string(kv));
		json_object_set_new(
			p, "comment",
			docker ? json_sprintf("the kind node image '%s'; Docker Engine image ID "
					      "sha256:%s",
					      a->image, str_of(sub, "sha256"))
			       : json_sprintf("the %s image '%s' (file %s)", a->builder, a->image,
					      str_of(sub, "name")));
		json_array_append_new(packages, p);
		json_array_append_new(rels, json_pack("{s:s,s:s,s:O}", "spdxElementId",
						      "SPDXRef-DOCUMENT", "relationshipType",
						      "DESCRIBES", "relatedSpdxElement", id));
		json_array_append_new(described, id);
	}
	json_t *in;
	json_array_foreach(a->inputs, i, in)
	{
		json_t *p = input_package(a, in, i);
		if (!p)
			continue;
		const char *name = str_of(in, "name");
		bool base = name && !strcmp(name, "base-image");
		size_t k;
		json_t *id;
		json_array_foreach(described, k, id)
		{
			json_array_append_new(rels, json_pack("{s:O,s:s,s:O}", "spdxElementId", id,
							      "relationshipType",
							      base ? "DESCENDANT_OF" : "CONTAINS",
							      "relatedSpdxElement",
							      json_object_get(p, "SPDXID")));
		}
		json_array_append_new(packages, p);
	}
	json_decref(described);
	_cleanup_free_ char *ns = xasprintf("urn:imgforge:spdx:%s:%s:sha256:%s", a->output_name,
					    a->image, first ? first : "none");
	return json_pack("{s:s,s:s,s:s,s:s,s:s,s:{s:o,s:[s]},s:o,s:o}", "spdxVersion", "SPDX-2.3",
			 "dataLicense", "CC0-1.0", "SPDXID", "SPDXRef-DOCUMENT", "name", a->image,
			 "documentNamespace", ns, "creationInfo", "created", rfc3339(a->created),
			 "creators", "Tool: imgforge-" IMGF_VERSION, "packages", packages,
			 "relationships", rels);
}

/* A variable whose name says it holds a secret: its value stays out of the statement. */
static bool secret_name(const char *name)
{
	static const char *const words[] = {"password",	  "passwd", "secret",  "token",
					    "credential", "apikey", "api_key", "private"};
	for (size_t i = 0; i < ARRAY_SIZE(words); i++)
		if (strcasestr(name, words[i]))
			return true;
	return false;
}

json_t *imgf_attest_provenance(const struct imgf_attest *a)
{
	json_t *subject = json_array();
	size_t i;
	json_t *v;
	json_array_foreach(a->subjects, i, v)
	{
		json_array_append_new(subject, json_pack("{s:s,s:{s:s}}", "name", str_of(v, "name"),
							 "digest", "sha256", str_of(v, "sha256")));
	}
	json_t *vars = json_object();
	const char *k;
	json_object_foreach(a->config->vars, k, v)
	{
		json_object_set_new(vars, k, secret_name(k) ? json_string("***") : json_copy(v));
	}
	json_t *var_files = json_array();
	json_t *deps = json_array();
	json_array_foreach(a->config->files, i, v)
	{
		const char *role = str_of(v, "role");
		if (role && !strcmp(role, "var-file"))
			json_array_append_new(var_files, json_string(str_of(v, "path")));
		json_array_append_new(deps, json_pack("{s:s,s:s,s:{s:s},s:{s:s}}", "name",
						      str_of(v, "path"), "uri", str_of(v, "path"),
						      "digest", "sha256", str_of(v, "sha256"),
						      "annotations", "role", role));
	}
	json_array_foreach(a->inputs, i, v)
	{
		const char *sha = str_of(v, "sha256");
		if (!sha)
			continue;
		const char *uri = str_of(v, "url");
		if (!uri || json_is_true(json_object_get(v, "local")))
			uri = str_of(v, "path");
		json_t *d = json_pack("{s:s,s:{s:s}}", "name", str_of(v, "name"), "digest",
				      "sha256", sha);
		if (uri)
			json_object_set_new(d, "uri", json_string(uri));
		if (is_deb(v))
			json_object_set_new(d, "annotations",
					    json_pack("{s:s,s:s,s:s,s:s}", "package",
						      str_of(v, "package"), "version",
						      str_of(v, "version"), "architecture",
						      str_of(v, "architecture"), "archive",
						      str_of(v, "archive") ?: ""));
		json_array_append_new(deps, d);
	}
	_cleanup_free_ char *invocation =
		xasprintf("%s/%s@%lld", a->output_name, a->image, (long long)a->started);
	return json_pack(
		"{s:s,s:o,s:s,s:{s:{s:s,s:{s:s,s:o,s:s,s:o},s:{s:s},s:o},s:{s:{s:s,s:{s:s}},s:{s:s,"
		"s:o,s:o}}}}",
		"_type", "https://in-toto.io/Statement/v1", "subject", subject, "predicateType",
		"https://slsa.dev/provenance/v1", "predicate", "buildDefinition", "buildType",
		IMGF_BUILD_TYPE, "externalParameters", "config", a->config->path, "var_files",
		var_files, "image", a->image, "variables", vars, "internalParameters", "builder",
		a->builder, "resolvedDependencies", deps, "runDetails", "builder", "id",
		IMGF_BUILDER_ID, "version", "imgforge", IMGF_VERSION, "metadata", "invocationId",
		invocation, "startedOn", rfc3339(a->started), "finishedOn", rfc3339(a->finished));
}

/* An artifact file's sha256: its stamped sidecar's when current, else read. */
static int file_sha256(const char *path, char hex[IMGF_DIGEST_HEX_MAX], struct imgf_error **err)
{
	const char *why = NULL;
	if (imgf_sidecar_reuse(path, hex, &why))
		return 0;
	return imgf_digest_file(path, IMGF_SHA256, hex, err);
}

static bool in_strv(char *const *v, const char *s)
{
	for (size_t i = 0; v && v[i]; i++)
		if (!strcmp(v[i], s))
			return true;
	return false;
}

/* The steps' versions: each input of a step with a "version" key, and the Kubernetes
 * binaries and image tars (local ones too) at kubernetes_semver. */
static json_t *input_versions(const struct imgf_build *b)
{
	json_t *out = json_object();
	for (size_t i = 0; i < b->nsteps; i++) {
		const struct imgf_step *s = &b->steps[i];
		const char *v = json_string_value(json_object_get(s->cfg, "version"));
		for (size_t j = 0; v && *v && j < s->ninputs; j++)
			json_object_set_new(out, s->inputs[j].name, json_string(v));
	}
	const char *kv = b->contract->kubernetes_version;
	static const char *const kube[] = {"kubeadm",
					   "kubelet",
					   "kubectl",
					   "kube-apiserver.tar",
					   "kube-controller-manager.tar",
					   "kube-scheduler.tar",
					   "kube-proxy.tar"};
	for (size_t i = 0; kv && i < ARRAY_SIZE(kube); i++)
		json_object_set_new(out, kube[i], json_string(kv));
	return out;
}

static time_t sbom_time(const struct imgf_build *b)
{
	return b->contract->epoch.set ? (time_t)b->contract->epoch.value : time(NULL);
}

int imgf_attest_gather(struct imgf_pp_ctx *c, struct imgf_attest *a, struct imgf_error **err)
{
	struct imgf_build *b = c->build;
	*a = (struct imgf_attest){
		.image = b->def->name,
		.output_name = path_basename(b->out_dir),
		.builder = b->builder->name,
		.subjects = json_array(),
		.inputs = json_incref(b->inputs),
		.versions = input_versions(b),
		.config = b->config,
		.created = sbom_time(b),
		.started = c->start,
		.finished = time(NULL),
	};
	if (!b->builder->disk_ext) {
		const char *id = c->art->id ? c->art->id : "";
		const char *tag = json_string_value(json_object_get(b->builder_cfg, "tag"));
		json_array_append_new(a->subjects,
				      json_pack("{s:s,s:s}", "name", tag && *tag ? tag : a->image,
						"sha256",
						str_has_prefix(id, "sha256:") ? id + 7 : id));
		return 0;
	}
	_cleanup_strv_ char **exts = imgf_upload_exts();
	for (size_t i = 0; c->art->files && c->art->files[i]; i++) {
		const char *f = c->art->files[i];
		const char *dot = strchr(f, '.');
		bool artifact = false;
		for (; dot && !artifact; dot = strchr(dot + 1, '.'))
			artifact = in_strv(exts, dot + 1);
		if (!artifact)
			continue;
		char hex[IMGF_DIGEST_HEX_MAX];
		_cleanup_free_ char *p = path_join(b->out_dir, f);
		if (file_sha256(p, hex, err) < 0) {
			imgf_attest_release(a);
			return -1;
		}
		json_array_append_new(a->subjects,
				      json_pack("{s:s,s:s}", "name", f, "sha256", hex));
	}
	return 0;
}

void imgf_attest_release(struct imgf_attest *a)
{
	json_decref(a->subjects);
	json_decref(a->inputs);
	json_decref(a->versions);
	memset(a, 0, sizeof(*a));
}

int imgf_attest_write(struct imgf_pp_ctx *c, json_t *doc, const char *name, struct imgf_error **err)
{
	/* A docker build writes nothing else there: the directory may not exist yet. */
	if (mkdir_p(c->build->out_dir, 0755, err) < 0)
		return -1;
	_cleanup_free_ char *path = path_join(c->build->out_dir, name);
	_cleanup_free_ char *raw = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (!raw)
		return imgf_error_set(err, IMGF_EXIT_FAIL, "encode '%s'", path);
	/* Input URLs are recorded as given: a mirror's credentials stay out of the file. */
	_cleanup_free_ char *text = imgf_redact(raw);
	size_t len = strlen(text);
	text = xrealloc(text, len + 2);
	text[len] = '\n';
	text[len + 1] = '\0';
	if (write_file_atomic(path, text, len + 1, 0644, err) < 0)
		return -1;
	if (!in_strv(c->art->files, name)) {
		if (!c->art->files)
			c->art->files = xcalloc(1, sizeof(*c->art->files));
		c->art->files = strv_push(c->art->files, xstrdup(name));
	}
	return 0;
}
