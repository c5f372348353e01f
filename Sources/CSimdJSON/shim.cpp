// COCO instances/results files → flat arrays, through simdjson's On-Demand API: it reads values
// straight from the file text into our arrays, so no DOM tape (a second, larger copy of the file) is
// built — on a 220 MB instances file this halves both the time and the peak memory.
// Type and presence checks live here (they need the JSON types); meaning checks (unknown image ids,
// sizes, scores) are Swift's, which sees the whole dataset.
#include "CSimdJSON.h"

#include <simdjson.h>

#include <cmath>
#include <cstdio>
#include <new>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
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

/// A failure inside the walk; turned into a status and message before returning to C.
struct walk_error {
    csj_status status;
    std::string message;
};

const char *type_name(ondemand::json_type t) {
    switch (t) {
        case ondemand::json_type::array: return "an array";
        case ondemand::json_type::object: return "an object";
        case ondemand::json_type::number: return "a number";
        case ondemand::json_type::string: return "a string";
        case ondemand::json_type::boolean: return "a boolean";
        case ondemand::json_type::null: return "null";
    }
    return "a value";
}

/// On-demand parsing finds malformed JSON while walking, so any error other than a type mismatch
/// is reported as invalid JSON at the record being read.
[[noreturn]] void fail_json(error_code e, const std::string &where) {
    throw walk_error{CSJ_PARSE_ERROR, std::string("invalid JSON") + (where.empty() ? "" : " in " + where) + ": " +
                                          error_message(e)};
}

/// Reads one record's fields; a schema problem is remembered (first one wins) and the rest of the
/// record is still scanned for its "id", so the message can name it.
struct record {
    const char *section;
    size_t index;
    bool has_id = false;
    int64_t id = 0;
    std::string problem;

    std::string where() const {
        std::string s = std::string(section) + "[" + std::to_string(index) + "]";
        if (has_id) s += " (id " + std::to_string(id) + ")";
        return s;
    }

    template <class T>
    T check(simdjson_result<T> r) const {
        T v;
        error_code e = std::move(r).get(v);
        if (e) fail_json(e, where());
        return v;
    }

    bool bad(std::string_view field, const std::string &what) {
        if (problem.empty()) problem = "\"" + std::string(field) + "\" " + what;
        return false;
    }

    ondemand::json_type type(ondemand::value &v) const { return check(v.type()); }

    /// Ids may be written as integral floats (json.dump of numpy floats); pycocotools accepts them.
    bool integer(ondemand::value v, std::string_view field, int64_t &out) {
        ondemand::json_type t = type(v);
        if (t != ondemand::json_type::number) return bad(field, std::string("must be an integer, got ") + type_name(t));
        ondemand::number_type nt = check(v.get_number_type());
        if (nt == ondemand::number_type::signed_integer) {
            out = check(v.get_int64());
            return true;
        }
        if (nt == ondemand::number_type::unsigned_integer) return bad(field, "is out of the 64-bit integer range");
        double d = check(v.get_double());
        if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.007199254740992e15) {
            out = (int64_t)d;
            return true;
        }
        return bad(field, "must be an integer, got " + std::to_string(d));
    }

    bool number(ondemand::value v, std::string_view field, double &out) {
        double d;
        error_code e = v.get_double().get(d);
        if (e == SUCCESS) {
            out = d;
            return true;
        }
        if (e != INCORRECT_TYPE) fail_json(e, where());
        return bad(field, std::string("must be a number, got ") + type_name(type(v)));
    }

    bool string(ondemand::value v, std::string_view field, std::string_view &out) {
        error_code e = v.get_string().get(out);
        if (e == SUCCESS) return true;
        if (e != INCORRECT_TYPE) fail_json(e, where());
        return bad(field, std::string("must be a string, got ") + type_name(type(v)));
    }

    void finish() const {
        if (!problem.empty()) throw walk_error{CSJ_SCHEMA_ERROR, where() + ": " + problem};
    }
};

void append_string(csj_file &f, std::string_view s, int64_t &start, int64_t &len) {
    start = (int64_t)f.strings.size();
    len = (int64_t)s.size();
    f.strings.append(s.data(), s.size());
}

