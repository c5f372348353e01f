// Setjmp-safe wrappers over libpng and libjpeg: every longjmp lands in this file, never in a Swift frame.
// Variables written after setjmp and read after the jump are volatile, as C requires.
#include "CImageCodecs.h"

#include <png.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

// CIC_MAX_DECODED_BYTES (the header) bounds the decoder's row buffer and what it returns, checked from the file's
// header before anything is allocated: a corrupt or hostile header must not make us allocate gigabytes.
/// Progressive JPEGs re-decode the image once per scan; a file with thousands of tiny scans would take minutes.
#define CIC_MAX_JPEG_SCANS 500

/// width * height * bytes_per_pixel, or UINT64_MAX when that overflows.
static uint64_t cic_bytes(uint64_t width, uint64_t height, uint64_t bytes_per_pixel) {
    uint64_t pixels, bytes;
    if (__builtin_mul_overflow(width, height, &pixels) || __builtin_mul_overflow(pixels, bytes_per_pixel, &bytes))
        return UINT64_MAX;
    return bytes;
}

static void set_error(char *err, size_t err_len, const char *fmt, ...) {
    if (err == NULL || err_len == 0) return;
    va_list args;
    va_start(args, fmt);
    vsnprintf(err, err_len, fmt, args);
    va_end(args);
}

void cic_free(void *pointer) { free(pointer); }

// MARK: - PNG

typedef struct {
    const uint8_t *bytes;
    size_t length;
    size_t position;
} png_reader;

typedef struct {
    char message[256];
} png_error_context;

static void png_read_from_memory(png_structp png, png_bytep dst, size_t n) {
    png_reader *reader = (png_reader *)png_get_io_ptr(png);
    if (n > reader->length - reader->position) png_error(png, "unexpected end of data (truncated file)");
    memcpy(dst, reader->bytes + reader->position, n);
    reader->position += n;
}

static void png_error_to_context(png_structp png, png_const_charp message) {
    png_error_context *ctx = (png_error_context *)png_get_error_ptr(png);
    if (ctx) snprintf(ctx->message, sizeof ctx->message, "%s", message);
    png_longjmp(png, 1);
}

static void png_warning_ignored(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;
}

