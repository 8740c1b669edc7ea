/*
 * The provisioners on the directory target (tests/unit/dirtarget.h), with no Docker and no
 * libguestfs: where each puts its files, with which modes, what it enables, what its scripts
 * do inside the target, and how it fails. Inputs are small stand-ins made here (shell scripts
 * that print a version, tars of them), set as the step's verified inputs as the engine would
 * after fetching; the tests are about placement and errors, not the real binaries.
 */
#include "archive.h"
#include "build.h"
#include "contract.h"
#include "fsutil.h"
#include "provisioners/common.h"
#include "provisioner.h"
#include "rootfs.h"

extern const struct imgf_provisioner_ops imgf_shell_provisioner, imgf_file_provisioner,
	imgf_containerd_provisioner, imgf_runc_provisioner, imgf_cni_provisioner,
	imgf_crictl_provisioner, imgf_kubernetes_provisioner, imgf_kind_provisioner,
	imgf_sysprep_provisioner, imgf_packages_provisioner;

/* The contract of a build with none of its variables set. */
static const struct imgf_contract no_contract;

/* A step of one provisioner against a fresh root, with the variables its data files use. */
struct fixture {
	struct rootfs r;
	struct imgf_config cfg;
	struct imgf_build build;
	struct imgf_step s;
};

static void fixture_init(struct fixture *f, const struct imgf_provisioner_ops *ops)
{
	f->cfg = (struct imgf_config){0};
	f->cfg.vars = json_pack(
		"{s:s,s:s,s:s,s:s,s:s,s:s}", "pause_image", "registry.example/pause:test",
		"kindnetd_image", "registry.example/kindnetd:test", "local_path_provisioner_image",
		"registry.example/local-path-provisioner:test", "local_path_helper_image",
		"registry.example/local-path-helper:test", "flannel_image",
		"registry.example/flannel:test", "flannel_cni_plugin_image",
		"registry.example/flannel-cni-plugin:test");
	f->build = (struct imgf_build){.config = &f->cfg, .contract = &no_contract};
	f->s = (struct imgf_step){
		.ops = ops,
		.build = &f->build,
		.label = xstrdup(ops->name),
		.where = xasprintf("test: provisioners[0] (%s)", ops->name),
	};
}

static void fixture_release(struct fixture *f)
{
	for (size_t i = 0; i < f->s.ninputs; i++)
		imgf_input_release(&f->s.inputs[i]);
	free(f->s.inputs);
	free(f->s.label);
	free(f->s.where);
	json_decref(f->s.cfg);
	json_decref(f->s.raw);
	json_decref(f->s.staged);
	json_decref(f->cfg.vars);
	rootfs_release(&f->r);
}

/* The fixture's root, or skip. A macro, since SKIP returns from the test. */
#define FIXTURE_INIT(f, ops)              \
	do {                              \
		ROOTFS_INIT(&(f)->r);     \
		fixture_init((f), (ops)); \
	} while (0)

/*
 * Set the step's config from JSON, validate it and declare its inputs; then each declared
 * input gets the host file named in `paths` (name, path, ..., NULL), as if fetched.
 */
static int step_config(struct fixture *f, const char *json, struct imgf_error **err, ...)
{
	json_error_t jerr;
	f->s.cfg = json_loads(json, 0, &jerr);
	if (!f->s.cfg) {
		fprintf(stderr, "  bad test JSON: %s\n", jerr.text);
		CHECK(!"test JSON parses");
		return -1;
	}
	f->s.raw = json_incref(f->s.cfg);
	if (f->s.ops->validate && f->s.ops->validate(&f->s, err) < 0)
		return -1;
	if (f->s.ops->inputs && f->s.ops->inputs(&f->s, err) < 0)
		return -1;
	va_list ap;
	va_start(ap, err);
	const char *name;
	while ((name = va_arg(ap, const char *))) {
		const char *path = va_arg(ap, const char *);
		bool found = false;
		for (size_t i = 0; i < f->s.ninputs; i++) {
			if (!strcmp(f->s.inputs[i].name, name)) {
				f->s.inputs[i].path = xstrdup(path);
				found = true;
			}
		}
		CHECK(found);
	}
	va_end(ap);
	return 0;
}

static int step_run(struct fixture *f, struct imgf_error **err)
{
	return f->s.ops->run(&f->s, f->r.t, err);
}

/* A host file under the fixture's temp dir (newly allocated path). */
static char *host_file(struct fixture *f, const char *name, const char *text, mode_t mode)
{
	char *p = path_join(f->r.tmp, name);
	rootfs_write_host(p, text, mode);
	return p;
}

/* A stand-in binary: a script that prints `says`. */
static char *stand_in(struct fixture *f, const char *name, const char *says)
{
	_cleanup_free_ char *text = xasprintf("#!/bin/sh\necho '%s'\n", says);
	return host_file(f, name, text, 0755);
}

/* A tar (uncompressed) at NAME.tar of host files: member, host path, ..., NULL. */
static char *tar_of(struct fixture *f, const char *name, ...)
{
	char *out = xasprintf("%s/%s.tar", f->r.tmp, name);
	struct imgf_error *err = NULL;
	struct imgf_tar *w = imgf_tar_open(out, &err);
	CHECK(w != NULL);
	va_list ap;
	va_start(ap, name);
	const char *member;
	while (w && (member = va_arg(ap, const char *))) {
		const char *path = va_arg(ap, const char *);
		CHECK(imgf_tar_add_file(w, path, member, 0, 0, 0, &err) == 0);
	}
	va_end(ap);
	if (w) {
		CHECK(imgf_tar_close(w, &err) == 0);
		imgf_tar_free(w);
	}
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	imgf_error_free(err);
	return out;
}

static void report(struct imgf_error *err)
{
	if (err)
		fprintf(stderr, "  error: %s\n", err->msg);
}

