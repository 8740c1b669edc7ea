/*
 * The checks every member read goes through, for extraction (archive.c) and for copying into
 * a tar (archive-write.c) alike: its name, its type, and the tree the members so far have
 * built, so that no name, symlink or hardlink leads outside the destination.
 */
#include <archive_entry.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive-internal.h"
#include "error.h"
#include "strbuf.h"
#include "util.h"

/* Linux's MAXSYMLINKS: a path that needs more symlinks than this does not resolve. */
#define MAX_SYMLINK_HOPS 40

/* ---- Path names ---- */

const char *imgf_archive_path_problem_text(enum path_problem p)
{
	switch (p) {
	case PATH_EMPTY:
		return "is empty";
	case PATH_ABSOLUTE:
		return "is absolute";
	case PATH_DOTDOT:
		return "contains '..'";
	case PATH_ESCAPES:
		return "escapes the destination";
	case PATH_OK:
		break;
	}
	return "is fine";
}

/*
 * A relative name with "." and empty components dropped ("./a//b/" -> "a/b"). Absolute
 * names and names with any ".." are refused (PATH_ESCAPES when ".." climbs above the top).
 */
enum path_problem imgf_archive_normalize_path(const char *raw, char **out)
{
	*out = NULL;
	if (raw[0] == '/')
		return PATH_ABSOLUTE;
	struct strbuf sb = STRBUF_INIT;
	long depth = 0;
	bool dotdot = false;
	for (const char *p = raw; *p;) {
		const char *slash = strchrnul(p, '/');
		size_t len = (size_t)(slash - p);
		if (len == 2 && p[0] == '.' && p[1] == '.') {
			dotdot = true;
			if (--depth < 0) {
				strbuf_release(&sb);
				return PATH_ESCAPES;
			}
		} else if (len > 0 && !(len == 1 && p[0] == '.')) {
			depth++;
			if (sb.len)
				strbuf_addch(&sb, '/');
			strbuf_add(&sb, p, len);
		}
		p = *slash ? slash + 1 : slash;
	}
	if (dotdot || sb.len == 0) {
		strbuf_release(&sb);
		return dotdot ? PATH_DOTDOT : PATH_EMPTY;
	}
	*out = strbuf_detach(&sb, NULL);
	return PATH_OK;
}

/* A normalised name without its first n components, or NULL when nothing is left. */
static const char *strip_components(const char *name, int n)
{
	const char *p = name;
	for (int i = 0; i < n; i++) {
		const char *slash = strchr(p, '/');
		if (!slash)
			return NULL;
		p = slash + 1;
	}
	return p;
}

/* The directory part of a normalised name, "" at the top. */
static char *parent_dir(const char *name)
{
	const char *slash = strrchr(name, '/');
	return slash ? xstrndup(name, (size_t)(slash - name)) : xstrdup("");
}

/* ---- The tree an archive builds, as far as the checks need to know it ---- */

void imgf_archive_tree_init(struct tree *tree, int dirfd, size_t dest_len)
{
	tree->max_len = dest_len + 2 < PATH_MAX ? PATH_MAX - 2 - dest_len : 0;
	tree->nbuckets = 64;
	tree->buckets = xcalloc(tree->nbuckets, sizeof(*tree->buckets));
	tree->order = NULL;
	tree->count = tree->alloc = 0;
	tree->dirfd = dirfd;
	tree->absolute_ok = false;
}

void imgf_archive_tree_release(struct tree *tree)
{
	for (size_t i = 0; i < tree->count; i++) {
		free(tree->order[i]->name);
		free(tree->order[i]->symlink);
		free(tree->order[i]);
	}
	free(tree->order);
	free(tree->buckets);
	tree->order = tree->buckets = NULL;
}

/* FNV-1a, one byte at a time so that a walk along a name hashes each prefix on the way. */
#define HASH_INIT 14695981039346656037ULL
static uint64_t hash_step(uint64_t h, char c)
{
	return (h ^ (unsigned char)c) * 1099511628211ULL;
}

static uint64_t hash_name(const char *s)
{
	uint64_t h = HASH_INIT;
	for (; *s; s++)
		h = hash_step(h, *s);
	return h;
}

