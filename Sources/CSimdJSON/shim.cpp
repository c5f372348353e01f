// COCO instances/results files → flat arrays, through simdjson's DOM.
// Type and presence checks live here (they need the JSON types); meaning checks (unknown image ids,
// sizes, scores) are Swift's, which sees the whole dataset.
#include "CSimdJSON.h"

#include <simdjson.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <vector>

using namespace simdjson;

struct csj_file {
    std::vector<csj_image> images;
    std::vector<csj_category> categories;
    std::vector<csj_annotation> annotations;
    std::vector<csj_polygon> polygons;
    std::vector<double> coordinates;
    std::vector<uint32_t> counts;
    std::string strings;
    std::string message;
};

namespace {

/// The file's bytes with SIMDJSON_PADDING readable bytes after them. Mapped from the page cache when
/// the last page has room for the padding (no copy, no fresh pages to fault in); read into a
/// padded_string otherwise.
struct file_text {
    const uint8_t *data = nullptr;
    size_t size = 0;
    void *map = nullptr;
    padded_string copy;

    ~file_text() { close(); }

    bool open(const char *path, std::string &error) {
        int fd = ::open(path, O_RDONLY);
        if (fd < 0) {
            error = std::string("cannot read file: ") + std::strerror(errno);
            return false;
        }
        struct stat st;
        bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        if (regular && st.st_size > 0 && (size_t)st.st_size % page != 0 &&
            page - (size_t)st.st_size % page >= SIMDJSON_PADDING) {
            void *m = mmap(nullptr, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
            if (m != MAP_FAILED) {
                map = m;
                data = (const uint8_t *)m;
                size = (size_t)st.st_size;
                ::close(fd);
                return true;
            }
        }
        ::close(fd);
        error_code err = padded_string::load(path).get(copy);
        if (err) {
            error = std::string("cannot read file: ") + error_message(err);
            return false;
        }
        data = (const uint8_t *)copy.data();
        size = copy.size();
        return true;
    }

    void close() {
        if (map) munmap(map, size);
        map = nullptr;
        copy = padded_string();
        data = nullptr;
    }
};

/// Python's json.dump writes NaN and Infinity for non-finite floats (a NaN score is the usual case);
/// JSON has no such literals, and simdjson's DOM error gives no position, so point at the first one.
std::string non_finite_hint(const uint8_t *text, size_t size) {
    const char *s = (const char *)text;
    bool in_string = false;
    size_t line = 1;
    for (size_t i = 0; i < size; i++) {
        char c = s[i];
        if (c == '\n') line++;
        if (in_string) {
            if (c == '\\') i++;
            else if (c == '"') in_string = false;
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if ((c == 'N' && size - i >= 3 && std::memcmp(s + i, "NaN", 3) == 0) ||
                   (c == 'I' && size - i >= 8 && std::memcmp(s + i, "Infinity", 8) == 0)) {
            return " (line " + std::to_string(line) + ", byte " + std::to_string(i) + ": '" +
                   (c == 'N' ? "NaN" : "Infinity") + "' is not JSON; non-finite numbers such as a NaN score must not be written)";
        }
    }
    return "";
}

/// A schema failure; thrown only inside this file and turned into a status before returning to C.
struct schema_error {
    std::string message;
};

std::string describe(const char *section, size_t index, bool has_id, int64_t id) {
    std::string s = section;
    s += "[" + std::to_string(index) + "]";
    if (has_id) s += " (id " + std::to_string(id) + ")";
    return s;
}

const char *type_name(dom::element_type t) {
    switch (t) {
        case dom::element_type::ARRAY: return "an array";
        case dom::element_type::OBJECT: return "an object";
        case dom::element_type::INT64:
        case dom::element_type::UINT64: return "an integer";
        case dom::element_type::DOUBLE: return "a number";
        case dom::element_type::STRING: return "a string";
        case dom::element_type::BOOL: return "a boolean";
        case dom::element_type::NULL_VALUE: return "null";
    }
    return "a value";
}

/// Walks one record with the record's description at hand for error messages.
struct record {
    const char *section;
    size_t index;
    bool has_id = false;
    int64_t id = 0;

    [[noreturn]] void fail(std::string_view field, const std::string &what) const {
        throw schema_error{describe(section, index, has_id, id) + ": \"" + std::string(field) + "\" " + what};
    }

    /// Ids may be written as integral floats (Python json.dump of numpy floats); pycocotools accepts them.
    int64_t integer(dom::element v, std::string_view field) const {
        int64_t i;
        if (v.get_int64().get(i) == SUCCESS) return i;
        double d;
        if (v.is_double() && v.get_double().get(d) == SUCCESS && std::isfinite(d) && d == std::floor(d) &&
            std::fabs(d) < 9.007199254740992e15)
            return (int64_t)d;
        fail(field, std::string("must be an integer, got ") + type_name(v.type()));
    }

    double number(dom::element v, std::string_view field) const {
        double d;
        if (v.get_double().get(d) == SUCCESS) return d;
        fail(field, std::string("must be a number, got ") + type_name(v.type()));
    }

    std::string_view string(dom::element v, std::string_view field) const {
        std::string_view s;
        if (v.get_string().get(s) == SUCCESS) return s;
        fail(field, std::string("must be a string, got ") + type_name(v.type()));
    }
};

void append_string(csj_file &f, std::string_view s, int64_t &start, int64_t &len) {
    start = (int64_t)f.strings.size();
    len = (int64_t)s.size();
    f.strings.append(s.data(), s.size());
}

/// Polygons ([[x, y, ...], ...]) or RLE ({"counts": [...] | "...", "size": [h, w]}).
void read_segmentation(csj_file &f, const record &r, dom::element v, csj_annotation &a) {
    dom::array polys;
    if (v.get_array().get(polys) == SUCCESS) {
        a.seg_kind = CSJ_SEG_POLYGONS;
        a.seg_start = (int64_t)f.polygons.size();
        size_t k = 0;
        for (dom::element p : polys) {
            dom::array coords;
            if (p.get_array().get(coords) != SUCCESS)
                r.fail("segmentation", "polygon " + std::to_string(k) + " must be an array of numbers, got " +
                                           type_name(p.type()));
            csj_polygon poly{(int64_t)f.coordinates.size(), 0};
            for (dom::element c : coords) {
                double d;
                if (c.get_double().get(d) != SUCCESS)
                    r.fail("segmentation", "polygon " + std::to_string(k) + " has a non-number coordinate (" +
                                               type_name(c.type()) + ")");
                f.coordinates.push_back(d);
            }
            poly.count = (int64_t)f.coordinates.size() - poly.start;
            f.polygons.push_back(poly);
            k++;
        }
        a.seg_count = (int64_t)k;
        return;
    }
    dom::object rle;
    if (v.get_object().get(rle) != SUCCESS)
        r.fail("segmentation", std::string("must be a list of polygons or an RLE object, got ") + type_name(v.type()));
    dom::element counts, size;
    if (rle["counts"].get(counts) != SUCCESS) r.fail("segmentation", "RLE has no \"counts\"");
    if (rle["size"].get(size) != SUCCESS) r.fail("segmentation", "RLE has no \"size\"");
    dom::array hw;
    if (size.get_array().get(hw) != SUCCESS || hw.size() != 2)
        r.fail("segmentation", "RLE \"size\" must be [height, width]");
    a.seg_h = r.integer(hw.at(0).value_unsafe(), "segmentation.size");
    a.seg_w = r.integer(hw.at(1).value_unsafe(), "segmentation.size");
    std::string_view s;
    dom::array runs;
    if (counts.get_string().get(s) == SUCCESS) {
        a.seg_kind = CSJ_SEG_RLE_STRING;
        append_string(f, s, a.seg_start, a.seg_count);
    } else if (counts.get_array().get(runs) == SUCCESS) {
        a.seg_kind = CSJ_SEG_RLE_COUNTS;
        a.seg_start = (int64_t)f.counts.size();
        for (dom::element c : runs) {
            int64_t n;
            if (c.get_int64().get(n) != SUCCESS || n < 0 || n > (int64_t)UINT32_MAX)
                r.fail("segmentation", "RLE counts must be non-negative integers");
            f.counts.push_back((uint32_t)n);
        }
        a.seg_count = (int64_t)f.counts.size() - a.seg_start;
    } else {
        r.fail("segmentation", std::string("RLE \"counts\" must be a list of integers or a string, got ") +
                                   type_name(counts.type()));
    }
}

void read_annotation(csj_file &f, const char *section, size_t index, dom::element v) {
    record r{section, index};
    dom::object o;
    if (v.get_object().get(o) != SUCCESS)
        throw schema_error{describe(section, index, false, 0) + ": must be an object, got " + type_name(v.type())};
    csj_annotation a{};
    // The id first, so later messages can name it.
    dom::element idv;
    if (o["id"].get(idv) == SUCCESS) {
        a.id = r.integer(idv, "id");
        a.flags |= CSJ_HAS_ID;
        r.has_id = true;
        r.id = a.id;
    }
    for (dom::key_value_pair kv : o) {
        std::string_view k = kv.key;
        dom::element x = kv.value;
        if (k == "image_id") {
            a.image_id = r.integer(x, k);
            a.flags |= CSJ_HAS_IMAGE_ID;
        } else if (k == "category_id") {
            a.category_id = r.integer(x, k);
            a.flags |= CSJ_HAS_CATEGORY_ID;
        } else if (k == "bbox") {
            dom::array b;
            if (x.get_array().get(b) != SUCCESS) r.fail(k, std::string("must be an array of 4 numbers, got ") + type_name(x.type()));
            size_t n = 0;
            for (dom::element c : b) {
                if (n == 4) r.fail(k, "must be an array of 4 numbers, got more");
                a.bbox[n++] = r.number(c, k);
            }
            if (n == 0) {
                a.flags |= CSJ_BBOX_EMPTY;
            } else {
                if (n != 4) r.fail(k, "must be an array of 4 numbers, got " + std::to_string(n));
                a.flags |= CSJ_HAS_BBOX;
            }
        } else if (k == "area") {
            a.area = r.number(x, k);
            a.flags |= CSJ_HAS_AREA;
        } else if (k == "iscrowd") {
            bool b;
            if (x.get_bool().get(b) == SUCCESS) a.iscrowd = b;
            else a.iscrowd = (int32_t)r.integer(x, k);
            a.flags |= CSJ_HAS_ISCROWD;
        } else if (k == "score") {
            a.score = r.number(x, k);
            a.flags |= CSJ_HAS_SCORE;
        } else if (k == "segmentation") {
            if (x.is_null()) continue;
            read_segmentation(f, r, x, a);
            a.flags |= CSJ_HAS_SEGMENTATION;
        }
    }
    f.annotations.push_back(a);
}

void read_image(csj_file &f, size_t index, dom::element v) {
    record r{"images", index};
    dom::object o;
    if (v.get_object().get(o) != SUCCESS)
        throw schema_error{describe("images", index, false, 0) + ": must be an object, got " + type_name(v.type())};
    csj_image im{};
    dom::element idv;
    if (o["id"].get(idv) == SUCCESS) {
        im.id = r.integer(idv, "id");
        im.flags |= CSJ_HAS_ID;
        r.has_id = true;
        r.id = im.id;
    }
    for (dom::key_value_pair kv : o) {
        std::string_view k = kv.key;
        if (k == "width") {
            im.width = r.integer(kv.value, k);
            im.flags |= CSJ_HAS_WIDTH;
        } else if (k == "height") {
            im.height = r.integer(kv.value, k);
            im.flags |= CSJ_HAS_HEIGHT;
        } else if (k == "file_name") {
            append_string(f, r.string(kv.value, k), im.file_name_start, im.file_name_len);
            im.flags |= CSJ_HAS_FILE_NAME;
        }
    }
    f.images.push_back(im);
}

void read_category(csj_file &f, size_t index, dom::element v) {
    record r{"categories", index};
    dom::object o;
    if (v.get_object().get(o) != SUCCESS)
        throw schema_error{describe("categories", index, false, 0) + ": must be an object, got " + type_name(v.type())};
    csj_category c{};
    dom::element idv;
    if (o["id"].get(idv) == SUCCESS) {
        c.id = r.integer(idv, "id");
        c.flags |= CSJ_HAS_ID;
        r.has_id = true;
        r.id = c.id;
    }
    for (dom::key_value_pair kv : o) {
        std::string_view k = kv.key;
        if (k == "name") {
            append_string(f, r.string(kv.value, k), c.name_start, c.name_len);
            c.flags |= CSJ_HAS_NAME;
        } else if (k == "supercategory") {
            append_string(f, r.string(kv.value, k), c.supercategory_start, c.supercategory_len);
            c.flags |= CSJ_HAS_SUPERCATEGORY;
        }
    }
    f.categories.push_back(c);
}

dom::array section_array(dom::object root, const char *name, bool &present) {
    dom::element e;
    present = root[name].get(e) == SUCCESS;
    dom::array a;
    if (!present) return a;
    if (e.get_array().get(a) != SUCCESS)
        throw schema_error{std::string("\"") + name + "\" must be an array, got " + type_name(e.type())};
    return a;
}

/// Loads and parses `path`, then runs `walk` on the root; the buffer and DOM die with this frame.
template <class Walk>
csj_status parse(const char *path, csj_file **out, Walk walk) {
    csj_file *f = new (std::nothrow) csj_file();
    *out = f;
    if (!f) return CSJ_IO_ERROR;
    try {
        file_text json;
        if (!json.open(path, f->message)) return CSJ_IO_ERROR;
        dom::parser parser;
        dom::element root;
        error_code err = parser.parse(json.data, json.size, false).get(root);
        if (err) {
            f->message = std::string("invalid JSON: ") + error_message(err) + non_finite_hint(json.data, json.size);
            return CSJ_PARSE_ERROR;
        }
        // The DOM keeps its own copies of numbers and strings: the file text can go before the walk
        // allocates the outputs, so text, DOM and outputs never all peak together.
        json.close();
        walk(*f, root);
    } catch (const schema_error &e) {
        f->message = e.message;
        return CSJ_SCHEMA_ERROR;
    } catch (const std::bad_alloc &) {
        f->message = "out of memory";
        return CSJ_IO_ERROR;
    } catch (const std::exception &e) {
        f->message = e.what();
        return CSJ_PARSE_ERROR;
    }
    return CSJ_OK;
}

}  // namespace

extern "C" {

csj_status csj_parse_instances(const char *path, csj_file **out) {
    return parse(path, out, [](csj_file &f, dom::element root) {
        dom::object o;
        if (root.get_object().get(o) != SUCCESS)
            throw schema_error{std::string("top level must be an object with \"images\", \"annotations\", "
                                           "\"categories\", got ") + type_name(root.type())};
        bool present;
        dom::array images = section_array(o, "images", present);
        if (present) {
            f.images.reserve(images.size());
            size_t i = 0;
            for (dom::element e : images) read_image(f, i++, e);
        }
        dom::array cats = section_array(o, "categories", present);
        if (present) {
            size_t i = 0;
            for (dom::element e : cats) read_category(f, i++, e);
        }
        dom::array anns = section_array(o, "annotations", present);
        if (present) {
            size_t n = anns.size();
            f.annotations.reserve(n);
            f.polygons.reserve(n);
            f.coordinates.reserve(n * 16);
            size_t i = 0;
            for (dom::element e : anns) read_annotation(f, "annotations", i++, e);
        }
    });
}

csj_status csj_parse_results(const char *path, csj_file **out) {
    return parse(path, out, [](csj_file &f, dom::element root) {
        dom::array a;
        if (root.get_array().get(a) != SUCCESS)
            throw schema_error{std::string("results must be an array of objects, got ") + type_name(root.type())};
        f.annotations.reserve(a.size());
        size_t i = 0;
        for (dom::element e : a) read_annotation(f, "results", i++, e);
    });
}

void csj_free(csj_file *file) { delete file; }
const char *csj_error_message(const csj_file *f) { return f ? f->message.c_str() : "out of memory"; }
size_t csj_image_count(const csj_file *f) { return f->images.size(); }
const csj_image *csj_images(const csj_file *f) { return f->images.data(); }
size_t csj_category_count(const csj_file *f) { return f->categories.size(); }
const csj_category *csj_categories(const csj_file *f) { return f->categories.data(); }
size_t csj_annotation_count(const csj_file *f) { return f->annotations.size(); }
const csj_annotation *csj_annotations(const csj_file *f) { return f->annotations.data(); }
size_t csj_polygon_count(const csj_file *f) { return f->polygons.size(); }
const csj_polygon *csj_polygons(const csj_file *f) { return f->polygons.data(); }
size_t csj_coordinate_count(const csj_file *f) { return f->coordinates.size(); }
const double *csj_coordinates(const csj_file *f) { return f->coordinates.data(); }
size_t csj_count_count(const csj_file *f) { return f->counts.size(); }
const uint32_t *csj_counts(const csj_file *f) { return f->counts.data(); }
size_t csj_string_bytes(const csj_file *f) { return f->strings.size(); }
const char *csj_strings(const csj_file *f) { return f->strings.data(); }

}  // extern "C"
