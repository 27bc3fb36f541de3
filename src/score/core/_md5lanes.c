/*
 * Multi-buffer MD5: up to 16 independent messages hashed at once, one per SIMD lane.
 *
 * Why: an upload hashes every byte twice, once for the whole file (checked at finalize) and once for
 * its part (sent as Content-MD5). One MD5 stream cannot use SIMD (each 64-byte block depends on the
 * last), but the parts are independent messages: 16 of them in the 32-bit lanes of AVX-512 (8 with
 * AVX-512VL or AVX2 in 256-bit registers) cost about as much per block as one scalar stream costs for one
 * message. No maintained Python
 * package offers this (Go's minio/md5-simd and Intel's isa-l_crypto do the same for their users), so
 * this file holds only the block function; padding, lengths and digests stay in Python
 * (score.core.md5lanes), checked against hashlib by the tests.
 *
 * update(states, data, offsets, lengths, kernel=None): for each lane i, runs the MD5 block function
 * over data[offsets[i] : offsets[i] + lengths[i]] (a multiple of 64 bytes), starting from and storing
 * into states[16*i : 16*i + 16] (A, B, C, D, little-endian: the digest's own byte order). Lanes may
 * have different lengths; a finished lane is masked off. The GIL is released while hashing.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define MAX_LANES 16

/* One MD5 step: a = b + rotl(a + f(b, c, d) + m + k, s); F, ROTL and ADD are the kernel's own. */
#define STEP(FN, a, b, c, d, m, k, s) \
    a = ADD(a, ADD(m, SET1(k)));      \
    a = ADD(a, FN(b, c, d));          \
    a = ROTL(a, s);                   \
    a = ADD(a, b);

