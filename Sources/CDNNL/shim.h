// oneDNN (Debian's libdnnl-dev 2.6, C API). Its CPU runtime is OpenMP; the engine calls it single-threaded
// (Sources/Engine/OneDNN.swift says why).
#include <oneapi/dnnl/dnnl.h>

// Execution-argument ids as plain constants (the header defines them through chains of macros).
enum {
    CDNNL_ARG_SRC = DNNL_ARG_SRC,
    CDNNL_ARG_DST = DNNL_ARG_DST,
    CDNNL_ARG_WEIGHTS = DNNL_ARG_WEIGHTS,
    CDNNL_ARG_BIAS = DNNL_ARG_BIAS,
    CDNNL_ARG_DIFF_SRC = DNNL_ARG_DIFF_SRC,
    CDNNL_ARG_DIFF_DST = DNNL_ARG_DIFF_DST,
    CDNNL_ARG_DIFF_WEIGHTS = DNNL_ARG_DIFF_WEIGHTS,
    CDNNL_ARG_SCRATCHPAD = DNNL_ARG_SCRATCHPAD,
    CDNNL_ARG_FROM = DNNL_ARG_FROM,
    CDNNL_ARG_TO = DNNL_ARG_TO,
};

// The execution argument of the second input of binary post-op number `index`.
static inline int cdnnl_arg_post_op_src1(int index) {
    return DNNL_ARG_ATTR_MULTIPLE_POST_OP(index) | DNNL_ARG_SRC_1;
}
