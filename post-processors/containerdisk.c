/*
 * containerdisk: the disk artifact as a KubeVirt containerDisk, an OCI image whose one layer
 * holds the disk as qcow2 at /disk/NAME.qcow2, owned by the qemu user KubeVirt runs it as
 * (107:107) and readable only (0440), under a directory disk/ (0555, 107:107), nothing else:
 * the layout of KubeVirt's `FROM scratch` + `ADD --chown=107:107 DISK /disk/`. A raw disk is
 * converted to qcow2 first; a qcow2 goes in as it is.
 *
 * The image is written with imgforge's OCI writer (ociimage.h) as NAME.containerdisk.tar
 * (+ .sha256), an OCI image-layout tar (`skopeo copy oci-archive:...`, `ctr images import`
 * take it), and, unless `load` is false, loaded into the Docker Engine under `image` as the
 * docker builder loads its images (dockerengine.h): a docker-archive of the same layer and
 * config, so the engine's image ID is the layout's config digest. It is loaded before the
 * tar is put in place: a refused load leaves no file.
 *
 * Keys: image (required): the reference "[registry/]repo[:tag]" to name the image (tag
 * "latest" when none), no digest; load: whether to load it into the engine (default true).
 */
#include <stdlib.h>
#include <string.h>

#include "archive.h"
#include "config.h"
#include "diskout.h"
#include "dockerengine.h"
#include "error.h"
#include "fsutil.h"
#include "imageref.h"
#include "log.h"
#include "ociimage.h"
#include "postprocessor.h"
#include "qemuimg.h"
#include "util.h"

#define CD_UID 107 /* the qemu user of KubeVirt's virt-launcher */
#define CD_DIR "disk"

static const struct imgf_key cd_keys[] = {
	{"image", IMGF_KEY_STRING, true},
	{"load", IMGF_KEY_BOOL, false},
	{NULL, 0, false},
};

/* The image's name with its tag spelled out (newly allocated in *name). */
static int cd_image(json_t *cfg, char **name, struct imgf_error **err)
{
	const char *image = imgf_cfg_str(cfg, "image", "");
	struct imgf_image_ref ref;
	if (imgf_image_ref_parse(image, &ref, err) < 0)
		return imgf_error_prefix(err, "image");
	int r = 0;
	if (ref.digest)
		r = imgf_error_set(err, IMGF_EXIT_FAIL,
				   "image: '%s' has a digest; the image is named by a tag "
				   "(\"repo:tag\")",
				   image);
	else
		*name = ref.tag ? xstrdup(image) : xasprintf("%s:latest", image);
	imgf_image_ref_release(&ref);
	return r;
}

static int cd_validate(struct imgf_build *b, json_t *cfg, struct imgf_error **err)
{
	_cleanup_free_ char *name = NULL;
	return cd_image(cfg, &name, err);
}

/* The one layer: disk/ and disk/NAME.qcow2 (the qcow2 at `qcow2`). */
static int cd_layer(const char *qcow2, const char *member, const char *layer,
		    struct imgf_error **err)
{
	struct imgf_tar *t = imgf_tar_open(layer, err);
	if (!t)
		return -1;
	int r = imgf_tar_add_dir(t, CD_DIR, 0555, CD_UID, CD_UID, err);
	if (r == 0)
		r = imgf_tar_add_file(t, qcow2, member, 0440, CD_UID, CD_UID, err);
	if (r == 0)
		r = imgf_tar_close(t, err);
	imgf_tar_free(t);
	return r < 0 ? imgf_error_prefix(err, "layer '%s'", layer) : 0;
}

static int cd_write(struct imgf_pp_ctx *c, const struct imgf_disk_out *o, const char *name,
		    struct imgf_error **err)
{
	_cleanup_free_ char *qcow2 = NULL;
	const char *disk = o->disk;
	/* NAME as in NAME.containerdisk.tar */
	_cleanup_free_ char *base =
		xstrndup(o->file, strlen(o->file) - strlen(".containerdisk.tar"));
	if (strcmp(o->format, "qcow2") != 0) {
		qcow2 = xasprintf("%s/%s.qcow2", o->work, base);
		if (imgf_qemu_img_convert(o->disk, o->format, "qcow2", NULL, qcow2, err) < 0)
			return imgf_error_prefix(err, "disk '%s'", o->disk);
		disk = qcow2;
	}
	_cleanup_free_ char *member = xasprintf(CD_DIR "/%s.qcow2", base);
	_cleanup_free_ char *layer = path_join(o->work, "layer.tar");
	if (cd_layer(disk, member, layer, err) < 0)
		return -1;
	const char *layers[] = {layer, NULL};
	struct imgf_oci_image img = {.name = name, .arch = "amd64", .layers = layers};
	_cleanup_free_ char *id = NULL, *config = NULL;
	if (imgf_oci_write_config(&img, o->tmp, &id, &config, err) < 0)
		return -1;
	if (imgf_cfg_bool(c->cfg, "load", true)) {
		if (imgf_docker_load_image(config, layer, name, id, err) < 0)
			return imgf_error_prefix(err, "image '%s'", name);
		log_info("containerdisk: loaded '%s' (%s) into the docker engine", name, id);
	}
	return 0;
}

static int cd_run(struct imgf_pp_ctx *c, struct imgf_error **err)
{
	_cleanup_free_ char *name = NULL;
	if (cd_image(c->cfg, &name, err) < 0)
		return imgf_error_prefix(err, "post-processor 'containerdisk'");
	struct imgf_disk_out o;
	int r = imgf_disk_out_begin(c, "containerdisk", "containerdisk.tar", &o, err);
	if (r == 0)
		r = cd_write(c, &o, name, err);
	if (r == 0)
		r = imgf_disk_out_publish(c, &o, NULL, NULL, err);
	imgf_disk_out_release(&o);
	return r < 0 ? imgf_error_prefix(err, "post-processor 'containerdisk'") : 0;
}

const struct imgf_post_processor_ops imgf_containerdisk_post_processor = {
	.name = "containerdisk",
	.keys = cd_keys,
	.when = IMGF_PP_LISTED,
	.needs_disk = true,
	.ext = "containerdisk.tar",
	.validate = cd_validate,
	.run = cd_run,
};