/* The 64 steps of RFC 1321 (message word index, constant, shift), written once for both kernels. */
#define MD5_ROUNDS(M, a, b, c, d)                          \
    STEP(F1, a, b, c, d, M[0], 0xd76aa478, 7)              \
    STEP(F1, d, a, b, c, M[1], 0xe8c7b756, 12)             \
    STEP(F1, c, d, a, b, M[2], 0x242070db, 17)             \
    STEP(F1, b, c, d, a, M[3], 0xc1bdceee, 22)             \
    STEP(F1, a, b, c, d, M[4], 0xf57c0faf, 7)              \
    STEP(F1, d, a, b, c, M[5], 0x4787c62a, 12)             \
    STEP(F1, c, d, a, b, M[6], 0xa8304613, 17)             \
    STEP(F1, b, c, d, a, M[7], 0xfd469501, 22)             \
    STEP(F1, a, b, c, d, M[8], 0x698098d8, 7)              \
    STEP(F1, d, a, b, c, M[9], 0x8b44f7af, 12)             \
    STEP(F1, c, d, a, b, M[10], 0xffff5bb1, 17)            \
    STEP(F1, b, c, d, a, M[11], 0x895cd7be, 22)            \
    STEP(F1, a, b, c, d, M[12], 0x6b901122, 7)             \
    STEP(F1, d, a, b, c, M[13], 0xfd987193, 12)            \
    STEP(F1, c, d, a, b, M[14], 0xa679438e, 17)            \
    STEP(F1, b, c, d, a, M[15], 0x49b40821, 22)            \
    STEP(F2, a, b, c, d, M[1], 0xf61e2562, 5)              \
    STEP(F2, d, a, b, c, M[6], 0xc040b340, 9)              \
    STEP(F2, c, d, a, b, M[11], 0x265e5a51, 14)            \
    STEP(F2, b, c, d, a, M[0], 0xe9b6c7aa, 20)             \
    STEP(F2, a, b, c, d, M[5], 0xd62f105d, 5)              \
    STEP(F2, d, a, b, c, M[10], 0x02441453, 9)             \
    STEP(F2, c, d, a, b, M[15], 0xd8a1e681, 14)            \
    STEP(F2, b, c, d, a, M[4], 0xe7d3fbc8, 20)             \
    STEP(F2, a, b, c, d, M[9], 0x21e1cde6, 5)              \
    STEP(F2, d, a, b, c, M[14], 0xc33707d6, 9)             \
    STEP(F2, c, d, a, b, M[3], 0xf4d50d87, 14)             \
    STEP(F2, b, c, d, a, M[8], 0x455a14ed, 20)             \
    STEP(F2, a, b, c, d, M[13], 0xa9e3e905, 5)             \
    STEP(F2, d, a, b, c, M[2], 0xfcefa3f8, 9)              \
    STEP(F2, c, d, a, b, M[7], 0x676f02d9, 14)             \
    STEP(F2, b, c, d, a, M[12], 0x8d2a4c8a, 20)            \
    STEP(F3, a, b, c, d, M[5], 0xfffa3942, 4)              \
    STEP(F3, d, a, b, c, M[8], 0x8771f681, 11)             \
    STEP(F3, c, d, a, b, M[11], 0x6d9d6122, 16)            \
    STEP(F3, b, c, d, a, M[14], 0xfde5380c, 23)            \
    STEP(F3, a, b, c, d, M[1], 0xa4beea44, 4)              \
    STEP(F3, d, a, b, c, M[4], 0x4bdecfa9, 11)             \
    STEP(F3, c, d, a, b, M[7], 0xf6bb4b60, 16)             \
    STEP(F3, b, c, d, a, M[10], 0xbebfbc70, 23)            \
    STEP(F3, a, b, c, d, M[13], 0x289b7ec6, 4)             \
    STEP(F3, d, a, b, c, M[0], 0xeaa127fa, 11)             \
    STEP(F3, c, d, a, b, M[3], 0xd4ef3085, 16)             \
    STEP(F3, b, c, d, a, M[6], 0x04881d05, 23)             \
    STEP(F3, a, b, c, d, M[9], 0xd9d4d039, 4)              \
    STEP(F3, d, a, b, c, M[12], 0xe6db99e5, 11)            \
    STEP(F3, c, d, a, b, M[15], 0x1fa27cf8, 16)            \
    STEP(F3, b, c, d, a, M[2], 0xc4ac5665, 23)             \
    STEP(F4, a, b, c, d, M[0], 0xf4292244, 6)              \
    STEP(F4, d, a, b, c, M[7], 0x432aff97, 10)             \
    STEP(F4, c, d, a, b, M[14], 0xab9423a7, 15)            \
    STEP(F4, b, c, d, a, M[5], 0xfc93a039, 21)             \
    STEP(F4, a, b, c, d, M[12], 0x655b59c3, 6)             \
    STEP(F4, d, a, b, c, M[3], 0x8f0ccc92, 10)             \
    STEP(F4, c, d, a, b, M[10], 0xffeff47d, 15)            \
    STEP(F4, b, c, d, a, M[1], 0x85845dd1, 21)             \
    STEP(F4, a, b, c, d, M[8], 0x6fa87e4f, 6)              \
    STEP(F4, d, a, b, c, M[15], 0xfe2ce6e0, 10)            \
    STEP(F4, c, d, a, b, M[6], 0xa3014314, 15)             \
    STEP(F4, b, c, d, a, M[13], 0x4e0811a1, 21)            \
    STEP(F4, a, b, c, d, M[4], 0xf7537e82, 6)              \
    STEP(F4, d, a, b, c, M[11], 0xbd3af235, 10)            \
    STEP(F4, c, d, a, b, M[2], 0x2ad7d2bb, 15)             \
    STEP(F4, b, c, d, a, M[9], 0xeb86d391, 21)

/* The lanes' work: where each lane's next block is, how many blocks it has left, its state. */
typedef struct {
    int lanes;
    const uint8_t *next[MAX_LANES];
    int64_t blocks[MAX_LANES];
    uint32_t abcd[4][MAX_LANES]; /* abcd[word][lane] */
} Job;

