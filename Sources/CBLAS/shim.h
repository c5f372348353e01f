#include <cblas.h>
// OpenBLAS thread control, so our own parallel loops never oversubscribe the cores.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
// glibc allocator tuning (mallopt), used by the engine's tensor storage.
#include <malloc.h>
// The core whose kernels OpenBLAS's dynamic-arch build picked for this CPU (e.g. "Haswell", "SkylakeX", "Zen";
// "Prescott" when it does not know the CPU: SSE3 kernels).
char *openblas_get_corename(void);