/* The path in the root exists with this type and permission bits. */
static bool has(const struct fixture *f, const char *path, mode_t type, mode_t perm)
{
	struct stat st;
	if (rootfs_lstat(&f->r, path, &st) < 0) {
		fprintf(stderr, "  missing in the target: %s\n", path);
		return false;
	}
	if ((st.st_mode & S_IFMT) != type || (perm && (st.st_mode & 07777) != perm)) {
		fprintf(stderr, "  %s: mode %o, want type %o perm %o\n", path, st.st_mode, type,
			perm);
		return false;
	}
	return true;
}

static bool absent(const struct fixture *f, const char *path)
{
	struct stat st;
	return rootfs_lstat(&f->r, path, &st) < 0;
}

/* The file in the root contains `needle`. */
static bool contains(const struct fixture *f, const char *path, const char *needle)
{
	_cleanup_free_ char *text = rootfs_read(&f->r, path);
	bool ok = text && strstr(text, needle);
	if (!ok)
		fprintf(stderr, "  %s: want '%s' in '%s'\n", path, needle, text ? text : "(none)");
	return ok;
}

static bool links_to(const struct fixture *f, const char *path, const char *target)
{
	_cleanup_free_ char *l = rootfs_readlink(&f->r, path);
	bool ok = l && !strcmp(l, target);
	if (!ok)
		fprintf(stderr, "  %s: links to '%s', want '%s'\n", path, l ? l : "(nothing)",
			target);
	return ok;
}

/* ---- file ---------------------------------------------------------------------------- */

TEST(file_puts_inline_content_with_its_mode_owned_by_root)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_file_provisioner);
	struct imgf_error *err = NULL;
	CHECK(step_config(&f,
			  "{\"destination\":\"/etc/app/motd\",\"content\":\"hello\\n\","
			  "\"mode\":\"0600\"}",
			  &err, NULL) == 0);
	CHECK(step_run(&f, &err) == 0);
	report(err);
	CHECK(has(&f, "/etc/app/motd", S_IFREG, 0600));
	_cleanup_free_ char *text = rootfs_read(&f.r, "/etc/app/motd");
	CHECK_STR(text, "hello\n");
	struct stat st;
	CHECK(rootfs_lstat(&f.r, "/etc/app/motd", &st) == 0 && st.st_uid == 0 && st.st_gid == 0);
	imgf_error_free(err);
	fixture_release(&f);
}

TEST(file_puts_a_host_directory_tree_keeping_modes)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_file_provisioner);
	_cleanup_free_ char *src = path_join(f.r.tmp, "tree");
	_cleanup_free_ char *sub = path_join(src, "sub");
	CHECK(mkdir(src, 0755) == 0 && mkdir(sub, 0750) == 0);
	free(host_file(&f, "tree/run.sh", "#!/bin/sh\n", 0755));
	free(host_file(&f, "tree/sub/conf", "k=v\n", 0640));
	_cleanup_free_ char *cfg =
		xasprintf("{\"source\":\"%s\",\"destination\":\"/opt/tree\"}", src);
	struct imgf_error *err = NULL;
	CHECK(step_config(&f, cfg, &err, NULL) == 0);
	CHECK(step_run(&f, &err) == 0);
	report(err);
	CHECK(has(&f, "/opt/tree/run.sh", S_IFREG, 0755));
	CHECK(has(&f, "/opt/tree/sub", S_IFDIR, 0750));
	CHECK(contains(&f, "/opt/tree/sub/conf", "k=v"));
	imgf_error_free(err);
	fixture_release(&f);
}

TEST(file_downloads_a_target_file_into_a_host_directory)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_file_provisioner);
	_cleanup_free_ char *in_root = rootfs_path(&f.r, "/etc/hostname");
	rootfs_write_host(in_root, "node-1\n", 0644);
	_cleanup_free_ char *dest = path_join(f.r.tmp, "out");
	_cleanup_free_ char *cfg = xasprintf(
		"{\"direction\":\"download\",\"source\":\"/etc/hostname\",\"destination\":\"%s\"}",
		dest);
	struct imgf_error *err = NULL;
	CHECK(step_config(&f, cfg, &err, NULL) == 0);
	CHECK(step_run(&f, &err) == 0);
	report(err);
	_cleanup_free_ char *got_path = path_join(dest, "hostname");
	char *got = NULL;
	size_t len;
	CHECK(read_file(got_path, 0, &got, &len, NULL) == 0);
	CHECK_STR(got, "node-1\n");
	free(got);
	imgf_error_free(err);
	fixture_release(&f);
}

TEST(file_download_of_a_missing_path_fails_naming_it)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_file_provisioner);
	_cleanup_free_ char *dest = path_join(f.r.tmp, "out");
	_cleanup_free_ char *cfg = xasprintf(
		"{\"direction\":\"download\",\"source\":\"/etc/nope\",\"destination\":\"%s\"}",
		dest);
	struct imgf_error *err = NULL;
	CHECK(step_config(&f, cfg, &err, NULL) == 0);
	CHECK(step_run(&f, &err) < 0);
	CHECK_ERR(err, "download '/etc/nope' from directory");
	imgf_error_free(err);
	fixture_release(&f);
}

/* ---- shell --------------------------------------------------------------------------- */

TEST(shell_inline_runs_in_the_target_with_its_env)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_shell_provisioner);
	struct imgf_error *err = NULL;
	CHECK(step_config(&f,
			  "{\"inline\":[\"echo \\\"$GREETING\\\" > /greeting\","
			  "\"test -x /bin/busybox\"],\"env\":[\"GREETING=hi there\"]}",
			  &err, NULL) == 0);
	CHECK(step_run(&f, &err) == 0);
	report(err);
	_cleanup_free_ char *g = rootfs_read(&f.r, "/greeting");
	CHECK_STR(g, "hi there\n");
	imgf_error_free(err);
	fixture_release(&f);
}

