// Setjmp-safe C shims over libpng and libjpeg(-turbo).
//
// libpng and libjpeg report fatal errors by longjmp. Jumping across Swift frames is undefined behaviour, so every
// setjmp lives here, in C, and each call returns 0 on success or a negative code with a message in `err`.
// Decoded pixels are malloc'd by the shim and released with cic_free.
#ifndef CIMAGECODECS_H
#define CIMAGECODECS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// What a PNG decode returns.
typedef enum {
    /// Any PNG (1..16-bit; gray, gray+alpha, palette, RGB, RGBA) → 8-bit RGB, HWC. 16-bit keeps the high byte
    /// (as OpenCV and Pillow do); alpha is dropped, not composited.
    CIC_PNG_RGB = 0,
    /// A label map → one raw 8-bit value per pixel: the grey level, or for palette images the palette INDEX.
    /// Sub-byte files follow Pillow (which mmseg uses for labels): 1-bit gray and palette indices stay raw, 2/4-bit
    /// gray is scaled to 0..255. Gray+alpha drops alpha; 16-bit gray must hold values ≤ 255; colour is rejected.
    CIC_PNG_LABEL = 1,
} cic_png_mode;

enum {
    CIC_OK = 0,
    CIC_ERR_DECODE = -1,      // corrupt, truncated or not the claimed format
    CIC_ERR_UNSUPPORTED = -2, // valid file the requested mode cannot represent
    CIC_ERR_MEMORY = -3,
    CIC_ERR_ARGUMENT = -4,
};

/// The most bytes a decode allocates for pixels (its row buffer, and what it returns): 1 GiB, a 18900 x 18900 RGB
/// image. Larger sizes are refused from the file's header, before anything is allocated.
enum { CIC_MAX_DECODED_BYTES = 1 << 30 };

/// A decoded image: `height * width * channels` bytes, row-major HWC.
typedef struct {
    uint8_t *pixels;
    int32_t width;
    int32_t height;
    int32_t channels;
    /// Source properties, for callers that want to know what the file held.
    int32_t source_bit_depth;
    int32_t source_color_type;
} cic_image;

/// Decodes a PNG held in memory. On failure `out->pixels` is NULL and `err` holds a message.
int cic_png_decode(const uint8_t *bytes, size_t length, cic_png_mode mode, cic_image *out, char *err, size_t err_len);

/// Decodes a JPEG held in memory to 8-bit RGB (grayscale JPEGs are expanded). A truncated stream is an error
/// (libjpeg would otherwise pad it with grey and only warn).
int cic_jpeg_decode(const uint8_t *bytes, size_t length, cic_image *out, char *err, size_t err_len);

/// PNG colour types accepted by cic_png_encode (values as in the PNG spec).
enum {
    CIC_PNG_GRAY = 0,
    CIC_PNG_TRUECOLOR = 2,
    CIC_PNG_PALETTE = 3,
};

/// Encodes 8-bit pixels (HWC; 1 channel for gray/palette, 3 for RGB) as a non-interlaced PNG in memory.
/// `palette` holds `palette_entries` RGB triples (1..256) for CIC_PNG_PALETTE and is ignored otherwise.
/// No time or text chunks are written, so equal inputs give byte-identical files.
/// On success `*out_bytes` is malloc'd (release with cic_free) and `*out_length` is its size.
int cic_png_encode(const uint8_t *pixels, int32_t width, int32_t height, int32_t color_type,
                   const uint8_t *palette, int32_t palette_entries, int32_t compression_level,
                   uint8_t **out_bytes, size_t *out_length, char *err, size_t err_len);

/// Encodes 8-bit RGB (HWC) as a baseline JPEG in memory with the given quality (1..100).
int cic_jpeg_encode(const uint8_t *pixels, int32_t width, int32_t height, int32_t quality,
                    uint8_t **out_bytes, size_t *out_length, char *err, size_t err_len);

/// Releases memory returned by this module.
void cic_free(void *pointer);

#ifdef __cplusplus
}
#endif

#endif