/// Polygons ([[x, y, ...], ...]) or RLE ({"counts": [...] | "...", "size": [h, w]}).
bool read_segmentation(csj_file &f, record &r, ondemand::value v, csj_annotation &a) {
    ondemand::json_type t = r.type(v);
    if (t == ondemand::json_type::array) {
        a.seg_kind = CSJ_SEG_POLYGONS;
        a.seg_start = (int64_t)f.polygons.size();
        size_t k = 0;
        for (auto pr : r.check(v.get_array())) {
            ondemand::value p = r.check(std::move(pr));
            ondemand::json_type pt = r.type(p);
            if (pt != ondemand::json_type::array)
                return r.bad("segmentation", "polygon " + std::to_string(k) + " must be an array of numbers, got " +
                                                 type_name(pt));
            csj_polygon poly{(int64_t)f.coordinates.size(), 0};
            for (auto cr : r.check(p.get_array())) {
                double d;
                if (!r.number(r.check(std::move(cr)), "segmentation", d)) return false;
                f.coordinates.push_back(d);
            }
            poly.count = (int64_t)f.coordinates.size() - poly.start;
            f.polygons.push_back(poly);
            k++;
        }
        a.seg_count = (int64_t)k;
        return true;
    }
    if (t != ondemand::json_type::object)
        return r.bad("segmentation", std::string("must be a list of polygons or an RLE object, got ") + type_name(t));
    bool has_counts = false, has_size = false;
    for (auto fr : r.check(v.get_object())) {
        ondemand::field fld = r.check(std::move(fr));
        std::string_view k = r.check(fld.unescaped_key());
        ondemand::value x = fld.value();
        if (k == "size") {
            size_t n = 0;
            if (r.type(x) != ondemand::json_type::array) return r.bad("segmentation", "RLE \"size\" must be [height, width]");
            for (auto er : r.check(x.get_array())) {
                int64_t d;
                if (!r.integer(r.check(std::move(er)), "segmentation.size", d)) return false;
                if (n == 0) a.seg_h = d;
                if (n == 1) a.seg_w = d;
                n++;
            }
            if (n != 2) return r.bad("segmentation", "RLE \"size\" must be [height, width]");
            has_size = true;
        } else if (k == "counts") {
            ondemand::json_type ct = r.type(x);
            if (ct == ondemand::json_type::string) {
                std::string_view s = r.check(x.get_string());
                a.seg_kind = CSJ_SEG_RLE_STRING;
                append_string(f, s, a.seg_start, a.seg_count);
            } else if (ct == ondemand::json_type::array) {
                a.seg_kind = CSJ_SEG_RLE_COUNTS;
                a.seg_start = (int64_t)f.counts.size();
                for (auto er : r.check(x.get_array())) {
                    int64_t n;
                    if (!r.integer(r.check(std::move(er)), "segmentation", n)) return false;
                    if (n < 0 || n > (int64_t)UINT32_MAX) return r.bad("segmentation", "RLE counts must be non-negative 32-bit integers");
                    f.counts.push_back((uint32_t)n);
                }
                a.seg_count = (int64_t)f.counts.size() - a.seg_start;
            } else {
                return r.bad("segmentation", std::string("RLE \"counts\" must be a list of integers or a string, got ") +
                                                 type_name(ct));
            }
            has_counts = true;
        }
    }
    if (!has_counts) return r.bad("segmentation", "RLE has no \"counts\"");
    if (!has_size) return r.bad("segmentation", "RLE has no \"size\"");
    return true;
}

