// A small C API over simdjson's DOM for COCO instances and results files.
//
// One call parses a whole file and flattens it into a few compact arrays (records, polygon table,
// coordinates, RLE counts, a string arena), so Swift copies each array once instead of calling into
// C per value. The file buffer and the DOM are freed before the call returns. No C++ exception
// crosses this boundary: failures come back as a code plus a message naming the record.
#ifndef CSIMDJSON_H
#define CSIMDJSON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    CSJ_OK = 0,
    CSJ_IO_ERROR = 1,      // file missing or unreadable
    CSJ_PARSE_ERROR = 2,   // not valid JSON
    CSJ_SCHEMA_ERROR = 3,  // valid JSON with a wrong type or a missing required field
} csj_status;

// Which fields a record carried (bit set = present in the file).
enum {
    CSJ_HAS_ID = 1 << 0,
    CSJ_HAS_IMAGE_ID = 1 << 1,
    CSJ_HAS_CATEGORY_ID = 1 << 2,
    CSJ_HAS_BBOX = 1 << 3,
    CSJ_HAS_AREA = 1 << 4,
    CSJ_HAS_ISCROWD = 1 << 5,
    CSJ_HAS_SCORE = 1 << 6,
    CSJ_HAS_SEGMENTATION = 1 << 7,
    CSJ_HAS_WIDTH = 1 << 8,
    CSJ_HAS_HEIGHT = 1 << 9,
    CSJ_HAS_FILE_NAME = 1 << 10,
    CSJ_HAS_NAME = 1 << 11,
    CSJ_HAS_SUPERCATEGORY = 1 << 12,
    CSJ_BBOX_EMPTY = 1 << 13,  // "bbox": [] (pycocotools' loadRes treats it as absent)
};

typedef enum {
    CSJ_SEG_NONE = 0,
    CSJ_SEG_POLYGONS = 1,    // seg_start/seg_count: range in the polygon table
    CSJ_SEG_RLE_COUNTS = 2,  // seg_start/seg_count: range in the counts array
    CSJ_SEG_RLE_STRING = 3,  // seg_start/seg_count: byte range in the string arena
} csj_seg_kind;

typedef struct {
    int64_t id, image_id, category_id;
    double bbox[4];  // x, y, w, h
    double area, score;
    int32_t iscrowd;
    int32_t seg_kind;       // csj_seg_kind
    int64_t seg_h, seg_w;   // RLE "size": [h, w]
    int64_t seg_start, seg_count;
    uint32_t flags;         // CSJ_HAS_*
} csj_annotation;

typedef struct {
    int64_t id, width, height;
    int64_t file_name_start, file_name_len;  // string arena
    uint32_t flags;
} csj_image;

typedef struct {
    int64_t id;
    int64_t name_start, name_len, supercategory_start, supercategory_len;  // string arena
    uint32_t flags;
} csj_category;

typedef struct {
    int64_t start, count;  // range in the coordinate array (x0, y0, x1, y1, ...)
} csj_polygon;

typedef struct csj_file csj_file;

// Parses an instances file (an object with "images", "annotations", "categories"; any may be absent)
// or a results file (a top-level array of annotation records). `*out` is set on success and on failure
// (then it only carries the message); release it with csj_free.
csj_status csj_parse_instances(const char *path, csj_file **out);
csj_status csj_parse_results(const char *path, csj_file **out);
void csj_free(csj_file *file);

// The message of a failed parse, e.g. `annotations[17] (id 123): "bbox" must be an array of 4 numbers`.
const char *csj_error_message(const csj_file *file);

size_t csj_image_count(const csj_file *file);
const csj_image *csj_images(const csj_file *file);
size_t csj_category_count(const csj_file *file);
const csj_category *csj_categories(const csj_file *file);
size_t csj_annotation_count(const csj_file *file);
const csj_annotation *csj_annotations(const csj_file *file);
size_t csj_polygon_count(const csj_file *file);
const csj_polygon *csj_polygons(const csj_file *file);
size_t csj_coordinate_count(const csj_file *file);
const double *csj_coordinates(const csj_file *file);
size_t csj_count_count(const csj_file *file);
const uint32_t *csj_counts(const csj_file *file);
size_t csj_string_bytes(const csj_file *file);
const char *csj_strings(const csj_file *file);

#ifdef __cplusplus
}
#endif

#endif