static const uint8_t idle_block[64] = {0}; /* what a lane with no blocks left "reads"; its result is dropped */

/* The next block of each lane in [first, first + count): its address, or idle_block; bit i of the result
 * is set if lane first + i had a block. Blocks are loaded whole and transposed in registers (the
 * gathers of the first version cost three times the hashing itself). */
static unsigned take_blocks(Job *job, int first, int count, const uint8_t **blocks) {
    unsigned live = 0;
    for (int i = 0; i < count; i++) {
        int lane = first + i;
        if (lane < job->lanes && job->blocks[lane] > 0) {
            blocks[i] = job->next[lane];
            job->next[lane] += 64;
            job->blocks[lane] -= 1;
            live |= 1u << i;
        } else {
            blocks[i] = idle_block;
        }
    }
    return live;
}

static int64_t most_blocks(const Job *job, int first, int count) {
    int64_t most = 0;
    for (int i = first; i < first + count && i < job->lanes; i++) {
        if (job->blocks[i] > most) most = job->blocks[i];
    }
    return most;
}

/* ---- AVX-512: 16 lanes; F..I are single ternary-logic instructions, rotation is one instruction. */

#define ADD(x, y) _mm512_add_epi32(x, y)
#define SET1(k) _mm512_set1_epi32((int)(k))
#define ROTL(x, s) _mm512_rol_epi32(x, s)
#define F1(b, c, d) _mm512_ternarylogic_epi32(b, c, d, 0xCA) /* (b & c) | (~b & d) */
#define F2(b, c, d) _mm512_ternarylogic_epi32(b, c, d, 0xE4) /* (b & d) | (c & ~d) */
#define F3(b, c, d) _mm512_ternarylogic_epi32(b, c, d, 0x96) /* b ^ c ^ d */
#define F4(b, c, d) _mm512_ternarylogic_epi32(b, c, d, 0x39) /* c ^ (b | ~d) */

/* 16 blocks (one per lane, 16 words each) -> M[w] = word w of every lane. */
__attribute__((target("avx512f"))) static void transpose16(const uint8_t **blocks, __m512i *M) {
    __m512i r[16], t[16], u[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_si512(blocks[i]);
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    /* u[4g + k] holds words k, k+4, k+8, k+12 (one per 128-bit lane) of lanes 4g..4g+3 */
    for (int k = 0; k < 4; k++) {
        __m512i v0 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0x88);
        __m512i v1 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0xDD);
        __m512i w0 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0x88);
        __m512i w1 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0xDD);
        M[k] = _mm512_shuffle_i32x4(v0, w0, 0x88);
        M[k + 8] = _mm512_shuffle_i32x4(v0, w0, 0xDD);
        M[k + 4] = _mm512_shuffle_i32x4(v1, w1, 0x88);
        M[k + 12] = _mm512_shuffle_i32x4(v1, w1, 0xDD);
    }
}

__attribute__((target("avx512f"))) static void run_avx512(Job *job) {
    uint32_t lanes_abcd[4][MAX_LANES] = {{0}};
    for (int i = 0; i < job->lanes; i++) {
        for (int w = 0; w < 4; w++) lanes_abcd[w][i] = job->abcd[w][i];
    }
    __m512i a = _mm512_loadu_si512(lanes_abcd[0]);
    __m512i b = _mm512_loadu_si512(lanes_abcd[1]);
    __m512i c = _mm512_loadu_si512(lanes_abcd[2]);
    __m512i d = _mm512_loadu_si512(lanes_abcd[3]);
    const uint8_t *blocks[16];
    for (int64_t n = most_blocks(job, 0, job->lanes); n > 0; n--) {
        __mmask16 live = (__mmask16)take_blocks(job, 0, 16, blocks);
        __m512i M[16];
        transpose16(blocks, M);
        __m512i a0 = a, b0 = b, c0 = c, d0 = d;
        MD5_ROUNDS(M, a, b, c, d)
        a = _mm512_mask_add_epi32(a0, live, a, a0);
        b = _mm512_mask_add_epi32(b0, live, b, b0);
        c = _mm512_mask_add_epi32(c0, live, c, c0);
        d = _mm512_mask_add_epi32(d0, live, d, d0);
    }
    _mm512_storeu_si512(lanes_abcd[0], a);
    _mm512_storeu_si512(lanes_abcd[1], b);
    _mm512_storeu_si512(lanes_abcd[2], c);
    _mm512_storeu_si512(lanes_abcd[3], d);
    for (int i = 0; i < job->lanes; i++) {
        for (int w = 0; w < 4; w++) job->abcd[w][i] = lanes_abcd[w][i];
    }
}

