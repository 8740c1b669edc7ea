/* Pieces of builders/qemu.c exposed for unit tests (tests/unit/test-qemu.c). */
#ifndef IMGF_QEMU_INTERNAL_H
#define IMGF_QEMU_INTERNAL_H

struct imgf_error;

/*
 * A fresh work directory under $TMPDIR (else /var/tmp), often a shared one: 0700, so no
 * other user reads the disk being built; the boot check opens it to 0711 (search only)
 * while libvirt's qemu user runs from it. *out is set either way (free it).
 */
int imgf_qemu_work_dir_make(char **out, struct imgf_error **err);

#endif
