/*
 * provisioners/cni.c: the destination reaches the target as a word of its own, never as shell
 * text. The target here runs commands on the host (in a scratch directory) and takes tars
 * without unpacking them: enough to see what the step asks the target to run.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "error.h"
#include "fetch.h"
#include "provisioner.h"
#include "target.h"
#include "test.h"
#include "util.h"

extern const struct imgf_provisioner_ops imgf_cni_provisioner;

struct host_target {
	struct imgf_target t;
	const char *cwd; /* commands run here, so anything they create is seen */
};

static int host_exec(struct imgf_target *t, const struct imgf_exec *x, int *status,
		     struct imgf_error **err)
{
	struct host_target *ht = (struct host_target *)t;
	pid_t pid = fork();
	if (pid < 0)
		return imgf_error_errno(err, errno, "fork");
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		if (chdir(ht->cwd) < 0 || null < 0)
			_exit(126);
		dup2(null, 1);
		dup2(null, 2);
		execvp(x->argv[0], x->argv);
		_exit(127);
	}
	int st;
	if (waitpid(pid, &st, 0) < 0)
		return imgf_error_errno(err, errno, "waitpid");
	*status = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
	return 0;
}

static int host_put_tar(struct imgf_target *t, const char *tar_path, const char *dest_dir,
			struct imgf_error **err)
{
	return 0;
}

static int host_get_tar(struct imgf_target *t, const char *path, const char *out_tar,
			struct imgf_error **err)
{
	return imgf_error_set(err, IMGF_EXIT_FAIL, "not supported");
}

static const struct imgf_target_ops host_ops = {
	.exec = host_exec,
	.put_tar = host_put_tar,
	.get_tar = host_get_tar,
};

/* Run the cni step with `destination` against the host target; the step's status. */
static int run_cni(const char *dir, const char *destination, struct imgf_error **err)
{
	_cleanup_free_ char *tgz = path_join(dir, "cni.tgz");
	_cleanup_free_ char *cmd = xasprintf("cd '%s' && mkdir -p src && echo x >src/bridge && "
					     "tar -czf cni.tgz -C src bridge",
					     dir);
	CHECK(system(cmd) == 0);
	struct imgf_input in = {.name = "cni-plugins", .path = tgz};
	struct imgf_step s = {
		.ops = &imgf_cni_provisioner,
		.label = "cni",
		.cfg = json_pack("{s:s}", "destination", destination),
		.inputs = &in,
		.ninputs = 1,
	};
	_cleanup_free_ char *cwd = path_join(dir, "cwd");
	mkdir(cwd, 0755);
	struct host_target ht = {
		.t = {.ops = &host_ops, .name = "host", .stage_dir = (char *)dir},
		.cwd = cwd,
	};
	int r = imgf_cni_provisioner.validate(&s, err);
	if (r == 0)
		r = imgf_cni_provisioner.run(&s, &ht.t, err);
	json_decref(s.cfg);
	return r;
}

TEST(cni_destination_is_not_shell_text)
{
	_cleanup_free_ char *dir = NULL;
	CHECK(make_temp_dir("imgf-test-cni", &dir, NULL) == 0);
	/* Both directories exist, so an unquoted `ls DIR/d;touch INJECTED` would succeed and
	 * then run touch; a quoted one lists the odd directory and nothing else. */
	_cleanup_free_ char *plain = path_join(dir, "d");
	_cleanup_free_ char *odd = path_join(dir, "d;touch INJECTED");
	CHECK(mkdir(plain, 0755) == 0);
	CHECK(mkdir(odd, 0755) == 0);
	struct imgf_error *err = NULL;
	CHECK(run_cni(dir, odd, &err) == 0);
	if (err)
		fprintf(stderr, "  %s\n", err->msg);
	imgf_error_free(err);
	_cleanup_free_ char *injected = path_join(dir, "cwd/INJECTED");
	CHECK(access(injected, F_OK) != 0);
	rm_rf(dir, NULL);
}

TEST(cni_destination_with_command_substitution_runs_nothing)
{
	_cleanup_free_ char *dir = NULL;
	CHECK(make_temp_dir("imgf-test-cni", &dir, NULL) == 0);
	struct imgf_error *err = NULL;
	/* "/$(…)" lists "/" when the shell expands it; as one word it is a missing directory. */
	CHECK(run_cni(dir, "/$(touch INJECTED)", &err) < 0);
	CHECK_ERR(err, "exited with status");
	imgf_error_free(err);
	_cleanup_free_ char *injected = path_join(dir, "cwd/INJECTED");
	CHECK(access(injected, F_OK) != 0);
	rm_rf(dir, NULL);
}
