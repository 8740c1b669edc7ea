/*
 * Running an external tool on the host, for the few jobs no library does (qemu-img). No shell:
 * argv[0] is looked up in PATH and the arguments are passed as they are. The command line is
 * logged first; the tool's stderr is captured, logged at debug level, and its last lines end
 * the error message when the tool fails.
 */
#ifndef IMGF_RUN_H
#define IMGF_RUN_H

struct imgf_error;
struct strbuf;

/*
 * Run argv (NULL-terminated) to completion with stdin from /dev/null. With `out` the tool's
 * stdout is appended to it (out->max caps it: more is an error); without, stdout is treated
 * like stderr. Fails when the tool cannot be started, exits non-zero or dies of a signal, and
 * when imgf_interrupted is set while it runs (the tool gets SIGTERM).
 */
int imgf_run(char *const *argv, struct strbuf *out, struct imgf_error **err);

#endif