void read_annotation(csj_file &f, const char *section, size_t index, ondemand::value v) {
    record r{section, index};
    ondemand::json_type t = r.type(v);
    if (t != ondemand::json_type::object)
        throw walk_error{CSJ_SCHEMA_ERROR, r.where() + ": must be an object, got " + type_name(t)};
    csj_annotation a{};
    for (auto fr : r.check(v.get_object())) {
        ondemand::field fld = r.check(std::move(fr));
        std::string_view k = r.check(fld.unescaped_key());
        ondemand::value x = fld.value();
        if (k == "id") {
            if (r.integer(x, k, a.id)) {
                a.flags |= CSJ_HAS_ID;
                r.has_id = true;
                r.id = a.id;
            }
            continue;
        }
        if (!r.problem.empty()) continue;  // only looking for the id now
        if (k == "image_id") {
            if (r.integer(x, k, a.image_id)) a.flags |= CSJ_HAS_IMAGE_ID;
        } else if (k == "category_id") {
            if (r.integer(x, k, a.category_id)) a.flags |= CSJ_HAS_CATEGORY_ID;
        } else if (k == "bbox") {
            ondemand::json_type bt = r.type(x);
            if (bt != ondemand::json_type::array) {
                r.bad(k, std::string("must be an array of 4 numbers, got ") + type_name(bt));
                continue;
            }
            size_t n = 0;
            bool ok = true;
            for (auto cr : r.check(x.get_array())) {
                double d;
                if (!r.number(r.check(std::move(cr)), k, d)) { ok = false; break; }
                if (n < 4) a.bbox[n] = d;
                n++;
            }
            if (!ok) continue;
            if (n == 0) a.flags |= CSJ_BBOX_EMPTY;
            else if (n != 4) r.bad(k, "must be an array of 4 numbers, got " + std::to_string(n));
            else a.flags |= CSJ_HAS_BBOX;
        } else if (k == "area") {
            if (r.number(x, k, a.area)) a.flags |= CSJ_HAS_AREA;
        } else if (k == "iscrowd") {
            int64_t c = 0;
            if (r.type(x) == ondemand::json_type::boolean) {
                a.iscrowd = r.check(x.get_bool());
                a.flags |= CSJ_HAS_ISCROWD;
            } else if (r.integer(x, k, c)) {
                a.iscrowd = (int32_t)(c != 0);
                a.flags |= CSJ_HAS_ISCROWD;
            }
        } else if (k == "score") {
            if (r.number(x, k, a.score)) a.flags |= CSJ_HAS_SCORE;
        } else if (k == "segmentation") {
            if (r.check(x.is_null())) continue;
            if (read_segmentation(f, r, x, a)) a.flags |= CSJ_HAS_SEGMENTATION;
        }
    }
    r.finish();
    f.annotations.push_back(a);
}

void read_image(csj_file &f, size_t index, ondemand::value v) {
    record r{"images", index};
    ondemand::json_type t = r.type(v);
    if (t != ondemand::json_type::object)
        throw walk_error{CSJ_SCHEMA_ERROR, r.where() + ": must be an object, got " + type_name(t)};
    csj_image im{};
    for (auto fr : r.check(v.get_object())) {
        ondemand::field fld = r.check(std::move(fr));
        std::string_view k = r.check(fld.unescaped_key());
        ondemand::value x = fld.value();
        if (k == "id") {
            if (r.integer(x, k, im.id)) {
                im.flags |= CSJ_HAS_ID;
                r.has_id = true;
                r.id = im.id;
            }
        } else if (!r.problem.empty()) {
            continue;
        } else if (k == "width") {
            if (r.integer(x, k, im.width)) im.flags |= CSJ_HAS_WIDTH;
        } else if (k == "height") {
            if (r.integer(x, k, im.height)) im.flags |= CSJ_HAS_HEIGHT;
        } else if (k == "file_name") {
            std::string_view s;
            if (r.string(x, k, s)) {
                append_string(f, s, im.file_name_start, im.file_name_len);
                im.flags |= CSJ_HAS_FILE_NAME;
            }
        }
    }
    r.finish();
    f.images.push_back(im);
}

void read_category(csj_file &f, size_t index, ondemand::value v) {
    record r{"categories", index};
    ondemand::json_type t = r.type(v);
    if (t != ondemand::json_type::object)
        throw walk_error{CSJ_SCHEMA_ERROR, r.where() + ": must be an object, got " + type_name(t)};
    csj_category c{};
    for (auto fr : r.check(v.get_object())) {
        ondemand::field fld = r.check(std::move(fr));
        std::string_view k = r.check(fld.unescaped_key());
        ondemand::value x = fld.value();
        std::string_view s;
        if (k == "id") {
            if (r.integer(x, k, c.id)) {
                c.flags |= CSJ_HAS_ID;
                r.has_id = true;
                r.id = c.id;
            }
        } else if (!r.problem.empty()) {
            continue;
        } else if (k == "name") {
            if (r.string(x, k, s)) {
                append_string(f, s, c.name_start, c.name_len);
                c.flags |= CSJ_HAS_NAME;
            }
        } else if (k == "supercategory") {
            if (r.string(x, k, s)) {
                append_string(f, s, c.supercategory_start, c.supercategory_len);
                c.flags |= CSJ_HAS_SUPERCATEGORY;
            }
        }
    }
    r.finish();
    f.categories.push_back(c);
}