TEST(shell_inline_stops_at_the_first_failing_command)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_shell_provisioner);
	struct imgf_error *err = NULL;
	CHECK(step_config(&f, "{\"inline\":[\"false\",\"touch /after\"]}", &err, NULL) == 0);
	CHECK(step_run(&f, &err) < 0);
	CHECK_ERR(err, "'false' exited with status 1 in directory");
	CHECK(absent(&f, "/after"));
	imgf_error_free(err);
	fixture_release(&f);
}

TEST(shell_script_is_copied_in_run_and_removed)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_shell_provisioner);
	_cleanup_free_ char *script =
		host_file(&f, "setup.sh", "echo \"$0\" > /ran\nexit 0\n", 0644);
	_cleanup_free_ char *cfg = xasprintf("{\"script\":\"%s\"}", script);
	struct imgf_error *err = NULL;
	CHECK(step_config(&f, cfg, &err, NULL) == 0);
	CHECK(step_run(&f, &err) == 0);
	report(err);
	CHECK(contains(&f, "/ran", "/tmp/imgforge-script-0"));
	CHECK(absent(&f, "/tmp/imgforge-script-0"));
	imgf_error_free(err);
	fixture_release(&f);
}

TEST(shell_validate_refuses_env_without_a_value)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_shell_provisioner);
	struct imgf_error *err = NULL;
	CHECK(step_config(&f, "{\"inline\":[\"true\"],\"env\":[\"NOVALUE\"]}", &err, NULL) < 0);
	CHECK_ERR(err, "env: 'NOVALUE' is not NAME=VALUE");
	imgf_error_free(err);
	fixture_release(&f);
}

/* ---- containerd ---------------------------------------------------------------------- */

static char *containerd_tar(struct fixture *f, const char *version)
{
	_cleanup_free_ char *says =
		xasprintf("containerd github.com/containerd/containerd %s", version);
	_cleanup_free_ char *bin = stand_in(f, "containerd", says);
	_cleanup_free_ char *ctr = stand_in(f, "ctr", "ctr");
	return tar_of(f, "containerd", "bin/containerd", bin, "bin/ctr", ctr, NULL);
}

TEST(containerd_places_binaries_unit_config_and_enables_the_unit)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_containerd_provisioner);
	_cleanup_free_ char *tar = containerd_tar(&f, "v2.0.0");
	struct imgf_error *err = NULL;
	CHECK(step_config(&f,
			  "{\"url\":\"https://x/c.tgz\",\"checksum\":\"sha256:00\",\"version\":"
			  "\"v2.0.0\"}",
			  &err, "containerd", tar, NULL) == 0);
	CHECK(step_run(&f, &err) == 0);
	report(err);
	CHECK(has(&f, "/usr/local/bin/containerd", S_IFREG, 0755));
	CHECK(has(&f, "/usr/local/bin/ctr", S_IFREG, 0755));
	CHECK(absent(&f, "/usr/local/bin/bin"));
	CHECK(contains(&f, "/etc/systemd/system/containerd.service", "ExecStart="));
	CHECK(contains(&f, "/etc/containerd/config.toml", "registry.example/pause:test"));
	CHECK(links_to(&f, "/etc/systemd/system/multi-user.target.wants/containerd.service",
		       "/etc/systemd/system/containerd.service"));
	imgf_error_free(err);
	fixture_release(&f);
}

TEST(containerd_with_config_and_enable_off_writes_neither)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_containerd_provisioner);
	_cleanup_free_ char *tar = containerd_tar(&f, "v2.0.0");
	struct imgf_error *err = NULL;
	CHECK(step_config(&f,
			  "{\"url\":\"https://x/c.tgz\",\"checksum\":\"sha256:00\","
			  "\"config\":false,\"enable\":false}",
			  &err, "containerd", tar, NULL) == 0);
	CHECK(step_run(&f, &err) == 0);
	report(err);
	CHECK(has(&f, "/usr/local/bin/containerd", S_IFREG, 0755));
	CHECK(absent(&f, "/etc/containerd/config.toml"));
	CHECK(absent(&f, "/etc/systemd/system/multi-user.target.wants/containerd.service"));
	imgf_error_free(err);
	fixture_release(&f);
}

TEST(containerd_version_mismatch_fails_naming_both)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_containerd_provisioner);
	_cleanup_free_ char *tar = containerd_tar(&f, "v1.7.0");
	struct imgf_error *err = NULL;
	CHECK(step_config(&f,
			  "{\"url\":\"https://x/c.tgz\",\"checksum\":\"sha256:00\",\"version\":"
			  "\"v2.0.0\"}",
			  &err, "containerd", tar, NULL) == 0);
	CHECK(step_run(&f, &err) < 0);
	CHECK_ERR(err, "says 'containerd github.com/containerd/containerd v1.7.0', which is not "
		       "version 'v2.0.0'");
	imgf_error_free(err);
	fixture_release(&f);
}

TEST(containerd_validate_needs_url_and_checksum_for_a_tarball)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_containerd_provisioner);
	struct imgf_error *err = NULL;
	CHECK(step_config(&f, "{\"source\":\"tarball\"}", &err, NULL) < 0);
	CHECK_ERR(err, "a tarball source needs 'url' and 'checksum'");
	imgf_error_free(err);
	fixture_release(&f);
}

/* Quick (the step cache keeps its state only at the end of a run of quick steps): from the
 * release tarball, a verified download unpacked; from a package, apt runs. */
