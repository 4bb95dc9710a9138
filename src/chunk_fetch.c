// SPDX-License-Identifier: MIT
#include "chunk_fetch.h"

#include "log.h"

#include <errno.h>

static int writer_sink(const uint8_t *data, size_t len, void *opaque)
{
        return chunk_writer_write(opaque, data, len);
}

static int bad_chunk(struct chunk_fetch *f, const struct chunk *c, const char *what)
{
        char hex[2 * HASH_MAX_LEN + 1];

        hash_to_hex(c->hash, f->hash_len, hex);
        log_error("%s: chunk %s at archive offset %llu %s", f->where, hex, (unsigned long long)c->archive_offset,
                  what);
        return -EBADMSG;
}

static int finish_chunk(struct chunk_fetch *f, const struct chunk *c)
{
        int err = decoder_end(f->decoder, writer_sink, &f->writer);

        if (err == -EBADMSG)
                return bad_chunk(f, c, "is corrupt: its compressed data ends early");
        if (err < 0)
                return err;
        err = chunk_writer_finish(&f->writer);
        f->open = false;
        if (err == -EBADMSG)
                return bad_chunk(f, c, "is corrupt: its content does not match its hash");
        if (err < 0)
                return err;
        err = store_batch_add(f->batch, &f->writer);
        if (err < 0)
                return err;
        return f->stored ? f->stored(f, f->index) : 0;
}

static int range_sink(const uint8_t *data, size_t len, void *opaque)
{
        struct chunk_fetch *f = opaque;
        int err;

        if (f->cancel && atomic_load(f->cancel))
                return -ECANCELED;
        if (f->received)
                f->received(f, len);
        while (len > 0) {
                if (f->index == f->n_chunks)
                        return -EPROTO; /* more bytes than the range's chunks: the caller's bug */
                const struct chunk *c = f->chunks[f->index];
                if (!f->open) {
                        err = chunk_writer_begin(&f->writer, f->store, c, f->hash_len);
                        if (err < 0)
                                return err;
                        f->open = true;
                        f->chunk_received = 0;
                        err = decoder_begin(f->decoder, c->archive_size == c->source_size);
                        if (err < 0)
                                return log_errno(err, "cannot start a %s decoder", codec_name(f->codec));
                }
                size_t take = len < c->archive_size - f->chunk_received ? len
                                                                        : (size_t)(c->archive_size - f->chunk_received);
                err = decoder_feed(f->decoder, data, take, writer_sink, &f->writer);
                if (err == -EBADMSG)
                        return bad_chunk(f, c, "is corrupt: it does not decompress to its size");
                if (err < 0)
                        return err;
                f->chunk_received += take;
                data += take;
                len -= take;
                if (f->chunk_received == c->archive_size) {
                        err = finish_chunk(f, c);
                        if (err < 0)
                                return err;
                        f->index++;
                }
        }
        return 0;
}

int chunk_fetch_range(struct source_conn *conn, uint64_t start, uint64_t len, struct chunk_fetch *f)
{
        f->index = 0;
        f->chunk_received = 0;
        f->open = false;
        int err = f->why ? source_read_range_quiet(conn, start, len, range_sink, f, f->why, f->why_size)
                         : source_read_range(conn, start, len, range_sink, f);
        if (f->open) {
                chunk_writer_abort(&f->writer);
                f->open = false;
        }
        return err;
}