static struct tree_node *tree_find_hashed(const struct tree *tree, const char *name, uint64_t h)
{
	struct tree_node *n = tree->buckets[h & (tree->nbuckets - 1)];
	while (n && strcmp(n->name, name) != 0)
		n = n->next;
	return n;
}

struct tree_node *imgf_archive_tree_find(const struct tree *tree, const char *name)
{
	return tree_find_hashed(tree, name, hash_name(name));
}

static void tree_grow(struct tree *tree)
{
	size_t nb = tree->nbuckets * 2;
	struct tree_node **b = xcalloc(nb, sizeof(*b));
	for (size_t i = 0; i < tree->nbuckets; i++) {
		struct tree_node *n = tree->buckets[i];
		while (n) {
			struct tree_node *next = n->next;
			size_t h = (size_t)(hash_name(n->name) & (nb - 1));
			n->next = b[h];
			b[h] = n;
			n = next;
		}
	}
	free(tree->buckets);
	tree->buckets = b;
	tree->nbuckets = nb;
}

/* Record a member; a later member of the same name replaces the earlier one. */
static struct tree_node *tree_set(struct tree *tree, const char *name, mode_t type,
				  const char *symlink)
{
	struct tree_node *n = imgf_archive_tree_find(tree, name);
	if (!n) {
		if (tree->count >= tree->nbuckets)
			tree_grow(tree);
		size_t h = (size_t)(hash_name(name) & (tree->nbuckets - 1));
		n = xcalloc(1, sizeof(*n));
		n->name = xstrdup(name);
		n->next = tree->buckets[h];
		tree->buckets[h] = n;
		ALLOC_GROW(tree->order, tree->count + 1, tree->alloc);
		tree->order[tree->count++] = n;
	}
	free(n->symlink);
	n->symlink = symlink ? xstrdup(symlink) : NULL;
	n->type = type;
	n->emitted = false;
	return n;
}

/*
 * Whether `path` (symlink-free up to its last component) is a symlink: on disk under the
 * destination when extracting, else among the members so far. *target is NULL when the
 * link could not be read, which callers treat as an escape.
 */
