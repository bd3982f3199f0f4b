/* One decode step of a Gemma 3 text decoder (one token, one sequence), for ohlora's CPU chat.
 *
 * Built once per machine by ohlora/native_decoder.py with the system C compiler
 * (cc -O3 -march=native -shared) and loaded with ctypes. It runs the same math as
 * LeanGemma3.forward for T = 1 (ohlora/lean_gemma3.py, which stays the reference and the
 * fallback) on the same weights and the same KV cache tensors, so the prompt can be run by
 * PyTorch and the answer token by token here.
 *
 * Why: a generated token is ~74 matrix-vector products (memory-bound: every weight byte is read
 * once) plus ~700 tiny operations. In PyTorch each tiny operation costs microseconds of dispatch
 * and the half-precision matrix-vector kernels read well below the copy bandwidth; here one call
 * does the whole token and the matrices stream at close to the memory bandwidth.
 *
 * Weights are fp32, fp16 or bf16 (one type for all matrices, `wtype`), converted to fp32 in
 * registers; every activation, norm, RoPE, the KV cache and the accumulation are fp32.
 * Shapes: H hidden, nh/nkv query/key-value heads, D head dim, I intermediate, S cached positions.
 * Threads: `n_threads` workers split the rows of every matrix (pthreads, a spin barrier per matrix).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdatomic.h>
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__F16C__) && defined(__FMA__))
#include <immintrin.h>
#endif

#define OHL_ABI 1
enum { W_F32 = 0, W_F16 = 1, W_BF16 = 2 };

typedef struct {
    int n_layers, H, nh, nkv, D, I, window, max_len, n_head, wtype;
    float eps, scaling, embed_scale;
    const void **qkv;   /* per layer (nh*D + 2*nkv*D, H) */
    const void **o;     /* per layer (H, nh*D) */
    const void **gu;    /* per layer (2*I, H): gate rows then up rows */
    const void **down;  /* per layer (H, I) */
    const float **w_in, **w_post_attn, **w_pre_ff, **w_post_ff;  /* per layer (H,), already 1 + w */
    const float **w_qn, **w_kn;  /* per layer (D,), already 1 + w */
    const int *sliding;          /* per layer: 1 = sliding-window attention */
    const float *cos_local, *sin_local, *cos_global, *sin_global;  /* (max_len, D) */
    float *k_cache, *v_cache;    /* (n_layers, nkv, max_len, D) */
    const float *embed;          /* (V, H) fp32 input embedding */
    const float *final_w;        /* (H,), already 1 + w */
    const void *head;            /* (n_head, H) in wtype, or NULL: no logits */
} ohl_model;

int ohl_abi(void) { return OHL_ABI; }

/* -- half-precision loads --------------------------------------------------------------------- */
static inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else {  /* subnormal: normalise */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) bits = sign | 0x7f800000u | (man << 13);
    else bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
