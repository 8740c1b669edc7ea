/* NoCloud user-data: written with libyaml, read back as YAML, keys and scripts intact. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cidata.h"
#include "config.h"
#include "error.h"
#include "fsutil.h"
#include "strbuf.h"
#include "test.h"
#include "util.h"

TEST(user_data_is_cloud_config_yaml_with_user_keys_and_script)
{
	char *keys[] = {"ssh-ed25519 AAAAC3Nza test@host", "ssh-rsa AAAAB3 'quoted' #x", NULL};
	struct imgf_cidata c = {
		.instance_id = "i-1",
		.hostname = "node-1",
		.user = "capv",
		.ssh_keys = keys,
		.boot_script = "echo \"a: b\" > /dev/ttyS0\nsystemctl is-active containerd\n",
	};
	struct strbuf sb = STRBUF_INIT;
	struct imgf_error *err = NULL;
	CHECK(imgf_cidata_user_data(&c, &sb, &err) == 0);
	CHECK(str_has_prefix(sb.buf, "#cloud-config\n"));
	json_t *doc = NULL;
	CHECK(imgf_config_parse_yaml("user-data", sb.buf, sb.len, &doc, &err) == 0);
	CHECK_STR(json_string_value(json_object_get(doc, "hostname")), "node-1");
	json_t *users = json_object_get(doc, "users");
	CHECK(json_array_size(users) == 2);
	CHECK_STR(json_string_value(json_array_get(users, 0)), "default");
	json_t *u = json_array_get(users, 1);
	CHECK_STR(json_string_value(json_object_get(u, "name")), "capv");
	json_t *k = json_object_get(u, "ssh_authorized_keys");
	CHECK_STR(json_string_value(json_array_get(k, 1)), "ssh-rsa AAAAB3 'quoted' #x");
	json_t *run = json_array_get(json_object_get(doc, "runcmd"), 0);
	CHECK_STR(json_string_value(json_array_get(run, 0)), "/bin/sh");
	CHECK_STR(json_string_value(json_array_get(run, 2)), c.boot_script);
	json_decref(doc);
	strbuf_release(&sb);
	imgf_error_free(err);
}

TEST(user_data_without_user_has_no_users)
{
	struct imgf_cidata c = {.hostname = "h"};
	struct strbuf sb = STRBUF_INIT;
	struct imgf_error *err = NULL;
	CHECK(imgf_cidata_user_data(&c, &sb, &err) == 0);
	json_t *doc = NULL;
	CHECK(imgf_config_parse_yaml("user-data", sb.buf, sb.len, &doc, &err) == 0);
	CHECK(json_object_get(doc, "users") == NULL);
	CHECK(json_object_get(doc, "runcmd") == NULL);
	json_decref(doc);
	strbuf_release(&sb);
}

TEST(seed_iso_has_volume_id_cidata)
{
	if (access("/usr/bin/genisoimage", X_OK) != 0)
		SKIP("genisoimage is not installed");
	char *dir = NULL;
	struct imgf_error *err = NULL;
	CHECK(make_temp_dir("imgf-cidata", &dir, &err) == 0);
	char *iso = path_join(dir, "seed.iso");
	struct imgf_cidata c = {.hostname = "h", .boot_script = "true"};
	CHECK(imgf_cidata_write_iso(&c, iso, &err) == 0);
	char *text = NULL;
	size_t len = 0;
	CHECK(read_file(iso, 0, &text, &len, &err) == 0);
	/* ISO 9660 primary volume descriptor at 32 KiB: type 1, "CD001", volume id at +40. */
	CHECK(len > 32768 + 80 && memcmp(text + 32768 + 1, "CD001", 5) == 0 &&
	      memcmp(text + 32768 + 40, "cidata", 6) == 0);
	CHECK(text && memmem(text, len, "#cloud-config", 13) != NULL);
	free(text);
	free(iso);
	rm_rf(dir, NULL);
	free(dir);
	imgf_error_free(err);
}