int cic_png_decode(const uint8_t *bytes, size_t length, cic_png_mode mode, cic_image *out, char *err, size_t err_len) {
    if (out == NULL || (bytes == NULL && length > 0)) return CIC_ERR_ARGUMENT;
    memset(out, 0, sizeof *out);
    if (length < 8 || png_sig_cmp((png_const_bytep)bytes, 0, 8) != 0) {
        set_error(err, err_len, "not a PNG file (bad signature)");
        return CIC_ERR_DECODE;
    }
    png_error_context ctx;
    ctx.message[0] = 0;
    png_reader reader = {bytes, length, 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_error_to_context, png_warning_ignored);
    if (png == NULL) {
        set_error(err, err_len, "out of memory");
        return CIC_ERR_MEMORY;
    }
    png_infop info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_read_struct(&png, NULL, NULL);
        set_error(err, err_len, "out of memory");
        return CIC_ERR_MEMORY;
    }
    uint8_t *volatile raw = NULL;
    png_bytep *volatile rows = NULL;
    uint8_t *volatile pixels = NULL;
    volatile int status = CIC_ERR_DECODE;

    if (setjmp(png_jmpbuf(png))) {
        free(raw);
        free(rows);
        free(pixels);
        png_destroy_read_struct(&png, &info, NULL);
        if (status == CIC_ERR_DECODE) set_error(err, err_len, "corrupt PNG: %s", ctx.message);
        return status;
    }
    png_set_read_fn(png, &reader, png_read_from_memory);
    png_read_info(png, info);

    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0;
    png_get_IHDR(png, info, &width, &height, &bit_depth, &color_type, NULL, NULL, NULL);
    out->source_bit_depth = bit_depth;
    out->source_color_type = color_type;
    int colour = (color_type & PNG_COLOR_MASK_COLOR) && color_type != PNG_COLOR_TYPE_PALETTE;
    // What this call returns, from the header alone (rows are checked again after the transforms).
    uint64_t returned = cic_bytes(width, height, mode == CIC_PNG_LABEL ? 1 : 3);
    if (width == 0 || height == 0 || returned > CIC_MAX_DECODED_BYTES) {
        status = CIC_ERR_UNSUPPORTED;
        set_error(err, err_len, "PNG of %u x %u pixels needs %llu bytes decoded, more than the %llu-byte limit",
                  (unsigned)width, (unsigned)height, (unsigned long long)returned,
                  (unsigned long long)CIC_MAX_DECODED_BYTES);
        png_error(png, "size");
    }

    if (mode == CIC_PNG_LABEL) {
        if (colour) {
            status = CIC_ERR_UNSUPPORTED;
            set_error(err, err_len, "label map must be single-channel (gray or palette), got colour type %d", color_type);
            png_error(png, "unsupported");
        }
        // Sub-byte samples as Pillow reads them (mmseg loads labels with Pillow): palette indices and 1-bit gray
        // stay raw (0/1), 2- and 4-bit gray are scaled to 0..255 like mode "L".
        if (color_type == PNG_COLOR_TYPE_GRAY && (bit_depth == 2 || bit_depth == 4))
            png_set_expand_gray_1_2_4_to_8(png);
        else if (bit_depth < 8)
            png_set_packing(png);
        if (color_type == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_strip_alpha(png);
        // 16-bit gray is kept wide here and narrowed below after a range check.
        if (bit_depth == 16) png_set_swap(png);
    } else {
        if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
        if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
        if (bit_depth == 16) png_set_strip_16(png);
    }
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    size_t rowbytes = png_get_rowbytes(png, info);
    int channels = png_get_channels(png, info);
    int out_depth = png_get_bit_depth(png, info);
    uint64_t raw_bytes = cic_bytes(rowbytes, height, 1);
    if (rowbytes == 0 || raw_bytes > CIC_MAX_DECODED_BYTES) {
        status = CIC_ERR_UNSUPPORTED;
        set_error(err, err_len, "PNG of %u x %u pixels needs %llu bytes of rows (%d-bit, %d channels), more than the "
                  "%llu-byte limit", (unsigned)width, (unsigned)height, (unsigned long long)raw_bytes, out_depth,
                  channels, (unsigned long long)CIC_MAX_DECODED_BYTES);
        png_error(png, "size");
    }
    raw = (uint8_t *)malloc(rowbytes * height);
    rows = (png_bytep *)malloc(sizeof(png_bytep) * height);
    int out_channels = mode == CIC_PNG_LABEL ? 1 : 3;
    pixels = (uint8_t *)malloc((size_t)width * height * out_channels);
    if (raw == NULL || rows == NULL || pixels == NULL) {
        status = CIC_ERR_MEMORY;
        set_error(err, err_len, "out of memory for %ux%u PNG", (unsigned)width, (unsigned)height);
        png_error(png, "memory");
    }
    for (png_uint_32 y = 0; y < height; y++) rows[y] = raw + rowbytes * y;
    png_read_image(png, rows);
    png_read_end(png, NULL);

    if (mode == CIC_PNG_LABEL) {
        if (out_depth == 16) {
            // png_set_swap made samples host little-endian; channels is 1 (gray) after strip_alpha.
            for (png_uint_32 y = 0; y < height; y++) {
                const uint16_t *src = (const uint16_t *)(raw + rowbytes * y);
                for (png_uint_32 x = 0; x < width; x++) {
                    uint16_t v = src[x * channels];
                    if (v > 255) {
                        status = CIC_ERR_UNSUPPORTED;
                        set_error(err, err_len, "16-bit label value %u at (%u, %u) does not fit 8 bits", v, (unsigned)y,
                                  (unsigned)x);
                        png_error(png, "range");
                    }
                    pixels[(size_t)y * width + x] = (uint8_t)v;
                }
            }
        } else {
            for (png_uint_32 y = 0; y < height; y++) {
                const uint8_t *src = raw + rowbytes * y;
                for (png_uint_32 x = 0; x < width; x++) pixels[(size_t)y * width + x] = src[x * channels];
            }
        }
    } else {
        // After the transforms: 8-bit with 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA) channels.
        for (png_uint_32 y = 0; y < height; y++) {
            const uint8_t *src = raw + rowbytes * y;
            uint8_t *dst = pixels + (size_t)y * width * 3;
            for (png_uint_32 x = 0; x < width; x++) {
                const uint8_t *p = src + (size_t)x * channels;
                if (channels >= 3) {
                    dst[3 * x] = p[0];
                    dst[3 * x + 1] = p[1];
                    dst[3 * x + 2] = p[2];
                } else {
                    dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = p[0];
                }
            }
        }
    }
    free(raw);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    out->pixels = pixels;
    out->width = (int32_t)width;
    out->height = (int32_t)height;
    out->channels = out_channels;
    return CIC_OK;
}

typedef struct {
    uint8_t *bytes;
    size_t length;
    size_t capacity;
    int failed;
} png_writer;

static void png_write_to_memory(png_structp png, png_bytep src, size_t n) {
    png_writer *w = (png_writer *)png_get_io_ptr(png);
    if (w->length + n > w->capacity) {
        size_t capacity = w->capacity ? w->capacity : 4096;
        while (capacity < w->length + n) capacity *= 2;
        uint8_t *grown = (uint8_t *)realloc(w->bytes, capacity);
        if (grown == NULL) {
            w->failed = 1;
            png_error(png, "out of memory");
        }
        w->bytes = grown;
        w->capacity = capacity;
    }
    memcpy(w->bytes + w->length, src, n);
    w->length += n;
}

