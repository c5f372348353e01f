#include <cblas.h>
// OpenBLAS thread control, so our own parallel loops never oversubscribe the cores.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
// glibc allocator tuning (mallopt), used by the engine's tensor storage.
#include <malloc.h>
