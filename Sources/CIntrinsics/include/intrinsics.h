// Compiler intrinsics that Swift cannot call directly (clang defines them as macros or
// builtins). Engine re-exports them as Swift functions (Engine/Memory.swift).
#pragma once

// Asks the CPU to bring the cache line holding `p` into the caches ahead of a read (a hint:
// no effect on results, no fault on any address).
static inline void lk_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }
