/*
 * A target that is a directory on the host holding a system root: commands run chrooted into
 * it, in private mount and PID namespaces (a tmpfs /dev with null, zero, full, random, urandom
 * and tty bound in, /proc, /sys read-only, each only where the root has the directory); when
 * the command ends, everything it left running is killed and its mounts are gone. Paths in
 * the target resolve inside the root, absolute symlinks included. Needs root.
 *
 * Not a builder: nothing ships a directory as an artifact. It lets provisioners be tested
 * with no Docker Engine and no libguestfs (tests/unit/test-provisioners.c).
 */
#ifndef IMGF_DIRTARGET_H
#define IMGF_DIRTARGET_H

struct imgf_error;
struct imgf_target;

/*
 * A target on the existing directory `root`; staging tars go to `stage_dir` (not copied).
 * put_tar unpacks with the checked extraction, keeping modes, owners and setuid bits, and
 * absolute symlinks (they point into the root); get_tar names members by the path's last
 * component, as the docker and qemu targets do, with root owners.
 */
struct imgf_target *imgf_dir_target_new(const char *root, const char *stage_dir,
					struct imgf_error **err);
void imgf_dir_target_free(struct imgf_target *t);

#endif