TEST(containerd_is_quick_from_its_release_tarball_and_not_from_a_package)
{
	const struct imgf_provisioner_ops *ops = &imgf_containerd_provisioner;
	struct imgf_step s = {.ops = ops};
	CHECK(ops->quick != NULL);
	s.cfg = json_pack("{s:s,s:s}", "url", "https://x/containerd.tar.gz", "checksum",
			  "sha256:00");
	CHECK(ops->quick(&s));
	json_decref(s.cfg);
	s.cfg = json_pack("{s:s}", "source", "tarball");
	CHECK(ops->quick(&s));
	json_decref(s.cfg);
	s.cfg = json_pack("{s:s}", "source", "package");
	CHECK(!ops->quick(&s));
	json_decref(s.cfg);
	/* the steps that run apt or another program at length are not */
	CHECK(imgf_packages_provisioner.quick == NULL);
	CHECK(imgf_kubernetes_provisioner.quick == NULL);
	CHECK(imgf_shell_provisioner.quick == NULL);
}

/* ---- runc ---------------------------------------------------------------------------- */

TEST(runc_installs_the_binary_executable_and_checks_its_version)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_runc_provisioner);
	_cleanup_free_ char *bin = stand_in(&f, "runc.amd64", "runc version 1.2.3");
	CHECK(chmod(bin, 0600) == 0); /* the step makes it executable, whatever the cache has */
	struct imgf_error *err = NULL;
	CHECK(step_config(&f,
			  "{\"url\":\"https://x/runc\",\"checksum\":\"sha256:00\",\"version\":"
			  "\"1.2.3\"}",
			  &err, "runc", bin, NULL) == 0);
	CHECK(step_run(&f, &err) == 0);
	report(err);
	CHECK(has(&f, "/usr/local/sbin/runc", S_IFREG, 0755));
	imgf_error_free(err);
	fixture_release(&f);
}

TEST(runc_binary_that_fails_to_run_fails_the_step)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_runc_provisioner);
	_cleanup_free_ char *bin = host_file(&f, "runc.amd64", "#!/bin/sh\nexit 3\n", 0755);
	struct imgf_error *err = NULL;
	CHECK(step_config(&f,
			  "{\"url\":\"https://x/runc\",\"checksum\":\"sha256:00\","
			  "\"destination\":\"/usr/bin/runc\"}",
			  &err, "runc", bin, NULL) == 0);
	CHECK(step_run(&f, &err) < 0);
	CHECK_ERR(err, "'/usr/bin/runc' exited with status 3");
	CHECK(has(&f, "/usr/bin/runc", S_IFREG, 0755));
	imgf_error_free(err);
	fixture_release(&f);
}

/* ---- cni ----------------------------------------------------------------------------- */

static char *cni_tar(struct fixture *f)
{
	_cleanup_free_ char *p = stand_in(f, "plugin", "plugin");
	return tar_of(f, "cni", "./bridge", p, "./loopback", p, "./host-local", p, NULL);
}

TEST(cni_places_only_the_listed_plugins)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_cni_provisioner);
	_cleanup_free_ char *tar = cni_tar(&f);
	struct imgf_error *err = NULL;
	CHECK(step_config(&f,
			  "{\"url\":\"https://x/cni.tgz\",\"checksum\":\"sha256:00\","
			  "\"plugins\":[\"bridge\",\"loopback\"]}",
			  &err, "cni-plugins", tar, NULL) == 0);
	CHECK(step_run(&f, &err) == 0);
	report(err);
	CHECK(has(&f, "/opt/cni/bin/bridge", S_IFREG, 0755));
	CHECK(has(&f, "/opt/cni/bin/loopback", S_IFREG, 0755));
	CHECK(absent(&f, "/opt/cni/bin/host-local"));
	imgf_error_free(err);
	fixture_release(&f);
}

TEST(cni_plugin_missing_from_the_tarball_fails_naming_it)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_cni_provisioner);
	_cleanup_free_ char *tar = cni_tar(&f);
	struct imgf_error *err = NULL;
	CHECK(step_config(&f,
			  "{\"url\":\"https://x/cni.tgz\",\"checksum\":\"sha256:00\","
			  "\"plugins\":[\"bridge\",\"portmap\"]}",
			  &err, "cni-plugins", tar, NULL) == 0);
	CHECK(step_run(&f, &err) < 0);
	CHECK_ERR(err, "member 'portmap': not found");
	CHECK(absent(&f, "/opt/cni/bin/bridge")); /* nothing half-put */
	imgf_error_free(err);
	fixture_release(&f);
}

/* The destination reaches the target as a word of its own, never as shell text. */
TEST(cni_destination_is_not_shell_text)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_cni_provisioner);
	_cleanup_free_ char *tar = cni_tar(&f);
	/* An unquoted `ls /d;touch /INJECTED` would succeed and then run touch. */
	_cleanup_free_ char *plain = rootfs_path(&f.r, "/d");
	CHECK(mkdir(plain, 0755) == 0);
	struct imgf_error *err = NULL;
	CHECK(step_config(&f,
			  "{\"url\":\"https://x/cni.tgz\",\"checksum\":\"sha256:00\","
			  "\"destination\":\"/d;touch /INJECTED\"}",
			  &err, "cni-plugins", tar, NULL) == 0);
	CHECK(step_run(&f, &err) == 0);
	report(err);
	CHECK(has(&f, "/d;touch /INJECTED/bridge", S_IFREG, 0755));
	CHECK(absent(&f, "/INJECTED"));
	imgf_error_free(err);
	fixture_release(&f);
}

TEST(cni_destination_with_command_substitution_runs_nothing)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_cni_provisioner);
	_cleanup_free_ char *tar = cni_tar(&f);
	struct imgf_error *err = NULL;
	CHECK(step_config(&f,
			  "{\"url\":\"https://x/cni.tgz\",\"checksum\":\"sha256:00\","
			  "\"destination\":\"/$(touch /INJECTED)\"}",
			  &err, "cni-plugins", tar, NULL) == 0);
	CHECK(step_run(&f, &err) == 0);
	report(err);
	CHECK(has(&f, "/$(touch /INJECTED)/bridge", S_IFREG, 0755));
	CHECK(absent(&f, "/INJECTED"));
	imgf_error_free(err);
	fixture_release(&f);
}