#undef ADD
#undef SET1
#undef ROTL
#undef F1
#undef F2
#undef F3
#undef F4

/* ---- AVX2: 8 lanes at a time; the boolean functions and rotation take a few instructions each. */

#define ADD(x, y) _mm256_add_epi32(x, y)
#define SET1(k) _mm256_set1_epi32((int)(k))
#define ROTL(x, s) _mm256_or_si256(_mm256_slli_epi32(x, s), _mm256_srli_epi32(x, 32 - (s)))
#define ONES _mm256_set1_epi32(-1)
#define F1(b, c, d) _mm256_xor_si256(d, _mm256_and_si256(b, _mm256_xor_si256(c, d)))
#define F2(b, c, d) _mm256_xor_si256(c, _mm256_and_si256(d, _mm256_xor_si256(b, c)))
#define F3(b, c, d) _mm256_xor_si256(_mm256_xor_si256(b, c), d)
#define F4(b, c, d) _mm256_xor_si256(c, _mm256_or_si256(b, _mm256_xor_si256(d, ONES)))

/* 8 rows of 8 words -> M[w] = word w of every row. */
__attribute__((target("avx2"))) static void transpose8(const __m256i *r, __m256i *M) {
    __m256i t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    /* u[4g + k] holds words k and k+4 (one per 128-bit half) of rows 4g..4g+3 */
    for (int k = 0; k < 4; k++) {
        M[k] = _mm256_permute2x128_si256(u[k], u[4 + k], 0x20);
        M[k + 4] = _mm256_permute2x128_si256(u[k], u[4 + k], 0x31);
    }
}

/* The 8-lane pass, written once: instantiated with AVX2 and with AVX-512VL macros below. */
#define DEFINE_RUN8(NAME, TARGET)                                                                   \
TARGET static void NAME(Job *job, int first) {                                                         \
    uint32_t lanes_abcd[4][8] = {{0}};                                                                 \
    for (int i = 0; i < 8 && first + i < job->lanes; i++) {                                            \
        for (int w = 0; w < 4; w++) lanes_abcd[w][i] = job->abcd[w][first + i];                        \
    }                                                                                                  \
    __m256i a = _mm256_loadu_si256((const __m256i *)lanes_abcd[0]);                                    \
    __m256i b = _mm256_loadu_si256((const __m256i *)lanes_abcd[1]);                                    \
    __m256i c = _mm256_loadu_si256((const __m256i *)lanes_abcd[2]);                                    \
    __m256i d = _mm256_loadu_si256((const __m256i *)lanes_abcd[3]);                                    \
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);                                \
    const uint8_t *blocks[8];                                                                          \
    for (int64_t n = most_blocks(job, first, 8); n > 0; n--) {                                         \
        unsigned taken = take_blocks(job, first, 8, blocks);                                           \
        /* all ones in the lanes that had a block */                                                   \
        __m256i live = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)taken), bit), bit);  \
        __m256i lo[8], hi[8], M[16];                                                                   \
        for (int i = 0; i < 8; i++) {                                                                  \
            lo[i] = _mm256_loadu_si256((const __m256i *)blocks[i]);                                    \
            hi[i] = _mm256_loadu_si256((const __m256i *)(blocks[i] + 32));                             \
        }                                                                                              \
        transpose8(lo, M);                                                                             \
        transpose8(hi, M + 8);                                                                         \
        __m256i a0 = a, b0 = b, c0 = c, d0 = d;                                                        \
        MD5_ROUNDS(M, a, b, c, d)                                                                      \
        a = _mm256_blendv_epi8(a0, ADD(a, a0), live);                                                  \
        b = _mm256_blendv_epi8(b0, ADD(b, b0), live);                                                  \
        c = _mm256_blendv_epi8(c0, ADD(c, c0), live);                                                  \
        d = _mm256_blendv_epi8(d0, ADD(d, d0), live);                                                  \
    }                                                                                                  \
    _mm256_storeu_si256((__m256i *)lanes_abcd[0], a);                                                  \
    _mm256_storeu_si256((__m256i *)lanes_abcd[1], b);                                                  \
    _mm256_storeu_si256((__m256i *)lanes_abcd[2], c);                                                  \
    _mm256_storeu_si256((__m256i *)lanes_abcd[3], d);                                                  \
    for (int i = 0; i < 8 && first + i < job->lanes; i++) {                                            \
        for (int w = 0; w < 4; w++) job->abcd[w][first + i] = lanes_abcd[w][i];                        \
    }                                                                                                  \
}