template <class Read>
void read_section(csj_file &f, const char *name, ondemand::value v, Read read) {
    ondemand::json_type t;
    error_code e = v.type().get(t);
    if (e) fail_json(e, std::string("\"") + name + "\"");
    if (t != ondemand::json_type::array)
        throw walk_error{CSJ_SCHEMA_ERROR, std::string("\"") + name + "\" must be an array, got " + type_name(t)};
    ondemand::array arr;
    if ((e = v.get_array().get(arr))) fail_json(e, name);
    size_t i = 0;
    for (auto er : arr) {
        ondemand::value x;
        if ((e = std::move(er).get(x))) fail_json(e, std::string(name) + "[" + std::to_string(i) + "]");
        read(f, i++, x);
    }
}

/// Which records of the big array a walker reads. Large files are walked by two threads over the
/// same text, each with its own parser: the first reads everything up to the record that starts at
/// or after `split` (and every other section), the second only the records from there on. Both
/// find the same boundary because they test the same byte positions.
struct half {
    enum kind { whole, first, second } which = whole;
    const char *split = nullptr;

    /// Whether record `v` is this walker's; `stop` is set when the first half reaches the split.
    bool mine(ondemand::value &v, bool &stop) const {
        if (which == whole) return true;
        bool after = v.raw_json_token().data() >= split;
        if (which == first && after) stop = true;
        return which == first ? !after : after;
    }
};

/// The records of one top-level array (the instances' "annotations" or the results list).
void read_records(csj_file &f, const char *section, ondemand::value v, const half &h) {
    ondemand::json_type t;
    error_code e = v.type().get(t);
    if (e) fail_json(e, std::string("\"") + section + "\"");
    if (t != ondemand::json_type::array) {
        if (h.which == half::second) return;
        throw walk_error{CSJ_SCHEMA_ERROR, std::string("\"") + section + "\" must be an array, got " + type_name(t)};
    }
    ondemand::array arr;
    if ((e = v.get_array().get(arr))) fail_json(e, section);
    size_t i = 0;
    bool past = false;
    for (auto er : arr) {
        ondemand::value x;
        if ((e = std::move(er).get(x))) fail_json(e, std::string(section) + "[" + std::to_string(i) + "]");
        bool stop = false;
        if (!past && h.mine(x, stop)) read_annotation(f, section, i, x);
        past = past || stop;  // the first half skips the rest (cheap: no values are parsed)
        i++;
    }
}

void walk_instances(csj_file &f, ondemand::document &doc, const half &h) {
    ondemand::json_type t;
    error_code e = doc.type().get(t);
    if (e) fail_json(e, "");
    if (t != ondemand::json_type::object) {
        if (h.which == half::second) return;
        throw walk_error{CSJ_SCHEMA_ERROR, std::string("top level must be an object with \"images\", "
                                                       "\"annotations\", \"categories\", got ") + type_name(t)};
    }
    ondemand::object root;
    if ((e = doc.get_object().get(root))) fail_json(e, "");
    for (auto fr : root) {
        ondemand::field fld;
        if ((e = std::move(fr).get(fld))) fail_json(e, "top-level object");
        std::string_view k;
        if ((e = fld.unescaped_key().get(k))) fail_json(e, "top-level object");
        if (k == "annotations") {
            read_records(f, "annotations", fld.value(), h);
            if (h.which == half::second) return;
        } else if (h.which == half::second) {
            continue;
        } else if (k == "images") {
            read_section(f, "images", fld.value(), read_image);
        } else if (k == "categories") {
            read_section(f, "categories", fld.value(), read_category);
        }
    }
}

void walk_results(csj_file &f, ondemand::document &doc, const half &h) {
    ondemand::json_type t;
    error_code e = doc.type().get(t);
    if (e) fail_json(e, "");
    if (t != ondemand::json_type::array) {
        if (h.which == half::second) return;
        throw walk_error{CSJ_SCHEMA_ERROR, std::string("results must be an array of objects, got ") + type_name(t)};
    }
    ondemand::value v;
    if ((e = doc.get_value().get(v))) fail_json(e, "");
    read_records(f, "results", v, h);
}

