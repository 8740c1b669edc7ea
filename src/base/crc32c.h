/*
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum GCS keeps for each
 * object: the CPU's crc32 instruction where there is one, else an 8-table software path.
 */
#ifndef IMGF_CRC32C_H
#define IMGF_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C (Castagnoli): crc = imgf_crc32c_update(0, ...) then feed more; no final xor needed. */
uint32_t imgf_crc32c_update(uint32_t crc, const void *data, size_t len);
/* The portable table-driven path only (the default may use the CPU's crc32 instruction). */
uint32_t imgf_crc32c_update_sw(uint32_t crc, const void *data, size_t len);
/* A CRC-32C in GCS's form: base64 of its 4 big-endian bytes, into out[9]. */
void imgf_crc32c_b64(uint32_t crc, char out[9]);

#endif