DEFINE_RUN8(run_avx2_group, __attribute__((target("avx2"))))

#undef ROTL
#undef F1
#undef F2
#undef F3
#undef F4

/* ---- AVX-512VL: the same 8 lanes in 256-bit registers, with AVX-512's one-instruction F..I and rotation.
 * Where 512-bit operations run as two 256-bit halves (AMD Zen 4), this is the cheapest way to hash 8 lanes,
 * and a first batch of 8 parts is ready sooner than with 16. */

#define ROTL(x, s) _mm256_rol_epi32(x, s)
#define F1(b, c, d) _mm256_ternarylogic_epi32(b, c, d, 0xCA)
#define F2(b, c, d) _mm256_ternarylogic_epi32(b, c, d, 0xE4)
#define F3(b, c, d) _mm256_ternarylogic_epi32(b, c, d, 0x96)
#define F4(b, c, d) _mm256_ternarylogic_epi32(b, c, d, 0x39)

DEFINE_RUN8(run_avx512vl_group, __attribute__((target("avx2,avx512f,avx512vl"))))

static void run_avx512vl(Job *job) {
    for (int first = 0; first < job->lanes; first += 8) run_avx512vl_group(job, first);
}

static void run_avx2(Job *job) {
    for (int first = 0; first < job->lanes; first += 8) run_avx2_group(job, first);
}

/* ---- Python binding */

typedef void (*Kernel)(Job *);

static int has_avx512(void) { return __builtin_cpu_supports("avx512f"); }
static int has_avx512vl(void) { return has_avx512() && __builtin_cpu_supports("avx512vl"); }
static int has_avx2(void) { return __builtin_cpu_supports("avx2"); }

/* Unnamed: AVX-512 for more than 8 lanes (one pass of 16); for 8 or fewer, 256-bit registers (a half-empty
 * 512-bit pass costs more per block), with AVX-512VL's instructions where the CPU has them. */
static Kernel kernel_named(const char *name, Py_ssize_t lanes) {
    if (name == NULL) {
        if (has_avx512() && (lanes > 8 || !has_avx2())) return run_avx512;
        if (has_avx512vl()) return run_avx512vl;
        return has_avx2() ? run_avx2 : NULL;
    }
    if (strcmp(name, "avx512") == 0) return has_avx512() ? run_avx512 : NULL;
    if (strcmp(name, "avx2") == 0) return has_avx2() ? run_avx2 : NULL;
    if (strcmp(name, "avx512vl") == 0) return has_avx512vl() ? run_avx512vl : NULL;
    return NULL;
}

