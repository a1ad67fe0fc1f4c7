/*
 * gemm_pack_avx2.c - AVX2 packing of GEMM operands for the avx2 variant's
 * tiles (6x16 f32, 6x8 f64); the contract is pack_a / pack_b in
 * ../gemm_ukr.h. Packing A with contiguous rows and packing a transposed B
 * (contiguous columns) are transposes: done here in registers, 8x8 / 6x8
 * (f32) or 4x4 (f64) blocks at a time, instead of one scalar load and store
 * per element. A read as a transpose and row-major f32 B are copies, done in
 * an order that keeps the cache lines they touch few (see each function).
 * Other strides are left to the driver's portable packing. Compiled with
 * -mavx2 -mfma (only this directory).
 */
#include "../gemm_ukr.h"

#include <immintrin.h>

#define S_MR 6
#define S_NR 16
#define D_MR 6
#define D_NR 8

/* r[q] := column q of the 8x8 matrix whose rows are r[0..7]. */
static inline void tr8x8_ps(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* r[q] := column q of the 4x4 matrix whose rows are r[0..3]. */
static inline void tr4x4_pd(__m256d r[4]) {
    __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
    __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
    r[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    r[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}

/* Packs columns [p, p+8) of 6 rows r[0..5] (8 values each, p a multiple of
 * 8) as 48 consecutive values o[q*6 + i] = r[i][q]. Each 128-bit lane does
 * 4 columns (lane 0 columns 0-3, lane 1 columns 4-7): a 4x4 transpose of
 * rows 0-3 gives c_q = rows 0-3 of column q, rows 4-5 interleave into u, w,
 * and shuffles cut these into the 6 runs of 4 values of the packed order,
 * which lane swaps gather into 6 full vectors (aligned stores whenever kc
 * is a multiple of 8: panels start 64-byte aligned, 48 values are 192
 * bytes). */
static inline void pack6x8_ps(const __m256 r[6], float *o) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 c0 = _mm256_shuffle_ps(t0, t2, 0x44), c1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 c2 = _mm256_shuffle_ps(t1, t3, 0x44), c3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u = _mm256_unpacklo_ps(r[4], r[5]), w = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 x1 = _mm256_shuffle_ps(u, c1, 0x44), x2 = _mm256_shuffle_ps(c1, u, 0xEE);
    __m256 x4 = _mm256_shuffle_ps(w, c3, 0x44), x5 = _mm256_shuffle_ps(c3, w, 0xEE);
    _mm256_storeu_ps(o, _mm256_permute2f128_ps(c0, x1, 0x20));
    _mm256_storeu_ps(o + 8, _mm256_permute2f128_ps(x2, c2, 0x20));
    _mm256_storeu_ps(o + 16, _mm256_permute2f128_ps(x4, x5, 0x20));
    _mm256_storeu_ps(o + 24, _mm256_permute2f128_ps(c0, x1, 0x31));
    _mm256_storeu_ps(o + 32, _mm256_permute2f128_ps(x2, c2, 0x31));
    _mm256_storeu_ps(o + 40, _mm256_permute2f128_ps(x4, x5, 0x31));
}

/* f32 A with contiguous columns (rsa == 1, A read as a transpose), mr = 6:
 * packed column of panel q at p is the 6 adjacent values A[q*6 + p*csa...].
 * The whole block is done 8 columns of A at a time, across all panels: a
 * panel at a time would come back to each column of A once per panel, and
 * with csa a multiple of 1024 the columns map to the same few cache sets,
 * so they would be evicted in between (A^T with 1024 rows ran from L2). */
static void spack_a_cols(int64_t mc, int64_t kc, const float *A, int64_t csa, float *restrict ap) {
    const int64_t full = mc / S_MR * S_MR;
    for (int64_t p0 = 0; p0 < kc; p0 += 8) {
        const int64_t p1 = kc - p0 < 8 ? kc : p0 + 8;
        for (int64_t ir = 0; ir < full; ir += S_MR) {
            float *dst = ap + ir * kc;
            for (int64_t p = p0; p < p1; p++) {
                /* values 0-3 and 2-5: two overlapping 4-wide copies */
                const float *col = A + ir + p * csa;
                _mm_storeu_ps(dst + p * S_MR, _mm_loadu_ps(col));
                _mm_storeu_ps(dst + p * S_MR + 2, _mm_loadu_ps(col + 2));
            }
        }
        if (full < mc) {
            float *dst = ap + full * kc;
            for (int64_t p = p0; p < p1; p++)
                for (int64_t i = 0; i < S_MR; i++)
                    dst[p * S_MR + i] = full + i < mc ? A[full + i + p * csa] : 0;
        }
    }
}

/* f32 A, mr = 6. Contiguous rows (csa == 1): 8 columns of the panel's 6
 * rows at a time (pack6x8_ps; rows past mc read as zero). A's rows are far
 * apart and short, so the next panel's rows are prefetched while this one
 * is packed. Contiguous columns: spack_a_cols. */
int gf__spack_a_avx2(int64_t mc, int64_t kc, const float *A, int64_t rsa, int64_t csa,
                     float *restrict ap) {
    if (csa != 1 && rsa != 1) return 0;
    if (csa != 1) {
        spack_a_cols(mc, kc, A, csa, ap);
        return 1;
    }
    for (int64_t ir = 0; ir < mc; ir += S_MR, ap += S_MR * kc) {
        const float *a = A + ir * rsa;
        const int64_t mb = mc - ir < S_MR ? mc - ir : S_MR;
        const int64_t next = mc - ir - mb < S_MR ? mc - ir - mb : S_MR;
        for (int64_t i = 0; i < next; i++)
            for (int64_t p = 0; p < kc; p += 16)
                _mm_prefetch((const char *)(a + (mb + i) * rsa + p), _MM_HINT_T0);
        int64_t p = 0;
        if (mb == S_MR) {
            for (; p + 8 <= kc; p += 8) {
                __m256 r[6];
                for (int i = 0; i < 6; i++) r[i] = _mm256_loadu_ps(a + i * rsa + p);
                pack6x8_ps(r, ap + p * S_MR);
            }
        } else {
            for (; p + 8 <= kc; p += 8) {
                __m256 r[6];
                for (int i = 0; i < 6; i++)
                    r[i] = i < mb ? _mm256_loadu_ps(a + i * rsa + p) : _mm256_setzero_ps();
                pack6x8_ps(r, ap + p * S_MR);
            }
        }
        for (; p < kc; p++)
            for (int64_t i = 0; i < S_MR; i++) ap[p * S_MR + i] = i < mb ? a[i * rsa + p] : 0;
    }
    return 1;
}

/* Row-major f32 B (csb == 1), nr = 16: 8 panels at a time, row by row
 * (8 sequential 64-byte reads per row of B, 8 destination streams): all
 * panels per row would write to as many streams as panels (slow once
 * there are dozens), one panel at a time reads a new row of B, often a new
 * page, for each 64 bytes. */
static void spack_b_rows(int64_t nc, int64_t kc, const float *B, int64_t rsb, float *restrict bp) {
    enum { G = 8 };
    const int64_t full = nc / S_NR;
    for (int64_t j0 = 0; j0 < full; j0 += G) {
        const int64_t g = full - j0 < G ? full - j0 : G;
        for (int64_t p = 0; p < kc; p++) {
            const float *row = B + p * rsb + j0 * S_NR;
            float *dst = bp + j0 * S_NR * kc + p * S_NR;
            for (int64_t q = 0; q < g; q++) {
                _mm256_store_ps(dst + q * S_NR * kc, _mm256_loadu_ps(row + q * S_NR));
                _mm256_store_ps(dst + q * S_NR * kc + 8, _mm256_loadu_ps(row + q * S_NR + 8));
            }
        }
    }
    if (full * S_NR < nc) { /* the last, partial panel */
        const int64_t nb = nc - full * S_NR;
        const float *b = B + full * S_NR;
        float *dst = bp + full * S_NR * kc;
        for (int64_t p = 0; p < kc; p++)
            for (int64_t j = 0; j < S_NR; j++) dst[p * S_NR + j] = j < nb ? b[p * rsb + j] : 0;
    }
}

/* f32 B, nr = 16. Row-major: spack_b_rows (used when the variant packs
 * B in a pass of its own; the driver fuses it otherwise). Transposed (rsb ==
 * 1: each column of B contiguous): 8x8 blocks (load 8 values down each of 8
 * columns, transpose, store 8 packed half rows), all 16 columns of a panel
 * read in step (16 streams in flight), 16 rows at a time: both 8x8 blocks
 * of one 64-byte line of 8 columns back to back. With columns 4 KiB apart
 * every line of the panel maps to the same L1 set, and 16 lines in flight
 * between a line's two uses evicted it (the packing read each line twice
 * from L2; ~10% faster now). Columns past nc are zero. */
int gf__spack_b_avx2(int64_t nc, int64_t kc, const float *B, int64_t rsb, int64_t csb,
                     float *restrict bp) {
    if (csb == 1) {
        spack_b_rows(nc, kc, B, rsb, bp);
        return 1;
    }
    if (rsb != 1) return 0;
    for (int64_t jr = 0; jr < nc; jr += S_NR, bp += S_NR * kc) {
        const float *b = B + jr * csb;
        const int64_t nb = nc - jr < S_NR ? nc - jr : S_NR;
        int64_t p = 0;
        if (nb == S_NR) {
            for (; p + 16 <= kc; p += 16)
                for (int h = 0; h < S_NR; h += 8)
                    for (int e = 0; e < 16; e += 8) {
                        __m256 r[8];
                        for (int j = 0; j < 8; j++)
                            r[j] = _mm256_loadu_ps(b + (h + j) * csb + p + e);
                        tr8x8_ps(r);
                        for (int q = 0; q < 8; q++)
                            _mm256_store_ps(bp + (p + e + q) * S_NR + h, r[q]);
                    }
            for (; p + 8 <= kc; p += 8)
                for (int h = 0; h < S_NR; h += 8) {
                    __m256 r[8];
                    for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(b + (h + j) * csb + p);
                    tr8x8_ps(r);
                    for (int q = 0; q < 8; q++) _mm256_store_ps(bp + (p + q) * S_NR + h, r[q]);
                }
        } else
            for (; p + 8 <= kc; p += 8)
                for (int h = 0; h < S_NR; h += 8) {
                    __m256 r[8];
                    for (int j = 0; j < 8; j++)
                        r[j] = h + j < nb ? _mm256_loadu_ps(b + (h + j) * csb + p)
                                          : _mm256_setzero_ps();
                    tr8x8_ps(r);
                    for (int q = 0; q < 8; q++) _mm256_store_ps(bp + (p + q) * S_NR + h, r[q]);
                }
        for (; p < kc; p++)
            for (int j = 0; j < S_NR; j++) bp[p * S_NR + j] = j < nb ? b[j * csb + p] : 0;
    }
    return 1;
}

/* f64 A with contiguous columns (rsa == 1), mr = 6: as spack_a_cols. */
static void dpack_a_cols(int64_t mc, int64_t kc, const double *A, int64_t csa,
                         double *restrict ap) {
    const int64_t full = mc / D_MR * D_MR;
    for (int64_t p0 = 0; p0 < kc; p0 += 8) {
        const int64_t p1 = kc - p0 < 8 ? kc : p0 + 8;
        for (int64_t ir = 0; ir < full; ir += D_MR) {
            double *dst = ap + ir * kc;
            for (int64_t p = p0; p < p1; p++) {
                const double *col = A + ir + p * csa;
                _mm256_storeu_pd(dst + p * D_MR, _mm256_loadu_pd(col));
                _mm_storeu_pd(dst + p * D_MR + 4, _mm_loadu_pd(col + 4));
            }
        }
        if (full < mc) {
            double *dst = ap + full * kc;
            for (int64_t p = p0; p < p1; p++)
                for (int64_t i = 0; i < D_MR; i++)
                    dst[p * D_MR + i] = full + i < mc ? A[full + i + p * csa] : 0;
        }
    }
}

/* f64 A, mr = 6. Contiguous rows: as the f32 version, 4 columns at a time;
 * rows 0-3 and rows 4-5 (plus 2 zero rows) are two 4x4 transposes, stored
 * 4 + 2 wide. Contiguous columns: dpack_a_cols. */
int gf__dpack_a_avx2(int64_t mc, int64_t kc, const double *A, int64_t rsa, int64_t csa,
                     double *restrict ap) {
    if (csa != 1 && rsa != 1) return 0;
    if (csa != 1) {
        dpack_a_cols(mc, kc, A, csa, ap);
        return 1;
    }
    for (int64_t ir = 0; ir < mc; ir += D_MR, ap += D_MR * kc) {
        const double *a = A + ir * rsa;
        const int64_t mb = mc - ir < D_MR ? mc - ir : D_MR;
        const int64_t next = mc - ir - mb < D_MR ? mc - ir - mb : D_MR;
        for (int64_t i = 0; i < next; i++)
            for (int64_t p = 0; p < kc; p += 8)
                _mm_prefetch((const char *)(a + (mb + i) * rsa + p), _MM_HINT_T0);
        int64_t p = 0;
        for (; p + 4 <= kc; p += 4) {
            __m256d lo[4], hi[4];
            for (int i = 0; i < 4; i++) {
                lo[i] = i < mb ? _mm256_loadu_pd(a + i * rsa + p) : _mm256_setzero_pd();
                hi[i] = i + 4 < mb ? _mm256_loadu_pd(a + (i + 4) * rsa + p)
                                   : _mm256_setzero_pd();
            }
            tr4x4_pd(lo);
            tr4x4_pd(hi);
            for (int q = 0; q < 4; q++) {
                _mm256_storeu_pd(ap + (p + q) * D_MR, lo[q]);
                _mm_storeu_pd(ap + (p + q) * D_MR + 4, _mm256_castpd256_pd128(hi[q]));
            }
        }
        for (; p < kc; p++)
            for (int64_t i = 0; i < D_MR; i++) ap[p * D_MR + i] = i < mb ? a[i * rsa + p] : 0;
    }
    return 1;
}

/* f64 B transposed (rsb == 1), nr = 8: two halves of 4 columns, 4 rows at a
 * time, as the f32 version. */
int gf__dpack_b_avx2(int64_t nc, int64_t kc, const double *B, int64_t rsb, int64_t csb,
                     double *restrict bp) {
    if (rsb != 1 || csb == 1) return 0;
    for (int64_t jr = 0; jr < nc; jr += D_NR, bp += D_NR * kc) {
        const int64_t nb = nc - jr < D_NR ? nc - jr : D_NR;
        for (int h = 0; h < D_NR; h += 4) {
            const double *b = B + (jr + h) * csb;
            const int64_t w = nb - h < 0 ? 0 : nb - h > 4 ? 4 : nb - h;
            int64_t p = 0;
            for (; p + 4 <= kc; p += 4) {
                __m256d r[4];
                for (int j = 0; j < 4; j++)
                    r[j] = j < w ? _mm256_loadu_pd(b + j * csb + p) : _mm256_setzero_pd();
                tr4x4_pd(r);
                for (int q = 0; q < 4; q++) _mm256_store_pd(bp + (p + q) * D_NR + h, r[q]);
            }
            for (; p < kc; p++)
                for (int j = 0; j < 4; j++) bp[p * D_NR + h + j] = j < w ? b[j * csb + p] : 0;
        }
    }
    return 1;
}
