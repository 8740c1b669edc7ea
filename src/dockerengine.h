/*
 * What of the docker builder's Docker Engine client (builders/docker-*.c) other parts of
 * imgforge use: the engine is the one DOCKER_HOST names (unix:///var/run/docker.sock when
 * unset), reached over its HTTP API with libcurl, as the builder reaches it.
 */
#ifndef IMGF_DOCKERENGINE_H
#define IMGF_DOCKERENGINE_H

struct imgf_error;

/*
 * Load one image into the engine as the docker builder loads its squashed images: a
 * docker-archive of `layer` (an uncompressed layer tar) and `config_json` (the image config,
 * whose sha256 is the image ID "sha256:HEX" in want_id), tagged `tag` ("repo[:tag]"),
 * streamed to POST /images/load. The engine must then know want_id.
 */
int imgf_docker_load_image(const char *config_json, const char *layer, const char *tag,
			   const char *want_id, struct imgf_error **err);

#endif