/* ---- crictl -------------------------------------------------------------------------- */

TEST(crictl_places_the_binary_and_its_config)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_crictl_provisioner);
	_cleanup_free_ char *bin = stand_in(&f, "crictl", "crictl version v1.31.1");
	_cleanup_free_ char *readme = host_file(&f, "README", "not wanted\n", 0644);
	_cleanup_free_ char *tar = tar_of(&f, "crictl", "crictl", bin, "README", readme, NULL);
	struct imgf_error *err = NULL;
	CHECK(step_config(&f,
			  "{\"url\":\"https://x/crictl.tgz\",\"checksum\":\"sha256:00\","
			  "\"version\":\"v1.31.1\"}",
			  &err, "crictl", tar, NULL) == 0);
	CHECK(step_run(&f, &err) == 0);
	report(err);
	CHECK(has(&f, "/usr/local/bin/crictl", S_IFREG, 0755));
	CHECK(absent(&f, "/usr/local/bin/README"));
	CHECK(contains(&f, "/etc/crictl.yaml", "runtime-endpoint"));
	imgf_error_free(err);
	fixture_release(&f);
}

TEST(crictl_tarball_without_crictl_fails)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_crictl_provisioner);
	_cleanup_free_ char *readme = host_file(&f, "README", "no binary\n", 0644);
	_cleanup_free_ char *tar = tar_of(&f, "crictl", "README", readme, NULL);
	struct imgf_error *err = NULL;
	CHECK(step_config(&f, "{\"url\":\"https://x/crictl.tgz\",\"checksum\":\"sha256:00\"}", &err,
			  "crictl", tar, NULL) == 0);
	CHECK(step_run(&f, &err) < 0);
	CHECK_ERR(err, "member 'crictl': not found");
	CHECK(absent(&f, "/etc/crictl.yaml"));
	imgf_error_free(err);
	fixture_release(&f);
}

/* ---- kubernetes ---------------------------------------------------------------------- */

/* The staged binaries (what the stage hook records), stand-ins printing these versions. */
static void kube_stage(struct fixture *f, const char *kubelet_version)
{
	_cleanup_free_ char *kubeadm = stand_in(f, "kubeadm", "v1.31.2");
	_cleanup_free_ char *says = xasprintf("Kubernetes %s", kubelet_version);
	_cleanup_free_ char *kubelet = stand_in(f, "kubelet", says);
	_cleanup_free_ char *kubectl = stand_in(f, "kubectl", "Client Version: v1.31.2");
	f->s.staged = json_pack("{s:s,s:s,s:s}", "kubeadm", kubeadm, "kubelet", kubelet, "kubectl",
				kubectl);
}

TEST(kubernetes_places_binaries_kubelet_unit_dropin_and_enables_it)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_kubernetes_provisioner);
	struct imgf_error *err = NULL;
	CHECK(step_config(&f,
			  "{\"source\":\"https://dl.example/release/v1.31.2/bin/linux/amd64\","
			  "\"version\":\"v1.31.2\"}",
			  &err, NULL) == 0);
	kube_stage(&f, "v1.31.2");
	CHECK(step_run(&f, &err) == 0);
	report(err);
	CHECK(has(&f, "/usr/bin/kubeadm", S_IFREG, 0755));
	CHECK(has(&f, "/usr/bin/kubelet", S_IFREG, 0755));
	CHECK(has(&f, "/usr/bin/kubectl", S_IFREG, 0755));
	CHECK(has(&f, "/etc/kubernetes/manifests", S_IFDIR, 0755));
	CHECK(contains(&f, "/etc/systemd/system/kubelet.service", "ExecStart=/usr/bin/kubelet"));
	CHECK(contains(&f, "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
		       "KUBELET_KUBECONFIG_ARGS"));
	CHECK(links_to(&f, "/etc/systemd/system/multi-user.target.wants/kubelet.service",
		       "/etc/systemd/system/kubelet.service"));
	imgf_error_free(err);
	fixture_release(&f);
}

TEST(kubernetes_without_kubelet_writes_no_unit)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_kubernetes_provisioner);
	struct imgf_error *err = NULL;
	CHECK(step_config(&f,
			  "{\"source\":\"https://dl.example/release/v1.31.2/bin/linux/amd64\","
			  "\"version\":\"v1.31.2\",\"binaries\":[\"kubectl\"]}",
			  &err, NULL) == 0);
	kube_stage(&f, "v1.31.2");
	CHECK(step_run(&f, &err) == 0);
	report(err);
	CHECK(has(&f, "/usr/bin/kubectl", S_IFREG, 0755));
	CHECK(absent(&f, "/usr/bin/kubelet"));
	CHECK(absent(&f, "/etc/systemd/system/kubelet.service"));
	CHECK(absent(&f, "/etc/systemd/system/multi-user.target.wants/kubelet.service"));
	imgf_error_free(err);
	fixture_release(&f);
}

TEST(kubernetes_binary_of_another_version_fails_naming_it)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_kubernetes_provisioner);
	struct imgf_error *err = NULL;
	CHECK(step_config(&f,
			  "{\"source\":\"https://dl.example/release/v1.31.2/bin/linux/amd64\","
			  "\"version\":\"v1.31.2\"}",
			  &err, NULL) == 0);
	kube_stage(&f, "v1.30.0");
	CHECK(step_run(&f, &err) < 0);
	CHECK_ERR(err, "'kubelet --version' says 'Kubernetes v1.30.0', which is not version "
		       "'v1.31.2'");
	imgf_error_free(err);
	fixture_release(&f);
}

