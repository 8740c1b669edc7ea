#include <errno.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yaml.h>

#include "cidata.h"
#include "error.h"
#include "fsutil.h"
#include "run.h"
#include "strbuf.h"
#include "util.h"

static int emit(yaml_emitter_t *em, yaml_event_t *ev, struct imgf_error **err)
{
	if (!yaml_emitter_emit(em, ev))
		return imgf_error_set(err, IMGF_EXIT_FAIL, "write user-data: %s",
				      em->problem ? em->problem : "yaml emitter failed");
	return 0;
}

static int scalar(yaml_emitter_t *em, const char *s, bool literal, struct imgf_error **err)
{
	yaml_event_t ev;
	yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)strlen(s), 1, 1,
				     literal ? YAML_LITERAL_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE);
	return emit(em, &ev, err);
}

static int pair(yaml_emitter_t *em, const char *k, const char *v, struct imgf_error **err)
{
	return scalar(em, k, false, err) < 0 || scalar(em, v, strchr(v, '\n') != NULL, err) < 0 ? -1
												: 0;
}

static int begin(yaml_emitter_t *em, bool mapping, struct imgf_error **err)
{
	yaml_event_t ev;
	if (mapping)
		yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
	else
		yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
	return emit(em, &ev, err);
}

static int end(yaml_emitter_t *em, bool mapping, struct imgf_error **err)
{
	yaml_event_t ev;
	if (mapping)
		yaml_mapping_end_event_initialize(&ev);
	else
		yaml_sequence_end_event_initialize(&ev);
	return emit(em, &ev, err);
}

static int write_handler(void *data, unsigned char *buffer, size_t size)
{
	strbuf_add(data, buffer, size);
	return 1;
}

static int emit_document(yaml_emitter_t *em, const struct imgf_cidata *c, struct imgf_error **err)
{
	yaml_event_t ev;
	yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
	if (emit(em, &ev, err) < 0)
		return -1;
	yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
	if (emit(em, &ev, err) < 0 || begin(em, true, err) < 0)
		return -1;
	if (c->hostname && pair(em, "hostname", c->hostname, err) < 0)
		return -1;
	if (pair(em, "ssh_pwauth", "false", err) < 0)
		return -1;
	if (c->user) {
		if (scalar(em, "users", false, err) < 0 || begin(em, false, err) < 0 ||
		    scalar(em, "default", false, err) < 0 || begin(em, true, err) < 0 ||
		    pair(em, "name", c->user, err) < 0 || pair(em, "shell", "/bin/bash", err) < 0 ||
		    pair(em, "sudo", "ALL=(ALL) NOPASSWD:ALL", err) < 0 ||
		    pair(em, "lock_passwd", "true", err) < 0)
			return -1;
		if (c->ssh_keys && c->ssh_keys[0]) {
			if (scalar(em, "ssh_authorized_keys", false, err) < 0 ||
			    begin(em, false, err) < 0)
				return -1;
			for (size_t i = 0; c->ssh_keys[i]; i++)
				if (scalar(em, c->ssh_keys[i], false, err) < 0)
					return -1;
			if (end(em, false, err) < 0)
				return -1;
		}
		if (end(em, true, err) < 0 || end(em, false, err) < 0)
			return -1;
	}
	if (c->boot_script) {
		if (scalar(em, "runcmd", false, err) < 0 || begin(em, false, err) < 0 ||
		    begin(em, false, err) < 0 || scalar(em, "/bin/sh", false, err) < 0 ||
		    scalar(em, "-c", false, err) < 0 ||
		    scalar(em, c->boot_script, strchr(c->boot_script, '\n') != NULL, err) < 0 ||
		    end(em, false, err) < 0 || end(em, false, err) < 0)
			return -1;
	}
	if (end(em, true, err) < 0)
		return -1;
	yaml_document_end_event_initialize(&ev, 1);
	if (emit(em, &ev, err) < 0)
		return -1;
	yaml_stream_end_event_initialize(&ev);
	return emit(em, &ev, err);
}

int imgf_cidata_user_data(const struct imgf_cidata *c, struct strbuf *out, struct imgf_error **err)
{
	yaml_emitter_t em;
	yaml_emitter_initialize(&em);
	yaml_emitter_set_output(&em, write_handler, out);
	yaml_emitter_set_unicode(&em, 1);
	yaml_emitter_set_width(&em, -1);
	/* cloud-init recognises user-data by this first line; YAML sees a comment. */
	strbuf_addstr(out, "#cloud-config\n");
	int r = emit_document(&em, c, err);
	yaml_emitter_delete(&em);
	return r;
}

int imgf_cidata_write_iso(const struct imgf_cidata *c, const char *iso_path,
			  struct imgf_error **err)
{
	_cleanup_free_ char *dir = NULL;
	if (make_temp_dir("imgforge-cidata", &dir, err) < 0)
		return -1;
	struct strbuf ud = STRBUF_INIT;
	_cleanup_free_ char *ud_path = path_join(dir, "user-data");
	_cleanup_free_ char *md_path = path_join(dir, "meta-data");
	_cleanup_free_ char *md = xasprintf("instance-id: %s\nlocal-hostname: %s\n",
					    c->instance_id ? c->instance_id : "imgforge",
					    c->hostname ? c->hostname : "imgforge");
	int r = imgf_cidata_user_data(c, &ud, err);
	if (r == 0)
		r = write_file_atomic(ud_path, ud.buf, ud.len, 0644, err);
	if (r == 0)
		r = write_file_atomic(md_path, md, strlen(md), 0644, err);
	if (r == 0) {
		char *argv[] = {"genisoimage", "-quiet", "-output", (char *)iso_path,
				"-volid",      "cidata", "-joliet", "-rock",
				ud_path,       md_path,	 NULL};
		r = imgf_run(argv, NULL, err);
		if (r < 0)
			unlink(iso_path);
	}
	strbuf_release(&ud);
	rm_rf(dir, NULL);
	return r;
}

char **imgf_cidata_default_keys(void)
{
	char **keys = xcalloc(1, sizeof(*keys));
	const char *env = getenv("SSH_PUBLIC_KEY");
	if (env && *env)
		return strv_push(keys, xstrdup(env));
	const char *home = getenv("HOME");
	if (!home)
		return keys;
	_cleanup_free_ char *pattern = xasprintf("%s/.ssh/id_*.pub", home);
	glob_t g;
	if (glob(pattern, 0, NULL, &g) == 0) {
		for (size_t i = 0; i < g.gl_pathc; i++) {
			char *text = NULL;
			if (read_file(g.gl_pathv[i], 64 * 1024, &text, NULL, NULL) == 0) {
				struct strbuf sb = STRBUF_INIT;
				strbuf_addstr(&sb, text);
				strbuf_trim_trailing_newline(&sb);
				keys = strv_push(keys, strbuf_detach(&sb, NULL));
				free(text);
			}
		}
		globfree(&g);
	}
	return keys;
}