static void png_flush_nothing(png_structp png) { (void)png; }

int cic_png_encode(const uint8_t *pixels, int32_t width, int32_t height, int32_t color_type,
                   const uint8_t *palette, int32_t palette_entries, int32_t compression_level,
                   uint8_t **out_bytes, size_t *out_length, char *err, size_t err_len) {
    if (pixels == NULL || out_bytes == NULL || out_length == NULL || width <= 0 || height <= 0) {
        set_error(err, err_len, "invalid arguments to PNG encoder (%dx%d)", width, height);
        return CIC_ERR_ARGUMENT;
    }
    int channels;
    switch (color_type) {
    case CIC_PNG_GRAY: channels = 1; break;
    case CIC_PNG_TRUECOLOR: channels = 3; break;
    case CIC_PNG_PALETTE:
        channels = 1;
        if (palette == NULL || palette_entries < 1 || palette_entries > 256) {
            set_error(err, err_len, "palette PNG needs 1..256 palette entries, got %d", palette_entries);
            return CIC_ERR_ARGUMENT;
        }
        break;
    default: set_error(err, err_len, "unsupported PNG colour type %d for encoding", color_type); return CIC_ERR_ARGUMENT;
    }
    *out_bytes = NULL;
    *out_length = 0;
    png_error_context ctx;
    ctx.message[0] = 0;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, png_error_to_context, png_warning_ignored);
    if (png == NULL) {
        set_error(err, err_len, "out of memory");
        return CIC_ERR_MEMORY;
    }
    png_infop info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_write_struct(&png, NULL);
        set_error(err, err_len, "out of memory");
        return CIC_ERR_MEMORY;
    }
    png_writer writer = {NULL, 0, 0, 0};
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(rows);
        free(writer.bytes);
        png_destroy_write_struct(&png, &info);
        set_error(err, err_len, "PNG encoding failed: %s", ctx.message);
        return writer.failed ? CIC_ERR_MEMORY : CIC_ERR_DECODE;
    }
    png_set_write_fn(png, &writer, png_write_to_memory, png_flush_nothing);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, color_type, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (color_type == CIC_PNG_PALETTE) {
        png_color entries[256];
        for (int i = 0; i < palette_entries; i++) {
            entries[i].red = palette[3 * i];
            entries[i].green = palette[3 * i + 1];
            entries[i].blue = palette[3 * i + 2];
        }
        png_set_PLTE(png, info, entries, palette_entries);
    }
    if (compression_level >= 0 && compression_level <= 9) png_set_compression_level(png, compression_level);
    rows = (png_bytep *)malloc(sizeof(png_bytep) * (size_t)height);
    if (rows == NULL) png_error(png, "out of memory");
    for (int32_t y = 0; y < height; y++) rows[y] = (png_bytep)(pixels + (size_t)y * width * channels);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    free(rows);
    png_destroy_write_struct(&png, &info);
    *out_bytes = writer.bytes;
    *out_length = writer.length;
    return CIC_OK;
}

// MARK: - JPEG

typedef struct {
    struct jpeg_error_mgr base;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} jpeg_error_context;

static void jpeg_error_exit_to_context(j_common_ptr cinfo) {
    jpeg_error_context *ctx = (jpeg_error_context *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, ctx->message);
    longjmp(ctx->jump, 1);
}

/// Stops a progressive JPEG after CIC_MAX_JPEG_SCANS scans (libjpeg calls this between passes).
static void jpeg_progress_scan_limit(j_common_ptr cinfo) {
    if (cinfo->is_decompressor && ((j_decompress_ptr)cinfo)->input_scan_number > CIC_MAX_JPEG_SCANS) {
        jpeg_error_context *ctx = (jpeg_error_context *)cinfo->err;
        snprintf(ctx->message, sizeof ctx->message, "more than %d progressive scans", CIC_MAX_JPEG_SCANS);
        longjmp(ctx->jump, 1);
    }
}

/// Warnings are silent except end-of-data: a truncated JPEG would otherwise decode "successfully" as grey.
static void jpeg_emit_message_strict(j_common_ptr cinfo, int msg_level) {
    if (msg_level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        jpeg_error_context *ctx = (jpeg_error_context *)cinfo->err;
        (*cinfo->err->format_message)(cinfo, ctx->message);
        longjmp(ctx->jump, 1);
    }
}