TEST(kubernetes_validate_refuses_an_unknown_binary)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_kubernetes_provisioner);
	struct imgf_error *err = NULL;
	CHECK(step_config(&f,
			  "{\"source\":\"https://dl.example/release/v1.31.2/bin/linux/amd64\","
			  "\"version\":\"v1.31.2\",\"binaries\":[\"kube-proxy\"]}",
			  &err, NULL) < 0);
	CHECK_ERR(err, "binaries: unknown binary 'kube-proxy'");
	imgf_error_free(err);
	fixture_release(&f);
}

/* ---- packages ------------------------------------------------------------------------ */

/* Stand-ins for apt's tools: one package, jq, with an epoch in its version. */
static void apt_stand_ins(struct fixture *f, const char *madison_version)
{
	static const char apt_get[] =
		"#!/bin/sh\n"
		"dir=\n"
		"for a; do case $a in Dir::Cache::Archives=*) dir=${a#*=} ;; esac; done\n"
		"case \" $* \" in\n"
		"*' --print-uris '*) echo 'Reading package lists...'\n"
		"  echo \"'http://deb.example/debian/pool/main/j/jq/jq_1.6-2.1_amd64.deb' "
		"jq_1%3a1.6-2.1_amd64.deb 5 SHA256:0000\" ;;\n"
		"*' install '*) printf 'a deb\\n' >\"$dir/jq_1%3a1.6-2.1_amd64.deb\" ;;\n"
		"esac\n";
	struct {
		const char *name, *text;
	} tools[] = {
		{"apt-get", apt_get},
		{"dpkg-query", "#!/bin/sh\nexit 1\n"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(tools); i++) {
		_cleanup_free_ char *path = xasprintf("/bin/%s", tools[i].name);
		_cleanup_free_ char *p = rootfs_path(&f->r, path);
		rootfs_write_host(p, tools[i].text, 0755);
	}
	_cleanup_free_ char *madison = xasprintf(
		"#!/bin/sh\n"
		"echo '        jq | %s | http://deb.example/debian bookworm/main amd64 Packages'\n"
		"echo '        jq | %s | http://deb.example/debian bookworm/main Sources'\n",
		madison_version, madison_version);
	_cleanup_free_ char *p = rootfs_path(&f->r, "/bin/apt-cache");
	rootfs_write_host(p, madison, 0755);
}

TEST(packages_records_each_downloaded_deb_with_version_sha256_and_archive)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_packages_provisioner);
	apt_stand_ins(&f, "1:1.6-2.1");
	f.build.inputs = json_array();
	struct imgf_error *err = NULL;
	CHECK(step_config(&f, "{\"packages\": [\"jq\"], \"manager\": \"apt\"}", &err, NULL) == 0);
	CHECK(step_run(&f, &err) == 0);
	report(err);
	CHECK(json_array_size(f.build.inputs) == 1);
	json_t *e = json_array_get(f.build.inputs, 0);
	CHECK_STR(json_string_value(json_object_get(e, "name")), "deb:jq:amd64");
	CHECK_STR(json_string_value(json_object_get(e, "kind")), "deb");
	CHECK_STR(json_string_value(json_object_get(e, "package")), "jq");
	CHECK_STR(json_string_value(json_object_get(e, "version")), "1:1.6-2.1");
	CHECK_STR(json_string_value(json_object_get(e, "architecture")), "amd64");
	/* the file's own sha256 ("a deb\n"), not the index's */
	CHECK_STR(json_string_value(json_object_get(e, "sha256")),
		  "11f77417336937428376a47b1a665232e9d102797be862bafe8e75acfce8b103");
	CHECK_STR(json_string_value(json_object_get(e, "url")),
		  "http://deb.example/debian/pool/main/j/jq/jq_1.6-2.1_amd64.deb");
	CHECK_STR(json_string_value(json_object_get(e, "archive")),
		  "http://deb.example/debian bookworm/main");
	CHECK(absent(&f, "/var/cache/imgforge-debs")); /* nothing of the record is left */
	imgf_error_free(err);
	json_decref(f.build.inputs);
	fixture_release(&f);
}

TEST(packages_record_parse_refuses_a_bad_line_naming_it)
{
	static const char *sum = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	_cleanup_free_ char *good =
		xasprintf("jq\t1.6\tamd64\t%s\thttp://a/jq.deb\thttp://a x/main\n", sum);
	json_t *list = NULL;
	struct imgf_error *err = NULL;
	CHECK(prov_packages_parse(good, &list, &err) == 0);
	CHECK(json_array_size(list) == 1);
	json_decref(list);
	CHECK(prov_packages_parse("", &list, &err) == 0 && json_array_size(list) == 0);
	json_decref(list);
	_cleanup_free_ char *short_sum =
		xasprintf("%sjq\t1.6\tamd64\tabc\thttp://a/jq.deb\tx\n", good);
	CHECK(prov_packages_parse(short_sum, &list, &err) < 0);
	CHECK_ERR(err, "package record line 2: 'abc': not a sha256");
	imgf_error_free(err);
	err = NULL;
	CHECK(prov_packages_parse("jq\t1.6\tamd64\n", &list, &err) < 0);
	CHECK_ERR(err, "package record line 1: expected package, version, architecture, sha256");
	imgf_error_free(err);
}

/* ---- sysprep ------------------------------------------------------------------------- */

