#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base64.h"
#include "crc32c.h"
#include "util.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define CRC32C_HW 1
#endif

/* ---- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) ---- */

static uint32_t crc32c_table[8][256];
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;
#ifdef CRC32C_HW
static bool crc32c_have_hw;
#endif

static void crc32c_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
		crc32c_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc32c_table[t][i] = (crc32c_table[t - 1][i] >> 8) ^
					     crc32c_table[0][crc32c_table[t - 1][i] & 0xff];
#ifdef CRC32C_HW
	__builtin_cpu_init();
	crc32c_have_hw = __builtin_cpu_supports("sse4.2");
#endif
}

/* Slicing-by-8: eight table lookups per 8 bytes. */
static uint32_t crc32c_sw(uint32_t crc, const unsigned char *p, size_t len)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		uint32_t lo = crc ^ (uint32_t)w, hi = (uint32_t)(w >> 32);
		crc = crc32c_table[7][lo & 0xff] ^ crc32c_table[6][(lo >> 8) & 0xff] ^
		      crc32c_table[5][(lo >> 16) & 0xff] ^ crc32c_table[4][lo >> 24] ^
		      crc32c_table[3][hi & 0xff] ^ crc32c_table[2][(hi >> 8) & 0xff] ^
		      crc32c_table[1][(hi >> 16) & 0xff] ^ crc32c_table[0][hi >> 24];
		p += 8;
		len -= 8;
	}
#endif
	while (len--)
		crc = (crc >> 8) ^ crc32c_table[0][(crc ^ *p++) & 0xff];
	return crc;
}

#ifdef CRC32C_HW
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const unsigned char *p,
							    size_t len)
{
	uint64_t c = crc;
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		c = _mm_crc32_u64(c, w);
		p += 8;
		len -= 8;
	}
	uint32_t c32 = (uint32_t)c;
	while (len--)
		c32 = _mm_crc32_u8(c32, *p++);
	return c32;
}
#endif

uint32_t imgf_crc32c_update_sw(uint32_t crc, const void *data, size_t len)
{
	pthread_once(&crc32c_once, crc32c_init);
	return ~crc32c_sw(~crc, data, len);
}

uint32_t imgf_crc32c_update(uint32_t crc, const void *data, size_t len)
{
	pthread_once(&crc32c_once, crc32c_init);
#ifdef CRC32C_HW
	if (crc32c_have_hw)
		return ~crc32c_hw(~crc, data, len);
#endif
	return ~crc32c_sw(~crc, data, len);
}

void imgf_crc32c_b64(uint32_t crc, char out[9])
{
	unsigned char be[4] = {(unsigned char)(crc >> 24), (unsigned char)(crc >> 16),
			       (unsigned char)(crc >> 8), (unsigned char)crc};
	_cleanup_free_ char *s = imgf_base64_encode(be, sizeof(be));
	snprintf(out, 9, "%s", s);
}
