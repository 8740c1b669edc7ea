/*
 * What a Go program says about itself, read from its ELF file without running it:
 *   - the build information the go command embeds (section .go.buildinfo, Go 1.18+: the Go
 *     version and the module info, whose `build -ldflags=...` line holds the linker's -X
 *     flags; the go command leaves -ldflags out when it builds with -trimpath);
 *   - the strings the linker's -X flags wrote (`-X pkg.var=value`): the linker stores each as
 *     its own NUL-terminated string in .rodata, pointed at by the variable's string header in
 *     .data or .noptrdata, which is how a -trimpath build (Kubernetes' release, hack/
 *     kube-from-source.sh) still shows its version stamp.
 * Everything read is untrusted: every length and offset is bounds-checked.
 */
#ifndef IMGF_GOBUILDINFO_H
#define IMGF_GOBUILDINFO_H

#include <stddef.h>

struct imgf_error;

struct imgf_go_buildinfo {
	char *go_version; /* "go1.24.4" */
	char *path;	  /* the main package; NULL when the module info has none */
	char *goos;	  /* build settings; NULL when not recorded */
	char *goarch;
	char *ldflags; /* the -ldflags setting, unquoted; NULL when not recorded (-trimpath) */
};

void imgf_go_buildinfo_release(struct imgf_go_buildinfo *bi);

/* Parse the bytes of a .go.buildinfo section (Go 1.18+'s inline form). */
int imgf_go_buildinfo_parse(const void *sec, size_t len, struct imgf_go_buildinfo *bi,
			    struct imgf_error **err);

/*
 * The VALUE of the last `-X NAME=VALUE` (or `-X=NAME=VALUE`) in an -ldflags string, whose
 * fields may be quoted with '...' or "..." as the go command splits them; newly allocated, or
 * NULL when there is none.
 */
char *imgf_go_ldflags_x(const char *ldflags, const char *name);

struct imgf_go_binary {
	struct imgf_go_buildinfo bi;
	/* The version-like strings ("vN.N.N", optionally -pre or +build) the linker's -X flags
	 * wrote, each once, NULL-terminated. */
	char **stamps;
};

void imgf_go_binary_release(struct imgf_go_binary *b);

/*
 * Read a little-endian 64-bit ELF Go binary. A file that is not one, or has no Go 1.18+
 * build information, is an error naming the file and what was expected.
 */
int imgf_go_binary_read(const char *path, struct imgf_go_binary *out, struct imgf_error **err);

#endif