TEST(sysprep_empties_machine_id_and_removes_keys_logs_history_and_tmp)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_sysprep_provisioner);
	static const char *const dirs[] = {
		"/etc/ssh",
		"/var",
		"/var/log",
		"/var/log/apt",
		"/var/lib",
		"/var/lib/dbus",
		"/var/tmp",
		"/var/lib/containerd",
		"/var/lib/containerd/io.containerd.grpc.v1.introspection",
		"/var/cache",
		"/var/cache/ldconfig",
		"/var/lib/systemd",
		"/etc/iscsi",
		"/usr",
		"/usr/lib",
		"/usr/lib/open-iscsi",
		"/etc/nvme",
		"/var/lib/dhcp",
		"/var/lib/cloud",
		"/var/lib/cloud/data",
		"/var/lib/cloud/seed"};
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		_cleanup_free_ char *d = rootfs_path(&f.r, dirs[i]);
		CHECK(mkdir(d, 0755) == 0 || errno == EEXIST); /* the root has /usr/lib */
	}
	static const char *const files[] = {
		"/etc/machine-id",
		"/var/lib/dbus/machine-id",
		"/etc/ssh/ssh_host_rsa_key",
		"/var/log/apt/term.log",
		"/var/log/syslog.1",
		"/root/.bash_history",
		"/tmp/junk",
		"/var/tmp/junk",
		"/var/log/wtmp",
		"/etc/ssh/sshd_config",
		"/var/lib/containerd/io.containerd.grpc.v1.introspection/uuid",
		"/var/cache/ldconfig/aux-cache",
		"/var/lib/systemd/random-seed",
		"/var/lib/systemd/credential.secret",
		"/etc/iscsi/initiatorname.iscsi",
		"/etc/nvme/hostnqn",
		"/etc/nvme/hostid",
		"/var/lib/dhcp/dhclient.eth0.leases",
		"/var/lib/cloud/data/instance-id",
		"/var/lib/cloud/seed/meta-data",
	};
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		_cleanup_free_ char *p = rootfs_path(&f.r, files[i]);
		rootfs_write_host(p, "something\n", 0644);
	}
	/* Debian's: iscsid makes a name before it starts when the file says so */
	_cleanup_free_ char *checks = rootfs_path(&f.r, "/usr/lib/open-iscsi/startup-checks.sh");
	rootfs_write_host(checks, "if grep -q \"^GenerateName=yes\" $NAMEFILE ; then\n", 0755);
	struct imgf_error *err = NULL;
	CHECK(step_config(&f, "{}", &err, NULL) == 0);
	CHECK(step_run(&f, &err) == 0);
	report(err);
	CHECK(has(&f, "/etc/iscsi/initiatorname.iscsi", S_IFREG, 0600));
	CHECK(contains(&f, "/etc/iscsi/initiatorname.iscsi", "\nGenerateName=yes\n"));
	_cleanup_free_ char *iname = rootfs_read(&f.r, "/etc/iscsi/initiatorname.iscsi");
	CHECK(iname && !strstr(iname, "something"));
	CHECK(absent(&f, "/var/lib/systemd/random-seed"));
	CHECK(absent(&f, "/var/lib/systemd/credential.secret"));
	CHECK(absent(&f, "/etc/nvme/hostnqn"));
	CHECK(absent(&f, "/etc/nvme/hostid"));
	CHECK(absent(&f, "/var/lib/dhcp/dhclient.eth0.leases"));
	CHECK(absent(&f, "/var/lib/cloud/data"));
	CHECK(has(&f, "/var/lib/cloud/seed/meta-data", S_IFREG, 0644)); /* the seed stays */
	CHECK(has(&f, "/etc/machine-id", S_IFREG, 0));
	_cleanup_free_ char *mid = rootfs_read(&f.r, "/etc/machine-id");
	CHECK_STR(mid, "");
	_cleanup_free_ char *wtmp = rootfs_read(&f.r, "/var/log/wtmp");
	CHECK_STR(wtmp, "");
	CHECK(absent(&f, "/var/lib/dbus/machine-id"));
	CHECK(absent(&f, "/var/lib/containerd/io.containerd.grpc.v1.introspection/uuid"));
	CHECK(absent(&f, "/var/cache/ldconfig/aux-cache"));
	CHECK(absent(&f, "/etc/ssh/ssh_host_rsa_key"));
	CHECK(absent(&f, "/var/log/apt/term.log"));
	CHECK(absent(&f, "/var/log/syslog.1"));
	CHECK(absent(&f, "/root/.bash_history"));
	CHECK(absent(&f, "/tmp/junk"));
	CHECK(absent(&f, "/var/tmp/junk"));
	CHECK(has(&f, "/etc/ssh/sshd_config", S_IFREG, 0644)); /* config stays */
	CHECK(has(&f, "/var/log/apt", S_IFDIR, 0));
	imgf_error_free(err);
	fixture_release(&f);
}

TEST(sysprep_removes_the_iscsi_initiator_name_where_iscsid_makes_one_when_missing)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_sysprep_provisioner);
	_cleanup_free_ char *d = rootfs_path(&f.r, "/etc/iscsi");
	CHECK(mkdir(d, 0755) == 0);
	_cleanup_free_ char *p = rootfs_path(&f.r, "/etc/iscsi/initiatorname.iscsi");
	rootfs_write_host(p, "InitiatorName=iqn.1994-05.com.redhat:1234\n", 0644);
	struct imgf_error *err = NULL;
	CHECK(step_config(&f, "{}", &err, NULL) == 0);
	CHECK(step_run(&f, &err) == 0);
	report(err);
	CHECK(absent(&f, "/etc/iscsi/initiatorname.iscsi"));
	imgf_error_free(err);
	fixture_release(&f);
}

/* ---- kind ---------------------------------------------------------------------------- */

