/*
 * sha256-verifier: a cap-verifier/1 module that accepts a proof when it is the SHA-256
 * of the manifest, written as 64 hex digits (upper or lower case, optionally followed by
 * one newline, as `sha256sum` prints it) or as the 32 raw digest bytes.
 *
 * Freestanding C (no libc): the host gives this module nothing but env.cap_log, so the
 * hash, the allocator and the hex parser live here. SHA-256 follows FIPS 180-4.
 *
 * Build: ./build.sh (clang --target=wasm32, wasm-ld).
 */

#include <stddef.h>
#include <stdint.h>

/* The one import the sandbox grants: a log line at a level (0 trace .. 4 error). */
__attribute__((import_module("env"), import_name("cap_log")))
void cap_log(int32_t level, const char *ptr, int32_t len);

enum { LOG_INFO = 2, LOG_WARN = 3 };
enum { VERDICT_OK = 0, VERDICT_MISMATCH = 1, VERDICT_MALFORMED = 2 };

/* A freestanding build must bring the two routines the compiler may emit calls to. */
void *memset(void *dst, int c, size_t n) {
    unsigned char *d = dst;
    while (n--) *d++ = (unsigned char)c;
    return dst;
}

void *memcpy(void *dst, const void *src, size_t n) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--) *d++ = *s++;
    return dst;
}

static void log_str(int32_t level, const char *s) {
    int32_t n = 0;
    while (s[n]) n++;
    cap_log(level, s, n);
}

/* ---- allocator: a bump pointer over the heap, growing linear memory on demand ---- */

extern unsigned char __heap_base;
static uintptr_t heap_top = 0;

__attribute__((export_name("cap_alloc")))
void *cap_alloc(int32_t len) {
    if (len < 0) return 0;
    if (heap_top == 0) heap_top = (uintptr_t)&__heap_base;
    uintptr_t start = (heap_top + 15u) & ~(uintptr_t)15u;
    uintptr_t end = start + (uintptr_t)len;
    if (end < start) return 0;
    uintptr_t have = __builtin_wasm_memory_size(0) * 65536u;
    if (end > have) {
        uintptr_t pages = (end - have + 65535u) / 65536u;
        if (__builtin_wasm_memory_grow(0, pages) == (uintptr_t)-1) return 0; /* host limit */
    }
    heap_top = end;
    return (void *)start;
}

/* ---- SHA-256 (FIPS 180-4) ---- */

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void compress(uint32_t h[8], const unsigned char block[64]) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++) {
        w[i] = (uint32_t)block[4 * i] << 24 | (uint32_t)block[4 * i + 1] << 16 |
               (uint32_t)block[4 * i + 2] << 8 | (uint32_t)block[4 * i + 3];
    }
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
}

static void sha256(const unsigned char *msg, uint32_t len, unsigned char out[32]) {
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    uint32_t i = 0;
    for (; len - i >= 64; i += 64) compress(h, msg + i);
    unsigned char tail[128] = {0};
    uint32_t rest = len - i;
    for (uint32_t j = 0; j < rest; j++) tail[j] = msg[i + j];
    tail[rest] = 0x80;
    uint32_t blocks = rest + 9 <= 64 ? 1 : 2;
    uint64_t bits = (uint64_t)len * 8u;
    for (int j = 0; j < 8; j++) tail[blocks * 64 - 1 - j] = (unsigned char)(bits >> (8 * j));
    for (uint32_t b = 0; b < blocks; b++) compress(h, tail + 64 * b);
    for (int j = 0; j < 8; j++) {
        out[4 * j] = (unsigned char)(h[j] >> 24);
        out[4 * j + 1] = (unsigned char)(h[j] >> 16);
        out[4 * j + 2] = (unsigned char)(h[j] >> 8);
        out[4 * j + 3] = (unsigned char)h[j];
    }
}

/* ---- the proof: 64 hex digits (+ optional newline) or 32 raw bytes ---- */

static int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int parse_proof(const unsigned char *p, int32_t len, unsigned char out[32]) {
    if (len == 32) {
        for (int i = 0; i < 32; i++) out[i] = p[i];
        return 1;
    }
    if (len == 65 && p[64] == '\n') len = 64;
    if (len != 64) return 0;
    for (int i = 0; i < 32; i++) {
        int hi = hexval(p[2 * i]), lo = hexval(p[2 * i + 1]);
        if (hi < 0 || lo < 0) return 0;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 1;
}

__attribute__((export_name("cap_verify")))
int32_t cap_verify(const unsigned char *manifest, int32_t manifest_len,
                   const unsigned char *proof, int32_t proof_len) {
    unsigned char want[32], have[32];
    if (manifest_len < 0 || !parse_proof(proof, proof_len, want)) {
        log_str(LOG_WARN, "proof is not a SHA-256 digest (64 hex digits or 32 bytes)");
        return VERDICT_MALFORMED;
    }
    sha256(manifest, (uint32_t)manifest_len, have);
    unsigned char diff = 0;
    for (int i = 0; i < 32; i++) diff |= (unsigned char)(want[i] ^ have[i]);
    if (diff) {
        log_str(LOG_WARN, "proof does not match SHA-256(manifest)");
        return VERDICT_MISMATCH;
    }
    log_str(LOG_INFO, "proof matches SHA-256(manifest)");
    return VERDICT_OK;
}
