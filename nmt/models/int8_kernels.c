/* Per-row int8 quantization and rescaling for nmt.models.linear's int8 decoding, one pass each.
 *
 * Every result is the same IEEE single-precision operations, in the same order, as the eager PyTorch
 * fallback in int8_kernels.py: built without -ffast-math and with -ffp-contract=off (no fused
 * multiply-add), so both give bit-identical results on every CPU, with or without vector units.
 */
#include <float.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define NMT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define NMT_CLONES
#endif

/* 1.5 * 2^23: adding and subtracting it rounds |q| < 2^22 to the nearest integer, halves to even,
 * as torch.round does (and, unlike nearbyintf, it vectorizes without SSE4.1). */
#define ROUNDER 12582912.0f

/* x (n, k) -> q (n, k) = round(x / scale), scale (n) = max(max |x_i|, FLT_MIN) / levels (levels <= 127). */
NMT_CLONES void nmt_quantize_rows(const float *x, int64_t n, int64_t k, float levels, int8_t *q,
                                  float *scale) {
    for (int64_t i = 0; i < n; i++) {
        const float *row = x + i * k;
        int32_t top = 0; /* |x| ordered as its bit pattern: an integer maximum, which vectorizes */
        for (int64_t j = 0; j < k; j++) {
            int32_t bits;
            memcpy(&bits, row + j, sizeof bits);
            bits &= 0x7fffffff;
            top = bits > top ? bits : top;
        }
        float peak;
        memcpy(&peak, &top, sizeof peak);
        const float s = (peak > FLT_MIN ? peak : FLT_MIN) / levels;
        scale[i] = s;
        int8_t *out = q + i * k;
        for (int64_t j = 0; j < k; j++) {
            const float r = (row[j] / s + ROUNDER) - ROUNDER;
            out[j] = (int8_t)(int32_t)r;
        }
    }
}

/* y (n, m) = acc * w_scale[j] * x_scale[i] (+ bias[j]) (then ReLU): an int32 product back in fp32. */
NMT_CLONES void nmt_rescale_int32(const int32_t *acc, int64_t n, int64_t m, const float *w_scale,
                                  const float *x_scale, const float *bias, int relu, float *y) {
    for (int64_t i = 0; i < n; i++) {
        const int32_t *a = acc + i * m;
        float *out = y + i * m;
        const float s = x_scale[i];
        for (int64_t j = 0; j < m; j++) {
            float v = (float)a[j] * w_scale[j] * s;
            if (bias) v = v + bias[j];
            out[j] = relu && v < 0.0f ? 0.0f : v;
        }
    }
}

/* y (n, m) = y * x_scale[i] (+ bias[j]) (then ReLU), in place: a product whose weight scales are applied. */
NMT_CLONES void nmt_rescale_rows(float *y, int64_t n, int64_t m, const float *x_scale, const float *bias,
                                 int relu) {
    for (int64_t i = 0; i < n; i++) {
        float *out = y + i * m;
        const float s = x_scale[i];
        for (int64_t j = 0; j < m; j++) {
            float v = out[j] * s;
            if (bias) v = v + bias[j];
            out[j] = relu && v < 0.0f ? 0.0f : v;
        }
    }
}