TEST(kind_places_entrypoint_version_manifests_and_sets_up_systemd)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_kind_provisioner);
	static const char *const dirs[] = {"/etc/systemd",
					   "/etc/systemd/system",
					   "/lib",
					   "/lib/systemd",
					   "/lib/systemd/system",
					   "/lib/systemd/system/multi-user.target.wants"};
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		_cleanup_free_ char *d = rootfs_path(&f.r, dirs[i]);
		CHECK(mkdir(d, 0755) == 0);
	}
	/* Units the earlier steps installed, and wants links kind strips or keeps. */
	_cleanup_free_ char *cu = rootfs_path(&f.r, "/etc/systemd/system/containerd.service");
	_cleanup_free_ char *ku = rootfs_path(&f.r, "/etc/systemd/system/kubelet.service");
	rootfs_write_host(cu, "[Service]\n", 0644);
	rootfs_write_host(ku, "[Service]\n", 0644);
	_cleanup_free_ char *strip =
		rootfs_path(&f.r, "/lib/systemd/system/multi-user.target.wants/getty.service");
	_cleanup_free_ char *keep = rootfs_path(
		&f.r, "/lib/systemd/system/multi-user.target.wants/systemd-update-utmp.service");
	CHECK(symlink("/lib/systemd/system/getty.service", strip) == 0);
	CHECK(symlink("/lib/systemd/system/systemd-update-utmp.service", keep) == 0);
	struct imgf_error *err = NULL;
	CHECK(step_config(&f, "{\"version\":\"v0.25.0\"}", &err, NULL) == 0);
	CHECK(step_run(&f, &err) == 0);
	report(err);
	CHECK(has(&f, "/usr/local/bin/entrypoint", S_IFREG, 0755));
	_cleanup_free_ char *v = rootfs_read(&f.r, "/kind/version");
	CHECK_STR(v, "v0.25.0\n");
	CHECK(contains(&f, "/kind/manifests/default-cni.yaml", "registry.example/kindnetd:test"));
	CHECK(contains(&f, "/kind/manifests/default-storage.yaml",
		       "registry.example/local-path-provisioner:test"));
	CHECK(links_to(&f, "/etc/systemd/system/multi-user.target.wants/containerd.service",
		       "/etc/systemd/system/containerd.service"));
	CHECK(links_to(&f, "/etc/systemd/system/multi-user.target.wants/kubelet.service",
		       "/etc/systemd/system/kubelet.service"));
	CHECK(links_to(&f, "/etc/systemd/system/getty.target", "/dev/null"));
	CHECK(links_to(&f, "/etc/systemd/system/systemd-logind.service", "/dev/null"));
	CHECK(links_to(&f, "/sbin/init", "/lib/systemd/systemd"));
	CHECK(contains(&f, "/etc/systemd/journald.conf.d/10-kind.conf", "ReadKMsg=no"));
	CHECK(absent(&f, "/lib/systemd/system/multi-user.target.wants/getty.service"));
	CHECK(has(&f, "/lib/systemd/system/multi-user.target.wants/systemd-update-utmp.service",
		  S_IFLNK, 0));
	CHECK(has(&f, "/etc/kubernetes/manifests", S_IFDIR, 0));
	imgf_error_free(err);
	fixture_release(&f);
}

TEST(kind_without_version_or_manifests_writes_neither)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_kind_provisioner);
	_cleanup_free_ char *sd = rootfs_path(&f.r, "/etc/systemd");
	_cleanup_free_ char *sds = rootfs_path(&f.r, "/etc/systemd/system");
	CHECK(mkdir(sd, 0755) == 0 && mkdir(sds, 0755) == 0);
	struct imgf_error *err = NULL;
	CHECK(step_config(&f, "{\"manifests\":false}", &err, NULL) == 0);
	CHECK(step_run(&f, &err) == 0);
	report(err);
	CHECK(has(&f, "/usr/local/bin/entrypoint", S_IFREG, 0755));
	CHECK(absent(&f, "/kind/version"));
	CHECK(absent(&f, "/kind/manifests"));
	imgf_error_free(err);
	fixture_release(&f);
}

TEST(kind_data_file_with_an_undefined_variable_fails_naming_it)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_kind_provisioner);
	json_object_del(f.cfg.vars, "kindnetd_image");
	struct imgf_error *err = NULL;
	CHECK(step_config(&f, "{}", &err, NULL) == 0);
	CHECK(step_run(&f, &err) < 0);
	CHECK_ERR(err, "kindnetd_image");
	CHECK(absent(&f, "/usr/local/bin/entrypoint")); /* the tar is put whole or not at all */
	imgf_error_free(err);
	fixture_release(&f);
}

TEST(kind_cni_flannel_is_the_default_cni_with_kinds_pod_subnet_field_kept)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_kind_provisioner);
	_cleanup_free_ char *sd = rootfs_path(&f.r, "/etc/systemd");
	_cleanup_free_ char *sds = rootfs_path(&f.r, "/etc/systemd/system");
	CHECK(mkdir(sd, 0755) == 0 && mkdir(sds, 0755) == 0);
	struct imgf_error *err = NULL;
	CHECK(step_config(&f, "{\"cni\":\"flannel\"}", &err, NULL) == 0);
	CHECK(step_run(&f, &err) == 0);
	report(err);
	const char *m = "/kind/manifests/default-cni.yaml";
	CHECK(contains(&f, m, "image: \"registry.example/flannel:test\""));
	CHECK(contains(&f, m, "image: \"registry.example/flannel-cni-plugin:test\""));
	/* kind renders the file as a Go template when it carries its marker. */
	CHECK(contains(&f, m, "would you kindly template this file"));
	CHECK(contains(&f, m, "\"Network\": \"{{ .PodSubnet }}\""));
	CHECK(!contains(&f, m, "registry.example/kindnetd"));
	imgf_error_free(err);
	fixture_release(&f);
}

TEST(kind_unknown_cni_is_refused_listing_the_known)
{
	struct fixture f;
	FIXTURE_INIT(&f, &imgf_kind_provisioner);
	struct imgf_error *err = NULL;
	CHECK(step_config(&f, "{\"cni\":\"calico\"}", &err, NULL) < 0);
	CHECK_ERR(err, "cni: unknown CNI 'calico' (known: 'kindnetd', 'flannel')");
	imgf_error_free(err);
	fixture_release(&f);
}
