/*
 * env.h - reading the GF_* environment variables (engine.c, and the GEMM
 * variant and blocking in ops/kernels/): a bad value gives exactly one
 * warning line on stderr per process and variable, naming the value, what
 * was expected and the fallback used. No graph code: kernels include it.
 */
#ifndef GF_ENV_H
#define GF_ENV_H

#include <stdbool.h>

/* The value of the environment variable name, NULL when it is unset or
 * empty (an empty value means the default, as if unset). */
const char *gf__env(const char *name);

/* Prints "gradflow: " and the message on stderr, unless a warning about the
 * variable name was already printed by this process. Thread-safe. */
void gf__env_warn(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* What gf__env_int found. */
typedef enum { GF__ENV_UNSET, GF__ENV_OK, GF__ENV_BAD } gf__env_result;

/* name as a decimal integer in [lo, hi] (surrounding blanks allowed, nothing
 * else): GF__ENV_OK with *out set; GF__ENV_UNSET when unset or empty;
 * GF__ENV_BAD otherwise (the caller warns, with its fallback, through
 * gf__env_warn). */
gf__env_result gf__env_int(const char *name, long long lo, long long hi, long long *out);

#endif /* GF_ENV_H */