static bool tree_symlink(const struct tree *tree, const char *path, char **target)
{
	*target = NULL;
	if (tree->dirfd < 0) {
		struct tree_node *n = imgf_archive_tree_find(tree, path);
		if (!n || n->type != AE_IFLNK)
			return false;
		*target = xstrdup(n->symlink);
		return true;
	}
	struct stat st;
	if (fstatat(tree->dirfd, path, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISLNK(st.st_mode))
		return false;
	size_t size = (size_t)st.st_size + 1;
	char *buf = xmalloc(size);
	ssize_t n = readlinkat(tree->dirfd, path, buf, size);
	if (n < 0 || (size_t)n >= size) {
		free(buf);
		return true;
	}
	buf[n] = '\0';
	*target = buf;
	return true;
}

/* The first symlink among the parent directories of `name`, or NULL. */
static char *tree_symlink_parent(const struct tree *tree, const char *name)
{
	_cleanup_free_ char *path = xstrdup(name);
	uint64_t h = HASH_INIT;
	for (char *s = path; *s; h = hash_step(h, *s), s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		bool is_link;
		if (tree->dirfd >= 0) {
			struct stat st;
			if (fstatat(tree->dirfd, path, &st, AT_SYMLINK_NOFOLLOW) < 0)
				return NULL; /* nothing exists below a missing directory */
			is_link = S_ISLNK(st.st_mode);
		} else {
			struct tree_node *n = tree_find_hashed(tree, path, h);
			is_link = n && n->type == AE_IFLNK;
		}
		if (is_link)
			return xstrdup(path);
		*s = '/';
	}
	return NULL;
}

enum resolve {
	RESOLVE_INSIDE,
	RESOLVE_ESCAPES,
	RESOLVE_LOOP,
};

/*
 * Where `target`, read in directory `dir` of the tree, leads: following the symlinks the
 * tree holds, since "x -> d/up/.." escapes when d/up is itself "-> ..".
 */
static enum resolve tree_resolve(const struct tree *tree, const char *dir, const char *target)
{
	if (target[0] == '/')
		return tree->absolute_ok ? RESOLVE_INSIDE : RESOLVE_ESCAPES;
	struct strbuf cur = STRBUF_INIT;
	strbuf_addstr(&cur, dir);
	char *rest = xstrdup(target);
	const char *p = rest;
	int hops = 0;
	enum resolve ret = RESOLVE_INSIDE;
	while (*p) {
		const char *slash = strchrnul(p, '/');
		size_t len = (size_t)(slash - p);
		const char *next = *slash ? slash + 1 : slash;
		if (len == 0 || (len == 1 && p[0] == '.')) {
			p = next;
			continue;
		}
		if (len == 2 && p[0] == '.' && p[1] == '.') {
			if (cur.len == 0) {
				ret = RESOLVE_ESCAPES;
				break;
			}
			char *last = strrchr(cur.buf, '/');
			cur.len = last ? (size_t)(last - cur.buf) : 0;
			cur.buf[cur.len] = '\0';
			p = next;
			continue;
		}
		size_t old_len = cur.len;
		if (cur.len)
			strbuf_addch(&cur, '/');
		strbuf_add(&cur, p, len);
		char *link;
		if (!tree_symlink(tree, cur.buf, &link)) {
			p = next;
			continue;
		}
		if (link && link[0] == '/' && tree->absolute_ok && hops < MAX_SYMLINK_HOPS) {
			free(link); /* the rest resolves in the target's root: inside */
			break;
		}
		if (++hops > MAX_SYMLINK_HOPS || !link || link[0] == '/') {
			ret = hops > MAX_SYMLINK_HOPS ? RESOLVE_LOOP : RESOLVE_ESCAPES;
			free(link);
			break;
		}
		cur.len = old_len;
		cur.buf[cur.len] = '\0';
		char *expanded = xasprintf("%s/%s", link, next);
		free(link);
		free(rest);
		rest = expanded;
		p = rest;
	}
	free(rest);
	strbuf_release(&cur);
	return ret;
}

/* ---- Checking members ---- */

void imgf_archive_member_release(struct member *m)
{
	free(m->name);
	free(m->hardlink);
	m->name = m->hardlink = NULL;
}

/* Names come from the archive: escape control bytes so a message cannot drive a terminal. */
static char *printable(const char *s)
{
	struct strbuf sb = STRBUF_INIT;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c == 0x7f)
			strbuf_addf(&sb, "\\x%02x", c);
		else
			strbuf_addch(&sb, c);
	}
	return strbuf_detach(&sb, NULL);
}

int imgf_archive_refuse(struct imgf_error **err, const char *archive_path, const char *member,
			const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *why = xvasprintf(fmt, ap);
	va_end(ap);
	_cleanup_free_ char *msg =
		xasprintf("archive '%s': member '%s': %s", archive_path, member, why);
	_cleanup_free_ char *clean = printable(msg);
	return imgf_error_set(err, IMGF_EXIT_FAIL, "%s", clean);
}

static const char *type_refusal(mode_t type)
{
	switch (type) {
	case AE_IFREG:
	case AE_IFDIR:
	case AE_IFLNK:
		return NULL;
	case AE_IFCHR:
		return "character devices are not allowed";
	case AE_IFBLK:
		return "block devices are not allowed";
	case AE_IFIFO:
		return "fifos are not allowed";
	case AE_IFSOCK:
		return "sockets are not allowed";
	}
	return "unsupported member type";
}

/*
 * The one gate every member read goes through, for extraction and for copying alike.
 * Returns 0 to use the member (m filled, and recorded in the tree), 1 to skip it (the
 * top directory "./", or nothing left after stripping), <0 when it is refused.
 */
