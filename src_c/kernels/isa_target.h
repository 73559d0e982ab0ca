/* Compile the functions between CSM_TARGET_BEGIN("isa,...") and CSM_TARGET_END
 * for that instruction set only, whatever the global compiler flags: wheels
 * stay baseline and dispatch.c decides at run time what may execute.
 * (MSVC needs nothing: its intrinsics are always available.) */
#ifndef CSM_ISA_TARGET_H
#define CSM_ISA_TARGET_H

#define CSM_PRAGMA(text) _Pragma(#text)

#if defined(__clang__)
#define CSM_TARGET_BEGIN(isa) CSM_PRAGMA(clang attribute push(__attribute__((target(isa))), apply_to = function))
#define CSM_TARGET_END CSM_PRAGMA(clang attribute pop)
#elif defined(__GNUC__)
#define CSM_TARGET_BEGIN(isa) CSM_PRAGMA(GCC push_options) CSM_PRAGMA(GCC target(isa))
#define CSM_TARGET_END CSM_PRAGMA(GCC pop_options)
#else
#define CSM_TARGET_BEGIN(isa)
#define CSM_TARGET_END
#endif

#endif /* CSM_ISA_TARGET_H */
