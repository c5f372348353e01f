// Writes the JPEG seeds of Fuzz/seeds/image (baseline RGB, grayscale, progressive, restart markers) with libjpeg.
// Run from Fuzz/seeds: cc ../tools/make_jpeg_seeds.c -ljpeg -o /tmp/mk && /tmp/mk
#include <stdio.h>
#include <stdlib.h>
#include <jpeglib.h>
static void write(const char *path, int w, int h, int comps, int progressive, int restart) {
    struct jpeg_compress_struct c; struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e); jpeg_create_compress(&c);
    FILE *f = fopen(path, "wb"); jpeg_stdio_dest(&c, f);
    c.image_width = w; c.image_height = h; c.input_components = comps; c.in_color_space = comps == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&c); jpeg_set_quality(&c, 75, TRUE);
    if (progressive) jpeg_simple_progression(&c);
    c.restart_interval = restart;
    jpeg_start_compress(&c, TRUE);
    unsigned char row[64 * 3];
    while (c.next_scanline < c.image_height) {
        for (int x = 0; x < w * comps; x++) row[x] = (unsigned char)(x * 7 + c.next_scanline * 13);
        JSAMPROW r = row; jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c); jpeg_destroy_compress(&c); fclose(f);
}
int main(void) {
    write("image/baseline.jpg", 16, 8, 3, 0, 0);
    write("image/gray.jpg", 9, 7, 1, 0, 0);
    write("image/progressive.jpg", 16, 16, 3, 1, 0);
    write("image/restart.jpg", 24, 8, 3, 0, 1);
    return 0;
}