static PyObject *kernels(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    if (has_avx512vl()) return Py_BuildValue("(sss)", "avx512", "avx512vl", "avx2");
    if (has_avx512()) return Py_BuildValue("(ss)", "avx512", "avx2");
    if (has_avx2()) return Py_BuildValue("(s)", "avx2");
    return PyTuple_New(0);
}

static int read_ints(PyObject *sequence, const char *what, int64_t *into, Py_ssize_t *count) {
    PyObject *fast = PySequence_Fast(sequence, what);
    if (fast == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n > MAX_LANES) {
        PyErr_Format(PyExc_ValueError, "%s: at most %d lanes, got %zd", what, MAX_LANES, n);
        Py_DECREF(fast);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        into[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(fast, i));
        if (into[i] == -1 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return -1;
        }
    }
    *count = n;
    Py_DECREF(fast);
    return 0;
}

static PyObject *update(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *names[] = {"states", "data", "offsets", "lengths", "kernel", NULL};
    Py_buffer states, data;
    PyObject *offsets_arg, *lengths_arg;
    const char *kernel_name = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "w*y*OO|z", names, &states, &data, &offsets_arg, &lengths_arg,
                                     &kernel_name)) {
        return NULL;
    }
    PyObject *result = NULL;
    int64_t offsets[MAX_LANES], lengths[MAX_LANES];
    Py_ssize_t lanes = 0, lengths_count = 0;
    Job job;
    Kernel kernel = NULL;
    if (read_ints(offsets_arg, "offsets", offsets, &lanes) < 0) goto done;
    kernel = kernel_named(kernel_name, lanes);
    if (kernel == NULL) {
        PyErr_Format(PyExc_ValueError, "no MD5 lane kernel %s on this CPU", kernel_name ? kernel_name : "(any)");
        goto done;
    }
    if (read_ints(lengths_arg, "lengths", lengths, &lengths_count) < 0) goto done;
    if (lengths_count != lanes) {
        PyErr_SetString(PyExc_ValueError, "offsets and lengths must have one entry per lane");
        goto done;
    }
    if (states.len < 16 * lanes) {
        PyErr_Format(PyExc_ValueError, "states must hold 16 bytes per lane (%zd lanes)", lanes);
        goto done;
    }
    job.lanes = (int)lanes;
    for (Py_ssize_t i = 0; i < lanes; i++) {
        if (offsets[i] < 0 || lengths[i] < 0 || lengths[i] % 64 != 0 || offsets[i] > data.len ||
            lengths[i] > data.len - offsets[i]) {
            PyErr_Format(PyExc_ValueError,
                         "lane %zd: bytes %lld..%lld are not whole 64-byte blocks inside the %zd-byte buffer", i,
                         (long long)offsets[i], (long long)(offsets[i] + lengths[i]), data.len);
            goto done;
        }
        job.next[i] = (const uint8_t *)data.buf + offsets[i];
        job.blocks[i] = lengths[i] / 64;
        for (int w = 0; w < 4; w++) memcpy(&job.abcd[w][i], (const uint8_t *)states.buf + 16 * i + 4 * w, 4);
    }
    Py_BEGIN_ALLOW_THREADS
    kernel(&job);
    Py_END_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < lanes; i++) {
        for (int w = 0; w < 4; w++) memcpy((uint8_t *)states.buf + 16 * i + 4 * w, &job.abcd[w][i], 4);
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&states);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef methods[] = {
    {"update", (PyCFunction)(void (*)(void))update, METH_VARARGS | METH_KEYWORDS,
     "update(states, data, offsets, lengths, kernel=None): run the MD5 block function over each lane's bytes."},
    {"kernels", kernels, METH_NOARGS, "The SIMD kernels this CPU can run, fastest first."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_md5lanes", "Multi-buffer MD5 block function.", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__md5lanes(void) { return PyModule_Create(&module); }