int imgf_archive_check_member(struct tree *tree, const char *archive_path, struct archive_entry *e,
			      int strip, struct member *m, struct imgf_error **err)
{
	const char *raw = archive_entry_pathname(e);
	const char *hardlink = archive_entry_hardlink(e);
	const char *symlink = archive_entry_symlink(e);
	mode_t type = archive_entry_filetype(e);
	m->raw = raw ? raw : "";

	_cleanup_free_ char *norm = NULL;
	enum path_problem pp = imgf_archive_normalize_path(m->raw, &norm);
	if (pp == PATH_EMPTY && type == AE_IFDIR && !hardlink)
		return 1;
	if (pp != PATH_OK)
		return imgf_archive_refuse(err, archive_path, m->raw, "path %s",
					   imgf_archive_path_problem_text(pp));
	/* Longer would not fit a system call, and would make libarchive chdir() to reach it. */
	if (strlen(norm) > tree->max_len)
		return imgf_archive_refuse(err, archive_path, m->raw, "path is too long");

	_cleanup_free_ char *link_norm = NULL;
	if (hardlink) {
		pp = imgf_archive_normalize_path(hardlink, &link_norm);
		if (pp != PATH_OK)
			return imgf_archive_refuse(err, archive_path, m->raw,
						   "hardlink target '%s' %s", hardlink,
						   imgf_archive_path_problem_text(pp));
		type = AE_IFREG;
	} else {
		const char *why = type_refusal(type);
		if (why)
			return imgf_archive_refuse(err, archive_path, m->raw, "%s", why);
	}
	if (type == AE_IFLNK) {
		if (!symlink || !*symlink)
			return imgf_archive_refuse(err, archive_path, m->raw,
						   "symlink target is empty");
		if (strlen(symlink) >= PATH_MAX)
			return imgf_archive_refuse(err, archive_path, m->raw,
						   "symlink target is too long");
		if (symlink[0] == '/' && !tree->absolute_ok)
			return imgf_archive_refuse(err, archive_path, m->raw,
						   "symlink target '%s' is absolute", symlink);
	}

	const char *name = strip_components(norm, strip);
	if (!name)
		return 1;
	_cleanup_free_ char *via = tree_symlink_parent(tree, name);
	if (via)
		return imgf_archive_refuse(err, archive_path, m->raw,
					   "path goes through symlink '%s'", via);

	if (hardlink) {
		const char *target = strip_components(link_norm, strip);
		struct tree_node *n = target ? imgf_archive_tree_find(tree, target) : NULL;
		if (!n)
			return imgf_archive_refuse(err, archive_path, m->raw,
						   "hardlink target '%s' is not an earlier member",
						   hardlink);
		if (n->type != AE_IFREG)
			return imgf_archive_refuse(err, archive_path, m->raw,
						   "hardlink target '%s' is not a regular file",
						   hardlink);
		_cleanup_free_ char *link_via = tree_symlink_parent(tree, target);
		if (link_via)
			return imgf_archive_refuse(err, archive_path, m->raw,
						   "hardlink target '%s' goes through symlink '%s'",
						   hardlink, link_via);
		m->hardlink = xstrdup(target);
	}
	if (type == AE_IFLNK) {
		_cleanup_free_ char *dir = parent_dir(name);
		switch (tree_resolve(tree, dir, symlink)) {
		case RESOLVE_INSIDE:
			break;
		case RESOLVE_ESCAPES:
			return imgf_archive_refuse(err, archive_path, m->raw,
						   "symlink target '%s' escapes the destination",
						   symlink);
		case RESOLVE_LOOP:
			return imgf_archive_refuse(
				err, archive_path, m->raw,
				"symlink target '%s' has too many levels of symlinks", symlink);
		}
		m->symlink = symlink;
	}
	m->name = xstrdup(name);
	m->type = type;
	tree_set(tree, name, type, type == AE_IFLNK ? symlink : NULL);
	return 0;
}

/*
 * Each symlink was checked when it arrived, but a later one can redirect it ("x -> d/up/.."
 * then "d/up -> .."), so once all members are in, check every symlink again. When
 * extracting, an escaping link is removed from the destination as well as reported.
 */
int imgf_archive_tree_recheck_symlinks(struct tree *tree, const char *archive_path,
				       struct imgf_error **err)
{
	int ret = 0;
	for (size_t i = 0; i < tree->count; i++) {
		struct tree_node *n = tree->order[i];
		if (n->type != AE_IFLNK)
			continue;
		_cleanup_free_ char *dir = parent_dir(n->name);
		enum resolve r = tree_resolve(tree, dir, n->symlink);
		if (r == RESOLVE_INSIDE)
			continue;
		struct stat st;
		if (tree->dirfd >= 0 &&
		    fstatat(tree->dirfd, n->name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISLNK(st.st_mode))
			unlinkat(tree->dirfd, n->name, 0);
		ret = imgf_archive_refuse(err, archive_path, n->name, "symlink target '%s' %s",
					  n->symlink,
					  r == RESOLVE_LOOP ? "has too many levels of symlinks"
							    : "escapes the destination");
	}
	return ret;
}
