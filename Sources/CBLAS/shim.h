#include <cblas.h>
// OpenBLAS thread control, so our own parallel loops never oversubscribe the cores.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
// glibc allocator tuning (mallopt), used by the engine's tensor storage.
#include <malloc.h>
// The core whose kernels OpenBLAS's dynamic-arch build picked for this CPU (e.g. "Haswell", "SkylakeX", "Zen";
// "Prescott" when it does not know the CPU: SSE3 kernels).
char *openblas_get_corename(void);
// Flush-to-zero and denormals-are-zero (MXCSR bits 15 and 6) for the calling thread's SSE/AVX arithmetic: late in
// training, gradients and activations underflow into denormals, which every x86 core handles slowly.
#if defined(__x86_64__)
static inline int acmix_flushes_denormals(void) { return (__builtin_ia32_stmxcsr() & 0x8040u) == 0x8040u; }
static inline void acmix_set_flush_denormals(int on) {
    unsigned int csr = __builtin_ia32_stmxcsr();
    __builtin_ia32_ldmxcsr(on ? (csr | 0x8040u) : (csr & ~0x8040u));
}
#else
static inline int acmix_flushes_denormals(void) { return 0; }
static inline void acmix_set_flush_denormals(int on) { (void)on; }
#endif
// A spin-wait hint (x86 PAUSE, Arm YIELD): a thread polling a flag gives the core's execution units to its SMT
// sibling and saves power, instead of flooding the pipeline with loads.
#if defined(__x86_64__)
static inline void acmix_spin_pause(void) { __builtin_ia32_pause(); }
#elif defined(__aarch64__)
static inline void acmix_spin_pause(void) { __asm__ __volatile__("yield"); }
#else
static inline void acmix_spin_pause(void) {}
#endif
