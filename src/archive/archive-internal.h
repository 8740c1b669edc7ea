/*
 * What the parts of the tar code share: archive-check.c (member names, the tree an archive
 * builds, and the check every member read goes through), archive.c (reading and extraction)
 * and archive-write.c (the tar writer, which copies members of other archives too). Not for
 * other users.
 */
#ifndef IMGF_ARCHIVE_INTERNAL_H
#define IMGF_ARCHIVE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct archive;
struct archive_entry;
struct imgf_error;

#define COPY_BUF_SIZE (64 * 1024)

/* ---- Path names ---- */

enum path_problem {
	PATH_OK,
	PATH_EMPTY,
	PATH_ABSOLUTE,
	PATH_DOTDOT,
	PATH_ESCAPES,
};

/* "is empty", "is absolute", ...: the end of a message "path %s". */
const char *imgf_archive_path_problem_text(enum path_problem p);
/* A relative name, normalised ("./a//b/" -> "a/b") into *out, or what is wrong with it. */
enum path_problem imgf_archive_normalize_path(const char *raw, char **out);

/* ---- The tree an archive builds, as far as the checks need to know it ---- */

struct tree_node {
	struct tree_node *next;
	char *name;
	char *symlink; /* target, for AE_IFLNK */
	mode_t type;   /* AE_IFREG, AE_IFDIR or AE_IFLNK; a hardlink counts as AE_IFREG */
	bool emitted;  /* imgf_tar_add_archive: copied to the output */
};

struct tree {
	struct tree_node **buckets;
	size_t nbuckets;
	struct tree_node **order; /* every node, in the order members arrived */
	size_t count, alloc;
	int dirfd;	  /* extraction: the destination, where symlinks are looked up; else -1 */
	size_t max_len;	  /* longest name allowed: what fits in PATH_MAX after the destination */
	bool absolute_ok; /* IMGF_EXTRACT_ABSOLUTE_SYMLINKS: "/x" stays in the target's root */
};

/* dirfd: the destination when extracting, else -1; dest_len: the length of its path. */
void imgf_archive_tree_init(struct tree *tree, int dirfd, size_t dest_len);
void imgf_archive_tree_release(struct tree *tree);
struct tree_node *imgf_archive_tree_find(const struct tree *tree, const char *name);

/* ---- Checking members ---- */

struct member {
	const char *raw;     /* the name as in the archive, for messages */
	char *name;	     /* normalised and stripped */
	char *hardlink;	     /* normalised and stripped target, for a hardlink */
	const char *symlink; /* target, for a symlink */
	mode_t type;	     /* AE_IFREG, AE_IFDIR or AE_IFLNK */
};

void imgf_archive_member_release(struct member *m);

/* "archive 'PATH': member 'NAME': WHY", control bytes escaped; returns -1. */
__attribute__((format(printf, 4, 5))) int imgf_archive_refuse(struct imgf_error **err,
							      const char *archive_path,
							      const char *member, const char *fmt,
							      ...);

/* The one gate every member read goes through: 0 to use it, 1 to skip it, <0 refused. */
int imgf_archive_check_member(struct tree *tree, const char *archive_path, struct archive_entry *e,
			      int strip, struct member *m, struct imgf_error **err);

/* Once all members are in, every symlink again (a later member can redirect one); <0 when
 * one escapes, which extraction also removes from the destination. */
int imgf_archive_tree_recheck_symlinks(struct tree *tree, const char *archive_path,
				       struct imgf_error **err);

/* ---- Reading ---- */

/* What an archive has expanded to so far: a small compressed tar can expand without end. */
struct expansion {
	uint64_t bytes, entries;
	uint64_t max_size, max_entries;
};

/* Empty, with the caps of imgf_archive_set_limits. */
void imgf_archive_expansion_init(struct expansion *x);
/* Count one member with its declared size; <0 past a cap. */
int imgf_archive_expansion_member(struct expansion *x, const char *archive_path,
				  struct archive_entry *e, struct imgf_error **err);

/* Any format and compression libarchive reads; NULL on error. */
struct archive *imgf_archive_open_read(const char *path, struct imgf_error **err);
/* 1 with *e set, 0 at the end, <0 on error (mtree input is refused). */
int imgf_archive_next_member(struct archive *a, const char *path, struct archive_entry **e,
			     struct imgf_error **err);
/* A fresh entry for a checked member: name, type, permissions, size and link, nothing else. */
struct archive_entry *imgf_archive_member_entry(const struct member *m, struct archive_entry *in,
						const char *name, const char *hardlink,
						mode_t perm);

#endif