static inline float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Eight (AVX-512: sixteen) weights of row p from column c, as fp32. */
#if defined(__AVX512F__)
#define VW 16
typedef __m512 vec;
static inline vec vload(const void *W, int wtype, size_t i) {
    if (wtype == W_F32) return _mm512_loadu_ps((const float *)W + i);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)W + i));
    if (wtype == W_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
#define VZERO _mm512_setzero_ps()
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VLOADX(p) _mm512_loadu_ps(p)
static inline float vsum(vec v) { return _mm512_reduce_add_ps(v); }
#elif defined(__AVX2__) && defined(__F16C__) && defined(__FMA__)
#define VW 8
typedef __m256 vec;
static inline vec vload(const void *W, int wtype, size_t i) {
    if (wtype == W_F32) return _mm256_loadu_ps((const float *)W + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)W + i));
    if (wtype == W_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
#define VZERO _mm256_setzero_ps()
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VLOADX(p) _mm256_loadu_ps(p)
static inline float vsum(vec v) {
    float t[8];
    _mm256_storeu_ps(t, v);
    return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
}
#endif

/* y[r] = W[r, :] . x for rows [r0, r1) of a (rows, cols) matrix. One row at a time: the
 * weights are then read as one sequential stream, which the hardware prefetcher follows best
 * (measured: 20-26 GB/s on one core against 10-16 for four rows at once). */
static void gemv_rows(const void *W, int wtype, const float *x, float *y, int r0, int r1, int cols) {
    for (int r = r0; r < r1; r++) {
        size_t base = (size_t)r * cols;
        int c = 0;
        float acc = 0.0f;
#ifdef VW
        vec a0 = VZERO, a1 = VZERO;
        for (; c + 2 * VW <= cols; c += 2 * VW) {
            a0 = VFMA(vload(W, wtype, base + c), VLOADX(x + c), a0);
            a1 = VFMA(vload(W, wtype, base + c + VW), VLOADX(x + c + VW), a1);
        }
        for (; c + VW <= cols; c += VW) a0 = VFMA(vload(W, wtype, base + c), VLOADX(x + c), a0);
        acc = vsum(a0) + vsum(a1);
#endif
        if (wtype == W_F32) for (; c < cols; c++) acc += ((const float *)W)[base + c] * x[c];
        else if (wtype == W_F16) for (; c < cols; c++) acc += f16_to_f32(((const uint16_t *)W)[base + c]) * x[c];
        else for (; c < cols; c++) acc += bf16_to_f32(((const uint16_t *)W)[base + c]) * x[c];
        y[r] = acc;
    }
}

/* -- a small pool of workers that split each matrix's rows ------------------------------------- */
typedef struct {
    const void *W; const float *x; float *y; int rows, cols, wtype;
} gemv_job;

#define MAX_THREADS 16
static struct {
    int n;                       /* threads in use, the caller included */
    pthread_t tid[MAX_THREADS];
    gemv_job job;
    atomic_int generation;       /* bumped for each job */
    atomic_int done;             /* workers finished with the current job */
    atomic_int quit;
    int start;                   /* the generation new workers start from */
} pool = {.n = 1};

static void part(const gemv_job *j, int k, int n) {
    int per = ((j->rows + n - 1) / n + 15) & ~15;  /* whole blocks of 16 rows: whole cache lines of y */
    int r0 = k * per, r1 = r0 + per < j->rows ? r0 + per : j->rows;
    if (r0 < r1) gemv_rows(j->W, j->wtype, j->x, j->y, r0, r1, j->cols);
}

static void *worker(void *arg) {
    int k = (int)(intptr_t)arg, seen = pool.start;  /* not a fresh load: a job may be posted already */
    for (;;) {
        int g;
        while ((g = atomic_load_explicit(&pool.generation, memory_order_acquire)) == seen) {
            if (atomic_load(&pool.quit)) return NULL;
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
        seen = g;
        if (atomic_load(&pool.quit)) return NULL;
        part(&pool.job, k, pool.n);
        atomic_fetch_add_explicit(&pool.done, 1, memory_order_release);
    }
}

/* The pool serves one step at a time: a step that finds it taken runs on its caller alone. */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;

/* Threads for the next steps (1 = the caller alone). Returns the number in use. Workers spin
 * while they wait, so the caller sets 1 again when an answer is done (that joins them). */
int ohl_set_threads(int n) {
    if (n < 1) n = 1;
    if (n > MAX_THREADS) n = MAX_THREADS;
    pthread_mutex_lock(&pool_lock);
    if (n == pool.n) { pthread_mutex_unlock(&pool_lock); return n; }
    if (pool.n > 1) {  /* stop the old workers */
        atomic_store(&pool.quit, 1);
        atomic_fetch_add(&pool.generation, 1);
        for (int k = 1; k < pool.n; k++) pthread_join(pool.tid[k], NULL);
        atomic_store(&pool.quit, 0);
    }
    pool.n = 1;
    pool.start = atomic_load(&pool.generation);
    for (int k = 1; k < n; k++) {
        if (pthread_create(&pool.tid[k], NULL, worker, (void *)(intptr_t)k) != 0) break;
        pool.n = k + 1;
    }
    pthread_mutex_unlock(&pool_lock);
    return pool.n;
}

static void gemv(int par, const void *W, int wtype, const float *x, float *y, int rows, int cols) {
    if (!par || rows < 64) {
        gemv_rows(W, wtype, x, y, 0, rows, cols);
        return;
    }
    pool.job = (gemv_job){W, x, y, rows, cols, wtype};
    atomic_store(&pool.done, 0);
    atomic_fetch_add_explicit(&pool.generation, 1, memory_order_release);
    part(&pool.job, 0, pool.n);
    while (atomic_load_explicit(&pool.done, memory_order_acquire) < pool.n - 1) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
}

/* -- the layer math ---------------------------------------------------------------------------- */
/* a . b in fp32 (a compiler keeps a plain float sum in order, so one lane at a time: vectorised here) */
static inline float dot(const float *a, const float *b, int n) {
    int i = 0;
    float acc = 0.0f;
#if defined(__AVX512F__)
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    acc = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
#elif defined(__AVX2__) && defined(__FMA__)
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    float t[8];
    _mm256_storeu_ps(t, _mm256_add_ps(s0, s1));
    acc = ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
#endif
    for (; i < n; i++) acc += a[i] * b[i];
    return acc;
}

static void rms(const float *x, const float *w, float *out, int n, float eps) {
    float ss = dot(x, x, n);
    float s = 1.0f / sqrtf(ss / n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * s * w[i];
}

static void rope(float *x, const float *cos, const float *sin, int D) {  /* rotate-half, in place */
    int half = D / 2;
    for (int d = 0; d < half; d++) {
        float a = x[d], b = x[d + half];
        x[d] = a * cos[d] - b * sin[d];
        x[d + half] = b * cos[d + half] + a * sin[d + half];
    }
}

static float gelu_tanh(float x) {
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

/* Runs token `token` at position `pos` (the cache holds positions < pos and gets this one).
 * Writes the final-normed hidden state to `hidden` (H,) and, if the model has a head, the
 * logits to `logits` (n_head,). `scratch` holds at least ohl_scratch_floats(m) floats.
 * Returns 0, or -1 for a position outside the cache. */
long ohl_scratch_floats(const ohl_model *m) {
    long nq = (long)m->nh * m->D, nk = (long)m->nkv * m->D;
    return 3L * m->H + (nq + 2 * nk) + nq + 2L * m->I + m->max_len + 64;
}

int ohl_step(const ohl_model *m, int token, int pos, float *scratch, float *hidden, float *logits) {
    if (pos < 0 || pos >= m->max_len) return -1;
    const int H = m->H, D = m->D, nh = m->nh, nkv = m->nkv, I = m->I, S = pos + 1;
    const int nq = nh * D, nk = nkv * D, group = nh / nkv;
    float *x = scratch, *h = x + H, *t = h + H, *qkv = t + H, *att = qkv + nq + 2 * nk,
          *gu = att + nq, *sc = gu + 2 * I;
    const int par = pool.n > 1 && pthread_mutex_trylock(&pool_lock) == 0;
    const float *e = m->embed + (size_t)token * H;
    for (int i = 0; i < H; i++) x[i] = e[i] * m->embed_scale;
    for (int l = 0; l < m->n_layers; l++) {
        rms(x, m->w_in[l], h, H, m->eps);
        gemv(par, m->qkv[l], m->wtype, h, qkv, nq + 2 * nk, H);
        float *q = qkv, *k = qkv + nq, *v = qkv + nq + nk;
        const int sl = m->sliding[l];
        const float *cs = (sl ? m->cos_local : m->cos_global) + (size_t)pos * D;
        const float *sn = (sl ? m->sin_local : m->sin_global) + (size_t)pos * D;
        for (int a = 0; a < nh; a++) { rms(q + a * D, m->w_qn[l], q + a * D, D, m->eps); rope(q + a * D, cs, sn, D); }
        for (int g = 0; g < nkv; g++) {
            rms(k + g * D, m->w_kn[l], k + g * D, D, m->eps);
            rope(k + g * D, cs, sn, D);
            float *kc = m->k_cache + (((size_t)l * nkv + g) * m->max_len + pos) * D;
            float *vc = m->v_cache + (((size_t)l * nkv + g) * m->max_len + pos) * D;
            memcpy(kc, k + g * D, D * sizeof(float));
            memcpy(vc, v + g * D, D * sizeof(float));
        }
        int j0 = (sl && m->window > 0 && S > m->window) ? S - m->window : 0;
        for (int a = 0; a < nh; a++) {
            int g = a / group;
            const float *kc = m->k_cache + ((size_t)l * nkv + g) * m->max_len * D;
            const float *vc = m->v_cache + ((size_t)l * nkv + g) * m->max_len * D;
            const float *qa = q + a * D;
            float mx = -INFINITY;
            for (int j = j0; j < S; j++) {
                float s = dot(qa, kc + (size_t)j * D, D) * m->scaling;
                sc[j] = s;
                if (s > mx) mx = s;
            }
            float sum = 0.0f;
            for (int j = j0; j < S; j++) { sc[j] = expf(sc[j] - mx); sum += sc[j]; }
            float *oa = att + a * D;
            memset(oa, 0, D * sizeof(float));
            for (int j = j0; j < S; j++) {
                float p = sc[j] / sum;
                const float *vj = vc + (size_t)j * D;
                for (int d = 0; d < D; d++) oa[d] += p * vj[d];
            }
        }
        gemv(par, m->o[l], m->wtype, att, t, H, nq);
        rms(t, m->w_post_attn[l], t, H, m->eps);
        for (int i = 0; i < H; i++) x[i] += t[i];
        rms(x, m->w_pre_ff[l], h, H, m->eps);
        gemv(par, m->gu[l], m->wtype, h, gu, 2 * I, H);
        for (int i = 0; i < I; i++) gu[i] = gelu_tanh(gu[i]) * gu[I + i];
        gemv(par, m->down[l], m->wtype, gu, t, H, I);
        rms(t, m->w_post_ff[l], t, H, m->eps);
        for (int i = 0; i < H; i++) x[i] += t[i];
    }
    rms(x, m->final_w, hidden, H, m->eps);
    if (m->head && logits) gemv(par, m->head, m->wtype, hidden, logits, m->n_head, H);
    if (par) pthread_mutex_unlock(&pool_lock);
    return 0;
}

/* One matrix-vector product on the caller's thread (for tests and timing). */
void ohl_gemv(const void *W, int wtype, const float *x, float *y, int rows, int cols) {
    gemv_rows(W, wtype, x, y, 0, rows, cols);
}
