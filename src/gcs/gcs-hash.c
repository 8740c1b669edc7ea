/*
 * The digests of a GCS upload (sha256, crc32c) over the bytes the transfer reads, on a
 * worker thread while it goes on (or in the caller when no thread could start).
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "digest.h"
#include "gcs-internal.h"
#include "util.h"

/*
 * The worker: a ring of slots the read callback copies into and the worker hashes from, so
 * the digests cost the transfer a memcpy. The producer owns slot `tail` while count < NSLOT;
 * the worker owns the `count` slots from `head`.
 */
#define HASH_SLOT (512u * 1024) /* curl's upload buffer (CURLOPT_UPLOAD_BUFFERSIZE) */
#define HASH_NSLOT 8u
struct hash_worker {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t filled, freed;
	char *slot[HASH_NSLOT];
	size_t len[HASH_NSLOT];
	unsigned head, tail, count;
	bool stop;
};

static void hash_update(struct upload_hash *h, const char *buf, size_t n)
{
	imgf_digest_update(&h->sha256, buf, n);
	h->crc = imgf_crc32c_update(h->crc, buf, n);
}

static void *hash_worker_main(void *arg)
{
	struct upload_hash *h = arg;
	struct hash_worker *w = h->w;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->count && !w->stop)
			pthread_cond_wait(&w->filled, &w->mu);
		if (!w->count)
			break; /* stopped, and everything is hashed */
		unsigned i = w->head;
		pthread_mutex_unlock(&w->mu);
		hash_update(h, w->slot[i], w->len[i]);
		pthread_mutex_lock(&w->mu);
		w->head = (w->head + 1) % HASH_NSLOT;
		w->count--;
		pthread_cond_signal(&w->freed);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

bool imgf_gcs_upload_hash_start(struct upload_hash *h)
{
	struct hash_worker *w = xcalloc(1, sizeof(*w));
	for (unsigned i = 0; i < HASH_NSLOT; i++)
		w->slot[i] = xmalloc(HASH_SLOT);
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->filled, NULL);
	pthread_cond_init(&w->freed, NULL);
	h->w = w;
	if (pthread_create(&w->thread, NULL, hash_worker_main, h) == 0)
		return true;
	h->w = NULL;
	pthread_cond_destroy(&w->freed);
	pthread_cond_destroy(&w->filled);
	pthread_mutex_destroy(&w->mu);
	for (unsigned i = 0; i < HASH_NSLOT; i++)
		free(w->slot[i]);
	free(w);
	return false;
}

void imgf_gcs_upload_hash_finish(struct upload_hash *h)
{
	struct hash_worker *w = h->w;
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_signal(&w->filled);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	h->w = NULL;
	pthread_cond_destroy(&w->freed);
	pthread_cond_destroy(&w->filled);
	pthread_mutex_destroy(&w->mu);
	for (unsigned i = 0; i < HASH_NSLOT; i++)
		free(w->slot[i]);
	free(w);
}

static void hash_queue(struct hash_worker *w, const char *buf, size_t n)
{
	while (n) {
		size_t take = n < HASH_SLOT ? n : HASH_SLOT;
		pthread_mutex_lock(&w->mu);
		while (w->count == HASH_NSLOT)
			pthread_cond_wait(&w->freed, &w->mu);
		unsigned i = w->tail;
		pthread_mutex_unlock(&w->mu);
		memcpy(w->slot[i], buf, take);
		w->len[i] = take;
		pthread_mutex_lock(&w->mu);
		w->tail = (w->tail + 1) % HASH_NSLOT;
		w->count++;
		pthread_cond_signal(&w->filled);
		pthread_mutex_unlock(&w->mu);
		buf += take;
		n -= take;
	}
}

void imgf_gcs_upload_hash_feed(struct upload_hash *h, uint64_t at, const char *buf, size_t n)
{
	if (at + n <= h->upto)
		return; /* re-sent after a resume: already hashed */
	size_t skip = at < h->upto ? (size_t)(h->upto - at) : 0;
	/* at > upto cannot happen: reads only go past upto contiguously (see the upload loop) */
	if (h->w)
		hash_queue(h->w, buf + skip, n - skip);
	else
		hash_update(h, buf + skip, n - skip);
	h->upto = at + n;
}