int cic_jpeg_decode(const uint8_t *bytes, size_t length, cic_image *out, char *err, size_t err_len) {
    if (out == NULL || (bytes == NULL && length > 0)) return CIC_ERR_ARGUMENT;
    memset(out, 0, sizeof *out);
    if (length < 3 || bytes[0] != 0xFF || bytes[1] != 0xD8) {
        set_error(err, err_len, "not a JPEG file (bad signature)");
        return CIC_ERR_DECODE;
    }
    struct jpeg_decompress_struct cinfo;
    jpeg_error_context ctx;
    ctx.message[0] = 0;
    cinfo.err = jpeg_std_error(&ctx.base);
    ctx.base.error_exit = jpeg_error_exit_to_context;
    ctx.base.emit_message = jpeg_emit_message_strict;
    struct jpeg_progress_mgr progress;
    memset(&progress, 0, sizeof progress);
    progress.progress_monitor = jpeg_progress_scan_limit;
    uint8_t *volatile pixels = NULL;
    volatile int status = CIC_ERR_DECODE;
    if (setjmp(ctx.jump)) {
        free(pixels);
        jpeg_destroy_decompress(&cinfo);
        if (status == CIC_ERR_DECODE) set_error(err, err_len, "corrupt JPEG: %s", ctx.message);
        return status;
    }
    jpeg_create_decompress(&cinfo);
    cinfo.progress = &progress;
    // Progressive files keep every coefficient in memory: bounded like the output (libjpeg then fails cleanly,
    // having no backing store).
    cinfo.mem->max_memory_to_use = (long)CIC_MAX_DECODED_BYTES;
    jpeg_mem_src(&cinfo, bytes, (unsigned long)length);
    jpeg_read_header(&cinfo, TRUE);
    // The size from the frame header, before jpeg_start_decompress allocates anything for it.
    uint64_t returned = cic_bytes(cinfo.image_width, cinfo.image_height, 3);
    if (cinfo.image_width == 0 || cinfo.image_height == 0 || returned > CIC_MAX_DECODED_BYTES) {
        status = CIC_ERR_UNSUPPORTED;
        set_error(err, err_len, "JPEG of %u x %u pixels needs %llu bytes decoded, more than the %llu-byte limit",
                  (unsigned)cinfo.image_width, (unsigned)cinfo.image_height, (unsigned long long)returned,
                  (unsigned long long)CIC_MAX_DECODED_BYTES);
        longjmp(ctx.jump, 1);
    }
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        status = CIC_ERR_UNSUPPORTED;
        set_error(err, err_len, "CMYK JPEGs are not supported");
        longjmp(ctx.jump, 1);
    }
    cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&cinfo);
    size_t width = cinfo.output_width, height = cinfo.output_height;
    if (width == 0 || height == 0 || cinfo.output_components != 3 || cic_bytes(width, height, 3) > CIC_MAX_DECODED_BYTES) {
        status = CIC_ERR_UNSUPPORTED;
        set_error(err, err_len, "JPEG of %zu x %zu pixels (%d components) is beyond the %llu-byte limit", width, height,
                  cinfo.output_components, (unsigned long long)CIC_MAX_DECODED_BYTES);
        longjmp(ctx.jump, 1);
    }
    pixels = (uint8_t *)malloc(width * height * 3);
    if (pixels == NULL) {
        status = CIC_ERR_MEMORY;
        set_error(err, err_len, "out of memory for %zux%zu JPEG", width, height);
        longjmp(ctx.jump, 1);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = pixels + (size_t)cinfo.output_scanline * width * 3;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    out->pixels = pixels;
    out->width = (int32_t)width;
    out->height = (int32_t)height;
    out->channels = 3;
    out->source_bit_depth = 8;
    out->source_color_type = -1;
    return CIC_OK;
}

int cic_jpeg_encode(const uint8_t *pixels, int32_t width, int32_t height, int32_t quality,
                    uint8_t **out_bytes, size_t *out_length, char *err, size_t err_len) {
    if (pixels == NULL || out_bytes == NULL || out_length == NULL || width <= 0 || height <= 0) {
        set_error(err, err_len, "invalid arguments to JPEG encoder (%dx%d)", width, height);
        return CIC_ERR_ARGUMENT;
    }
    *out_bytes = NULL;
    *out_length = 0;
    struct jpeg_compress_struct cinfo;
    jpeg_error_context ctx;
    ctx.message[0] = 0;
    cinfo.err = jpeg_std_error(&ctx.base);
    ctx.base.error_exit = jpeg_error_exit_to_context;
    unsigned char *volatile buffer = NULL;
    unsigned long size = 0;
    if (setjmp(ctx.jump)) {
        jpeg_destroy_compress(&cinfo);
        free(buffer);
        set_error(err, err_len, "JPEG encoding failed: %s", ctx.message);
        return CIC_ERR_DECODE;
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, (unsigned char **)&buffer, &size);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality < 1 ? 1 : (quality > 100 ? 100 : quality), TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.next_scanline * width * 3);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    *out_bytes = buffer;
    *out_length = size;
    return CIC_OK;
}