/// Appends `b` (the second half's records) to `a`, moving its offsets past `a`'s buffers.
void append_part(csj_file &a, csj_file &b) {
    int64_t polys = (int64_t)a.polygons.size(), coords = (int64_t)a.coordinates.size();
    int64_t counts = (int64_t)a.counts.size(), chars = (int64_t)a.strings.size();
    for (csj_annotation &r : b.annotations) {
        if (r.seg_kind == CSJ_SEG_POLYGONS) r.seg_start += polys;
        else if (r.seg_kind == CSJ_SEG_RLE_COUNTS) r.seg_start += counts;
        else if (r.seg_kind == CSJ_SEG_RLE_STRING) r.seg_start += chars;
    }
    for (csj_polygon &p : b.polygons) p.start += coords;
    a.annotations.insert(a.annotations.end(), b.annotations.begin(), b.annotations.end());
    a.polygons.insert(a.polygons.end(), b.polygons.begin(), b.polygons.end());
    a.coordinates.insert(a.coordinates.end(), b.coordinates.begin(), b.coordinates.end());
    a.counts.insert(a.counts.end(), b.counts.begin(), b.counts.end());
    a.strings += b.strings;
}

/// One walker over the whole text: its own parser, output and error.
struct part {
    csj_file out;
    csj_status status = CSJ_OK;

    template <class Walk>
    void run(const padded_string &json, Walk walk, const half &h) {
        try {
            ondemand::parser parser;
            ondemand::document doc;
            error_code err = parser.iterate(json).get(doc);
            if (err) fail_json(err, "");
            size_t share = h.which == half::whole ? json.size() : json.size() / 2;
            out.annotations.reserve(share / 256);
            out.coordinates.reserve(share / 16);
            walk(out, doc, h);
            const char *rest;
            if (h.which != half::second && doc.current_location().get(rest) == SUCCESS)
                throw walk_error{CSJ_PARSE_ERROR, "invalid JSON: unexpected content after the top-level value"};
        } catch (const walk_error &e) {
            out.message = e.message;
            status = e.status;
        } catch (const std::bad_alloc &) {
            out.message = "out of memory";
            status = CSJ_IO_ERROR;
        } catch (const std::exception &e) {
            out.message = std::string("invalid JSON: ") + e.what();
            status = CSJ_PARSE_ERROR;
        }
    }
};

/// Files below this size are walked by one thread.
constexpr size_t split_bytes = 16u << 20;

/// Loads `path` and walks it, in two halves on two threads when it is large; the first half's error
/// wins, as it comes first in the file. The text and the parsers are freed before returning.
template <class Walk>
csj_status parse(const char *path, csj_file **out, Walk walk) {
    csj_file *f = new (std::nothrow) csj_file();
    *out = f;
    if (!f) return CSJ_IO_ERROR;
    padded_string json;
    error_code err = padded_string::load(path).get(json);
    if (err) {
        f->message = std::string("cannot read file: ") + error_message(err);
        return CSJ_IO_ERROR;
    }
    if (json.size() < split_bytes || std::thread::hardware_concurrency() < 2) {
        part p;
        p.run(json, walk, half{});
        *f = std::move(p.out);
        return p.status;
    }
    const char *split = json.data() + json.size() / 2;
    part a, b;
    try {
        std::thread second([&] { b.run(json, walk, half{half::second, split}); });
        a.run(json, walk, half{half::first, split});
        second.join();
    } catch (const std::system_error &) {
        a = part();
        a.run(json, walk, half{});
        *f = std::move(a.out);
        return a.status;
    }
    if (a.status != CSJ_OK) {
        *f = std::move(a.out);
        return a.status;
    }
    if (b.status != CSJ_OK) {
        *f = std::move(b.out);
        return b.status;
    }
    try {
        append_part(a.out, b.out);
    } catch (const std::bad_alloc &) {
        f->message = "out of memory";
        return CSJ_IO_ERROR;
    }
    *f = std::move(a.out);
    return CSJ_OK;
}

}  // namespace

extern "C" {

csj_status csj_parse_instances(const char *path, csj_file **out) { return parse(path, out, walk_instances); }

csj_status csj_parse_results(const char *path, csj_file **out) { return parse(path, out, walk_results); }

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
