/* qemu-img for the post-processors (qemuimg.h). */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "error.h"
#include "qemuimg.h"
#include "run.h"
#include "strbuf.h"
#include "util.h"

#define QEMU_INFO_MAX (1024 * 1024)
#define QEMU_MAP_MAX (64 * 1024 * 1024)

/*
 * The format a file's name says, or NULL to let qemu-img probe. Probing a raw disk is unsafe
 * (the guest wrote its first sector and could make it look like a qcow2 with a backing file
 * on the host), so .raw and .qcow2 are taken at their word. ".img" says nothing: cloud
 * images by that name are qcow2.
 */
static const char *format_from_name(const char *path)
{
	if (str_has_suffix(path, ".qcow2"))
		return "qcow2";
	if (str_has_suffix(path, ".raw"))
		return "raw";
	return NULL;
}

/* The disk as an argument: "./-x" for "-x". */
static char *disk_arg(const char *disk)
{
	return xasprintf("%s%s", disk[0] == '-' ? "./" : "", disk);
}

static int qemu_img_json(char *const *argv, size_t max, json_t **out, struct imgf_error **err)
{
	struct strbuf sb = STRBUF_INIT;
	sb.max = max;
	int r = imgf_run(argv, &sb, err);
	if (r == 0) {
		json_error_t jerr;
		*out = json_loadb(sb.buf, sb.len, 0, &jerr);
		if (!*out)
			r = imgf_error_set(err, IMGF_EXIT_FAIL, "'%s %s' printed bad JSON: %s",
					   argv[0], argv[1], jerr.text);
	}
	strbuf_release(&sb);
	return r;
}

static int json_u64(json_t *obj, const char *key, uint64_t *out)
{
	json_t *v = json_object_get(obj, key);
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

int imgf_qemu_img_info(const char *disk, const char **format, uint64_t *virtual_size,
		       struct imgf_error **err)
{
	const char *fmt = format_from_name(disk);
	_cleanup_free_ char *arg = disk_arg(disk);
	char *argv[7] = {"qemu-img", "info", "--output=json"};
	size_t argc = 3;
	if (fmt) {
		argv[argc++] = "-f";
		argv[argc++] = (char *)fmt;
	}
	argv[argc++] = arg;
	argv[argc] = NULL;
	json_t *info = NULL;
	if (qemu_img_json(argv, QEMU_INFO_MAX, &info, err) < 0)
		return -1;
	const char *probed = json_string_value(json_object_get(info, "format"));
	int r = 0;
	if (json_u64(info, "virtual-size", virtual_size) < 0 || !probed)
		r = imgf_error_set(err, IMGF_EXIT_FAIL,
				   "'qemu-img info' gave no virtual-size or format");
	else if (!fmt && strcmp(probed, "qcow2") != 0 && strcmp(probed, "raw") != 0)
		r = imgf_error_set(
			err, IMGF_EXIT_FAIL,
			"format '%s' is not supported (qcow2 or raw; a name ending in .qcow2 or "
			".raw says which)",
			probed);
	else
		*format = fmt ? fmt : (strcmp(probed, "qcow2") == 0 ? "qcow2" : "raw");
	json_decref(info);
	return r;
}

/* vSphere takes the OVF's populatedSize as the space a thin-provisioned copy will need. */
int imgf_qemu_img_populated(const char *disk, const char *format, uint64_t virtual_size,
			    uint64_t *populated, struct imgf_error **err)
{
	_cleanup_free_ char *arg = disk_arg(disk);
	char *argv[] = {"qemu-img", "map", "--output=json", "-f", (char *)format, arg, NULL};
	json_t *map = NULL;
	if (qemu_img_json(argv, QEMU_MAP_MAX, &map, err) < 0)
		return -1;
	int r = 0;
	uint64_t sum = 0;
	size_t i;
	json_t *ext;
	if (!json_is_array(map))
		r = imgf_error_set(err, IMGF_EXIT_FAIL, "'qemu-img map' did not print a list");
	json_array_foreach(map, i, ext)
	{
		uint64_t len;
		if (r < 0)
			break;
		if (json_u64(ext, "length", &len) < 0) {
			r = imgf_error_set(err, IMGF_EXIT_FAIL,
					   "'qemu-img map' printed an extent without a length");
			break;
		}
		if (json_is_true(json_object_get(ext, "data")) &&
		    !json_is_true(json_object_get(ext, "zero")))
			sum += len;
	}
	json_decref(map);
	*populated = sum < virtual_size ? sum : virtual_size;
	return r;
}

int imgf_qemu_img_convert(const char *disk, const char *format, const char *out_format,
			  const char *options, const char *out, struct imgf_error **err)
{
	_cleanup_free_ char *in_arg = disk_arg(disk), *out_arg = disk_arg(out);
	char *argv[11] = {"qemu-img", "convert", "-f", (char *)format, "-O", (char *)out_format};
	size_t argc = 6;
	if (options) {
		argv[argc++] = "-o";
		argv[argc++] = (char *)options;
	}
	argv[argc++] = in_arg;
	argv[argc++] = out_arg;
	argv[argc] = NULL;
	return imgf_run(argv, NULL, err);
}
