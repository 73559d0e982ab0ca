/* CPU feature detection with CPUID and XGETBV: an instruction set is usable
 * only if the CPU has it *and* the OS saves its registers (XCR0). */
#include "cpu_features.h"

#if defined(__x86_64__) || defined(_M_X64)

#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
static void cpuid(int leaf, int subleaf, unsigned registers[4])
{
    int r[4];
    __cpuidex(r, leaf, subleaf);
    for (int i = 0; i < 4; i++)
        registers[i] = (unsigned)r[i];
}
static unsigned long long xcr0(void) { return _xgetbv(0); }
#else
#include <cpuid.h>
static void cpuid(int leaf, int subleaf, unsigned registers[4])
{
    registers[0] = registers[1] = registers[2] = registers[3] = 0;
    __cpuid_count(leaf, subleaf, registers[0], registers[1], registers[2], registers[3]);
}
static unsigned long long xcr0(void)
{
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}
#endif

enum {
    EAX,
    EBX,
    ECX,
    EDX
};
#define XCR0_YMM 0x6ull         /* SSE and AVX state */
#define XCR0_ZMM_OPMASK 0xE6ull /* + opmask, ZMM0-15 upper halves, ZMM16-31 */

static int os_saves(unsigned long long state)
{
    unsigned leaf1[4];
    cpuid(1, 0, leaf1);
    const int osxsave = (leaf1[ECX] >> 27) & 1;
    return osxsave && (xcr0() & state) == state;
}

static int max_leaf(void)
{
    unsigned leaf0[4];
    cpuid(0, 0, leaf0);
    return (int)leaf0[EAX];
}

int csm_cpu_has_avx2_fma(void)
{
    if (max_leaf() < 7 || !os_saves(XCR0_YMM))
        return 0;
    unsigned leaf1[4], leaf7[4];
    cpuid(1, 0, leaf1);
    cpuid(7, 0, leaf7);
    const int avx = (leaf1[ECX] >> 28) & 1, fma = (leaf1[ECX] >> 12) & 1;
    const int avx2 = (leaf7[EBX] >> 5) & 1;
    return avx && fma && avx2;
}

/* AVX-512 F + BW + VL: every AVX-512 CPU since Skylake-SP (not Xeon Phi);
 * BW/VL turn a mask's bytes into a k-register without a shuffle. */
int csm_cpu_has_avx512(void)
{
    if (!csm_cpu_has_avx2_fma() || !os_saves(XCR0_ZMM_OPMASK))
        return 0;
    unsigned leaf7[4];
    cpuid(7, 0, leaf7);
    const int f = (leaf7[EBX] >> 16) & 1, bw = (leaf7[EBX] >> 30) & 1, vl = (leaf7[EBX] >> 31) & 1;
    return f && bw && vl;
}

#else

int csm_cpu_has_avx2_fma(void) { return 0; }
int csm_cpu_has_avx512(void) { return 0; }

#endif
