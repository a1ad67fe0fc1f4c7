/*
 * fuzz_ops.h - what the two files of the fuzz_ops target share: the
 * program's state (tensor slots in two ctxs), the limits it keeps to, and
 * the helpers every instruction uses to pick its arguments and to check and
 * keep its result (fuzz_ops.c); the instructions that call ops are in
 * fuzz_ops_calls.c.
 */
#ifndef GF_FUZZ_OPS_H
#define GF_FUZZ_OPS_H

#include "fuzz.h"

#include <math.h>
#include <stdio.h>

#include "gradflow/nn.h"

#define SLOTS 16
/* A tensor holds at most SMALL_NUMEL elements, or at least HUGE_NUMEL: the
 * library allocates whatever size int64 can count, so a tensor in between
 * could really be allocated; one of HUGE_NUMEL (2 TiB of f32) is refused by
 * the sanitizers' 1 GiB limit and the driver's address-space limit. */
#define SMALL_NUMEL (INT64_C(1) << 12)
#define HUGE_NUMEL (INT64_C(1) << 39)

typedef struct {
    gf_tensor *t; /* NULL: empty */
    int c;        /* which ctx */
    int depth;    /* the scope depth its handle lives in */
} slot;

typedef struct {
    gf_fuzz_in in;
    gf_ctx *c[2];
    int depth[2];
    slot s[SLOTS];
    bool cycle;   /* a create_graph backward made .grad hold its own graph */
} prog;

/* GF_FUZZ_TRACE=1 prints each call and its outcome (to read a failing
 * input with the driver). */
extern bool tracing;
#define TRACE(...) (tracing ? (void)fprintf(stderr, __VA_ARGS__) : (void)0)

/* Milestones a program reached (for the seed search, gf_fuzz_seeds). */
enum { M_BACKWARD, M_CREATE_GRAPH, M_GRAD_OF, M_STEP, M_INPLACE, M_GRADCHECK, M_EAGER,
       M_MATMUL, M_SHARE, M_MODULE, M_COUNT };
extern unsigned reached;

/* Argument values: floats (bad ones included), values an i64 tensor can
 * take (its extremes included), sizes (bad and huge ones included). */
extern const double vals[16];
extern const double ivals[14];
extern const int64_t sizes[16];
#define PICK(p, table) ((table)[gf_fuzz_u8(&(p)->in) % (sizeof(table) / sizeof *(table))])

static inline uint8_t u8(prog *p) { return gf_fuzz_u8(&p->in); }
static inline bool flag(prog *p) { return u8(p) & 1; }
static inline int small_int(prog *p, int lo, int hi) { return lo + u8(p) % (hi - lo + 1); }

/* a * b, saturated at 2^100 (far above any int64 size). */
static inline unsigned __int128 sat_mul(unsigned __int128 a, unsigned __int128 b) {
    const unsigned __int128 cap = (unsigned __int128)1 << 100;
    return b && a > cap / b ? cap : a * b > cap ? cap : a * b;
}

/* Product of the positive entries (-1 counts as 1), saturated. */
static inline unsigned __int128 pos_product(int ndim, const int64_t *shape) {
    unsigned __int128 n = 1;
    for (int i = 0; i < ndim && i < GF_MAX_DIMS + 2; i++)
        if (shape[i] > 0) n = sat_mul(n, (unsigned __int128)shape[i]);
    return n;
}

static inline bool has_zero(int ndim, const int64_t *shape) {
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0) return true;
    return false;
}

/* Whether a result of n elements may exist: computed (small) or never
 * allocatable (huge). */
static inline bool allowed(unsigned __int128 n) {
    return n <= (unsigned __int128)SMALL_NUMEL || n >= (unsigned __int128)HUGE_NUMEL;
}

/* The element count shape describes (0 with a zero dim, INT64_MAX past
 * it), or -1 with a negative dim. */
static inline int64_t numel_of_shape(int ndim, const int64_t *shape) {
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) return -1;
    if (has_zero(ndim, shape)) return 0;
    unsigned __int128 n = pos_product(ndim, shape);
    return n > (unsigned __int128)INT64_MAX ? INT64_MAX : (int64_t)n;
}

static inline gf_tensor *T(slot *s) { return s ? s->t : NULL; }

static inline int64_t N(slot *s) { return s && s->t ? gf_numel(s->t) : 0; }

/* Small: few elements, and no huge dim hidden behind a zero one (an op that
 * drops the zero dim could otherwise make a result neither small nor huge). */
static inline bool small(slot *s) {
    return !s || !s->t ||
           pos_product(gf_ndim(s->t), gf_shape(s->t)) <= (unsigned __int128)SMALL_NUMEL;
}

static inline bool is_i64(slot *s) { return s && s->t && gf_dtype_of(s->t) == GF_I64; }

static inline bool is_float(slot *s) { return s && s->t && gf_dtype_of(s->t) != GF_I64; }

static inline int ctx_index(prog *p, gf_ctx *c) { return c == p->c[1]; }

/* The ctx of the first non-NULL of n tensors, or NULL. */
static inline gf_ctx *ctx_of(int n, gf_tensor *const *ts) {
    for (int i = 0; i < n; i++)
        if (ts[i]) return gf_ctx_of(ts[i]);
    return NULL;
}

/* fuzz_ops.c */
gf_dtype pick_dtype(prog *p);
int64_t pick_dim(prog *p);
void fit_shape(int ndim, int64_t *shape);
void pick_shape(prog *p, int *ndim, int64_t *shape);
slot *pick(prog *p);
gf_ctx *pick_ctx(prog *p);
void put(prog *p, gf_tensor *t);
void done(prog *p, const char *what, gf_tensor *y, int n, gf_tensor *const *in);
void status_done(gf_ctx *c, const char *what, gf_status s);

/* fuzz_ops_calls.c: one instruction each */
void op_create(prog *p);
void op_unary(prog *p);
void op_scalar(prog *p);
void op_binary(prog *p);
void op_matmul(prog *p);
void op_reduce(prog *p);
void op_shape(prog *p);
void op_nn(prog *p);
void op_inplace(prog *p);
void op_autograd(prog *p);
void op_module(prog *p);
void op_tools(prog *p);

#endif /* GF_FUZZ_OPS_H */
