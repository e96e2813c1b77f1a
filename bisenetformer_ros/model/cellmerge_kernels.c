/* The cell merge (bisenetformer_ros/model/cellmerge.py) of CPU tensors: semantic labels and panoptic winners, every
 * cell decided from bounds and only the cells the bounds leave open evaluated per pixel. Compiled at first use by
 * bisenetformer_ros/model/native.py and called through ctypes (which releases the GIL).
 *
 * Why C: as tensor ops the same work is a long chain of small operations (window extremes, bound tables, gathers,
 * interpolations, candidate lists padded per group) whose dispatch costs more than the arithmetic. Here each cell is
 * decided in one pass over its queries, and each open cell evaluates its candidates at every pixel in the order of
 * their upper bounds until none can reach the best value found; the work is split over threads.
 *
 * Exactness: bounds are float64, widened by far more than their rounding. A fast vectorised sigmoid (sigmoid_fast)
 * ranks the candidates; its answer is kept only where the winner leads by more than its error bound, and the other
 * pixels are evaluated with the same operations in the same order as the tensor path (CellGrid.interpolate: columns
 * first, then rows, a product then a sum per term, then 1 / (1 + exp(-x))), with floating-point contraction off
 * (-ffp-contract=off), so values equal the tensor path's up to the last bit of exp (which PyTorch itself computes with
 * two different routines in one tensor). Ties keep the first maximum in entity order like max(0).
 *
 * Layouts (all C-contiguous): masks float32 [E, h, w]; per axis: pixel int64 [C, r], valid uint8 [C, r], weights
 * float64 [C, r, S], start int64 [C]. Outputs are maps of the output size [H * W]: the semantic labels, the panoptic
 * per-pixel results of the open cells (2 * winner + owned) and the panoptic id map. Work is handed to `threads`
 * POSIX threads a few rows or cells at a time.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Scratch memory of one kernel thread: every allocation is remembered, failures too, so that a function checks once
 * (bag.failed) and frees once (bag_free). */
typedef struct {
    void *ptr[40];
    int n, failed;
} bag_t;

static void *grab(bag_t *b, size_t bytes, int zero) {
    void *p = b->n < 40 ? (zero ? calloc(bytes, 1) : malloc(bytes)) : NULL;
    if (!p) {
        b->failed = 1;
        return NULL;
    }
    b->ptr[b->n++] = p;
    return p;
}

static void bag_free(bag_t *b) {
    for (int i = 0; i < b->n; i++) free(b->ptr[i]);
    b->n = 0;
}

#define TAKE(bag, type, count) ((type *)grab((bag), sizeof(type) * (size_t)(count), 0))
#define TAKE0(bag, type, count) ((type *)grab((bag), sizeof(type) * (size_t)(count), 1))

typedef struct {
    int64_t window;         /* S */
    int64_t len;            /* r: padded pixels per cell */
    const uint8_t *valid;   /* [C, r] */
    const double *weights;  /* [C, r, S] */
    const int64_t *start;   /* [C] */
} axis_t;

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* The largest error of sigmoid_fast against the exact sigmoid that the kernels assume (the polynomial's truncation
 * and rounding add up to a few 1e-16; this bound is ~1000x that, checked by the test suite through bfr_sigmoid_fast
 * over the whole range). */
#define FAST_SIGMOID_ERROR 0x1p-40

/* a * b + c for the fast sigmoid's polynomial: one fused operation where the target has it (the build turns
 * contraction off everywhere else, since the exact paths must round like the tensor path; this polynomial only
 * has to stay within its error bound, which the tests check). */
#ifdef __FP_FAST_FMA
#define MADD(a, b, c) fma((a), (b), (c))
#else
#define MADD(a, b, c) ((a) * (b) + (c))
#endif

/* values[i] <- 1 / (1 + exp(-values[i])) with exp by range reduction to |r| <= ln2 / 2 and a degree-12 Taylor
 * polynomial (truncation ~2e-16 relative), branch-free so that the compiler vectorises the loop (a libm call per
 * value cost ~14 ns here, most of the per-pixel work with 20-30 active queries per pixel). */
static void sigmoid_fast(double *values, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double y = -values[i];
        y = y < -708.0 ? -708.0 : y;
        y = y > 708.0 ? 708.0 : y;
        const double shift = 0x1.8p52;
        double t = y * 0x1.71547652b82fep0 + shift; /* log2(e): t - shift = round(y / ln 2) */
        double k = t - shift;
        double r = (y - k * 0x1.62e42fee00000p-1) - k * 0x1.a39ef35793c76p-33; /* ln 2 = hi + lo, k * hi exact */
        double q = 1.0 / 479001600.0;
        q = MADD(q, r, 1.0 / 39916800.0);
        q = MADD(q, r, 1.0 / 3628800.0);
        q = MADD(q, r, 1.0 / 362880.0);
        q = MADD(q, r, 1.0 / 40320.0);
        q = MADD(q, r, 1.0 / 5040.0);
        q = MADD(q, r, 1.0 / 720.0);
        q = MADD(q, r, 1.0 / 120.0);
        q = MADD(q, r, 1.0 / 24.0);
        q = MADD(q, r, 1.0 / 6.0);
        q = MADD(q, r, 0.5);
        q = MADD(q, r, 1.0);
        q = MADD(q, r, 1.0);
        int64_t bits;
        memcpy(&bits, &t, sizeof bits);
        bits = bits - 0x4338000000000000LL + 1023; /* k + 1023, k in [-1022, 1022] */
        bits = bits << 52;
        double two_k;
        memcpy(&two_k, &bits, sizeof two_k);
        values[i] = 1.0 / (1.0 + q * two_k);
    }
}

/* The near queries' probability bounds: slo / shi hold logits on entry, sigmoids widened by the fast sigmoid's
 * error bound on return. */
static void near_sigmoids(double *slo, double *shi, int64_t nn) {
    sigmoid_fast(slo, nn);
    sigmoid_fast(shi, nn);
    for (int64_t t = 0; t < nn; t++) {
        slo[t] = slo[t] - FAST_SIGMOID_ERROR;
        shi[t] = shi[t] + FAST_SIGMOID_ERROR;
    }
}

/* near_sigmoids for every cell of a cell row at once: cell c's nn[c] bounds at lo / hi [c * stride ...], packed into
 * the scratch batch_lo / batch_hi for one vector pass (a cell has a few near queries: too few to fill the vectors). */
static void row_near_sigmoids(double *lo, double *hi, const int64_t *nn, int64_t stride, int64_t cells,
                              double *batch_lo, double *batch_hi) {
    int64_t total = 0;
    for (int64_t c = 0; c < cells; c++)
        for (int64_t t = 0; t < nn[c]; t++) {
            batch_lo[total] = lo[c * stride + t];
            batch_hi[total++] = hi[c * stride + t];
        }
    near_sigmoids(batch_lo, batch_hi, total);
    total = 0;
    for (int64_t c = 0; c < cells; c++)
        for (int64_t t = 0; t < nn[c]; t++) {
            lo[c * stride + t] = batch_lo[total];
            hi[c * stride + t] = batch_hi[total++];
        }
}

/* The fast sigmoid for tests: out[i] = sigmoid_fast(x[i]). */
void bfr_sigmoid_fast(const double *x, double *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = x[i];
    sigmoid_fast(out, n);
}

/* win [Sy * Sx] -> the value at pixel (i, j) of cell (yc, xc), as CellGrid.interpolate computes it. */
static double interpolate(const double *win, const axis_t *ay, int64_t yc, int64_t i, const axis_t *ax, int64_t xc,
                          int64_t j) {
    const double *wy = ay->weights + (yc * ay->len + i) * ay->window;
    const double *wx = ax->weights + (xc * ax->len + j) * ax->window;
    double out = 0.0;
    for (int64_t a = 0; a < ay->window; a++) {
        const double *row = win + a * ax->window;
        double r = row[0] * wx[0];
        for (int64_t b = 1; b < ax->window; b++) r = r + row[b] * wx[b];
        out = a == 0 ? r * wy[0] : out + r * wy[a];
    }
    return out;
}

/* Every pixel slot of cell (yc, xc) at once: out [ry * rx], the same operations as interpolate() in the same order,
 * separably (each row of the window interpolated once per column, then the rows once per pixel), so that the loops
 * over columns vectorise. rows: scratch of Sy * rx values. */
static void interpolate_cell(const double *win, const axis_t *ay, int64_t yc, const axis_t *ax, int64_t xc,
                             double *rows, double *out) {
    const int64_t sy = ay->window, sx = ax->window, ry = ay->len, rx = ax->len;
    const double *wx = ax->weights + xc * rx * sx; /* [rx, Sx] */
    const double *wy = ay->weights + yc * ry * sy; /* [ry, Sy] */
    for (int64_t a = 0; a < sy; a++) {
        double *r = rows + a * rx;
        const double *row = win + a * sx;
        for (int64_t j = 0; j < rx; j++) r[j] = row[0] * wx[j * sx];
        for (int64_t b = 1; b < sx; b++)
            for (int64_t j = 0; j < rx; j++) r[j] = r[j] + row[b] * wx[j * sx + b];
    }
    for (int64_t i = 0; i < ry; i++) {
        double *o = out + i * rx;
        const double w0 = wy[i * sy];
        for (int64_t j = 0; j < rx; j++) o[j] = rows[j] * w0;
        for (int64_t a = 1; a < sy; a++) {
            const double wa = wy[i * sy + a];
            const double *r = rows + a * rx;
            for (int64_t j = 0; j < rx; j++) o[j] = o[j] + r[j] * wa;
        }
    }
}

/* The window of entity e at cell (yc, xc) into win [Sy * Sx] (sigmoid of each logit when sigmoid_first). */
static void gather(const float *masks, int64_t h, int64_t w, int64_t e, const axis_t *ay, int64_t yc,
                   const axis_t *ax, int64_t xc, int sigmoid_first, double *win) {
    const float *base = masks + e * h * w + ay->start[yc] * w + ax->start[xc];
    for (int64_t a = 0; a < ay->window; a++)
        for (int64_t b = 0; b < ax->window; b++) {
            double v = (double)base[a * w + b];
            win[a * ax->window + b] = sigmoid_first ? sigmoid(v) : v;
        }
}

static double probability(const double *win, const axis_t *ay, int64_t yc, int64_t i, const axis_t *ax, int64_t xc,
                          int64_t j, int sigmoid_first) {
    double v = interpolate(win, ay, yc, i, ax, xc, j);
    return sigmoid_first ? v : sigmoid(v);
}

/* Candidates in descending order of their upper bounds (ties: list order), produced lazily from a heap: a pixel
 * usually needs the first two or three, while a cell at a boundary can list every class (a full sort of 150 per cell
 * cost more than the sums). */
typedef struct {
    const double *key;
    int64_t *heap, *order;
    int64_t size, done;
} lazy_order;

static int ahead(const double *key, int64_t a, int64_t b) { return key[a] > key[b] || (key[a] == key[b] && a < b); }

static void sift_down(lazy_order *o, int64_t i) {
    for (;;) {
        int64_t best = i, l = 2 * i + 1, r = l + 1;
        if (l < o->size && ahead(o->key, o->heap[l], o->heap[best])) best = l;
        if (r < o->size && ahead(o->key, o->heap[r], o->heap[best])) best = r;
        if (best == i) return;
        int64_t t = o->heap[i];
        o->heap[i] = o->heap[best];
        o->heap[best] = t;
        i = best;
    }
}

static void order_init(lazy_order *o, const double *key, int64_t n, int64_t *heap, int64_t *order) {
    o->key = key;
    o->heap = heap;
    o->order = order;
    o->size = n;
    o->done = 0;
    for (int64_t i = 0; i < n; i++) heap[i] = i;
    for (int64_t i = n / 2 - 1; i >= 0; i--) sift_down(o, i);
}

/* The m-th candidate (m < n) in bound order. */
static int64_t order_at(lazy_order *o, int64_t m) {
    while (o->done <= m) {
        o->order[o->done++] = o->heap[0];
        o->heap[0] = o->heap[--o->size];
        sift_down(o, 0);
    }
    return o->order[m];
}

/* ------------------------------------------------------------------------------------------------ semantic */
typedef struct {
    const float *masks;         /* [Q, h, w] every query */
    int64_t q, h, w;
    const double *class_probs;  /* [Q, K] */
    int64_t k;
    const int64_t *live;        /* [L] ascending */
    int64_t n_live;
    int sigmoid_first;
    double prune;
    axis_t y, x;
} semantic_frame;

typedef struct {                /* one cell the bounds leave open */
    int64_t yc, xc, n;
    const int64_t *cand;        /* [n] its candidate classes, ascending */
    const double *up;           /* [n] at least every score of the candidate in the cell */
    const double *outside;      /* [n] bound of what the queries that are not live add to the candidate */
    int64_t *labels;            /* [ry * rx] the pixel slots' labels */
    int64_t redone;             /* pixels evaluated with every query */
} semantic_open_cell;

typedef struct {
    double *win, *scratch, *probs, *pc, *slack, *err, *value, *prob, *all_win, *hl, *sums, *slo, *shi;
    int64_t *active, *order, *heap, *near_l;
} semantic_scratch;

/* Open cell C with its first m candidates in bound order (o->order[0..m)), S->hl holding each live query's sigmoid of its
 * window's largest logit (from sigmoid_fast: its error is added where used): per pixel, the sums of the active queries
 * (each at most the exact score, up to err) in bound order until the best sum beats every remaining bound of the
 * m; the winner must beat every evaluated one's sum plus its slack too, else the pixel is evaluated exactly with
 * every query and every candidate. Returns 0 when no candidate beyond the m reaches any pixel's best (the labels
 * hold), else the number of candidates that reach the lowest (the cell is done again with that many). */
static int64_t semantic_cell(const semantic_frame *J, semantic_scratch *S, semantic_open_cell *C, lazy_order *o,
                             int64_t m) {
    const int64_t s = J->y.window * J->x.window, L = J->n_live, K = J->k;
    const int64_t ry = J->y.len, rx = J->x.len, P = ry * rx;
    const int64_t yc = C->yc, xc = C->xc, n = C->n;
    const int64_t *cand = C->cand;
    const double *up = C->up;
    for (int64_t t = 0; t < m; t++) order_at(o, t);
    const int64_t *sel = o->order; /* positions in the candidate list (ascending class ids) */
    /* Bound of each live query's probability in the cell (sigmoid of its window's largest logit); the queries that
     * can add more than `prune` to one of the m are summed per pixel, the others enter as a slack per candidate. */
    int64_t na = 0;
    for (int64_t t = 0; t < m; t++) S->slack[t] = C->outside[sel[t]];
    for (int64_t l = 0; l < L; l++) { /* S->hl: the sigmoids of the windows' largest logits (semantic_resolve_cell) */
        const int64_t qi = J->live[l];
        const double h_l = S->hl[l] + FAST_SIGMOID_ERROR;
        double top = 0.0;
        for (int64_t t = 0; t < m; t++) {
            const double p = J->class_probs[qi * K + cand[sel[t]]];
            top = p > top ? p : top;
        }
        if (h_l * top > J->prune) {
            S->active[na++] = qi;
        } else {
            for (int64_t t = 0; t < m; t++) S->slack[t] += J->class_probs[qi * K + cand[sel[t]]] * h_l;
        }
    }
    for (int64_t t = 0; t < m; t++) S->slack[t] = S->slack[t] * (1.0 + 1e-9) + 1e-9;
    /* Every active query's probability at every pixel slot of the cell: the interpolation as the tensor path
     * computes it, then (upsample_logits) the fast sigmoid, within FAST_SIGMOID_ERROR of the exact one. */
    const int fast = !J->sigmoid_first;
    for (int64_t a = 0; a < na; a++) {
        gather(J->masks, J->h, J->w, S->active[a], &J->y, yc, &J->x, xc, J->sigmoid_first, S->win);
        double *row = S->probs + a * P;
        interpolate_cell(S->win, &J->y, yc, &J->x, xc, S->scratch, row);
        if (fast) sigmoid_fast(row, P);
        for (int64_t t = 0; t < m; t++) S->pc[t * na + a] = J->class_probs[S->active[a] * K + cand[sel[t]]];
    }
    /* Each sum of the fast probabilities lies within err[t] of the same sum of the exact ones (each term's
     * probability error, plus the two sums' rounding: probabilities <= 1, non-negative terms). */
    for (int64_t t = 0; t < m; t++) {
        double total = 0.0;
        for (int64_t a = 0; a < na; a++) total += S->pc[t * na + a];
        S->err[t] = fast ? total * (FAST_SIGMOID_ERROR + 2.0 * (double)(na + 2) * 0x1p-53) * (1.0 + 1e-9) : 0.0;
    }
    /* The m candidates' sums at every pixel slot: the same terms in the same order per pixel, as vector loops over
     * the slots (per pixel, a chain of ~23 dependent multiply-adds waited on each other's latency). */
    for (int64_t t = 0; t < m; t++) {
        double *sum = S->sums + t * P;
        const double *row = S->pc + t * na;
        if (na == 0) {
            for (int64_t p = 0; p < P; p++) sum[p] = 0.0;
            continue;
        }
        for (int64_t p = 0; p < P; p++) sum[p] = row[0] * S->probs[p];
        for (int64_t a = 1; a < na; a++) {
            const double c = row[a], *pa = S->probs + a * P;
            for (int64_t p = 0; p < P; p++) sum[p] = sum[p] + c * pa[p];
        }
    }
    double floor = INFINITY; /* lowest best (minus its error) of the pixels decided from the m */
    int all_ready = 0;
    for (int64_t i = 0; i < ry; i++) {
        if (!J->y.valid[yc * ry + i]) continue;
        for (int64_t j = 0; j < rx; j++) {
            if (!J->x.valid[xc * rx + j]) continue;
            const int64_t p = i * rx + j;
            int64_t w = 0, t = 0; /* w: index into sel of the first maximum in class order so far */
            for (; t < m; t++) {
                if (t > 0 && up[sel[t]] < S->value[w] - S->err[w]) break;
                const double v = S->sums[t * P + p];
                S->value[t] = v;
                if (t > 0 && (v > S->value[w] || (v == S->value[w] && sel[t] < sel[w]))) w = t;
            }
            int safe = 1;
            for (int64_t k = 0; k < t && safe; k++)
                if (k != w && !(S->value[w] - S->err[w] > S->value[k] + S->err[k] + S->slack[k])) safe = 0;
            int64_t label;
            if (safe) {
                label = cand[sel[w]];
                const double best = S->value[w] - S->err[w];
                floor = best < floor ? best : floor;
            } else { /* near a tie: every query and every candidate, exactly, summed in query order */
                if (!all_ready) {
                    for (int64_t qi = 0; qi < J->q; qi++)
                        gather(J->masks, J->h, J->w, qi, &J->y, yc, &J->x, xc, J->sigmoid_first, S->all_win + qi * s);
                    all_ready = 1;
                }
                for (int64_t qi = 0; qi < J->q; qi++)
                    S->prob[qi] = probability(S->all_win + qi * s, &J->y, yc, i, &J->x, xc, j, J->sigmoid_first);
                int64_t c_best = 0;
                double v_best = -INFINITY;
                for (int64_t c = 0; c < n; c++) {
                    double v = J->class_probs[cand[c]] * S->prob[0];
                    for (int64_t qi = 1; qi < J->q; qi++) v = v + J->class_probs[qi * K + cand[c]] * S->prob[qi];
                    if (c == 0 || v > v_best) {
                        v_best = v;
                        c_best = c;
                    }
                }
                label = cand[c_best];
                C->redone++;
            }
            C->labels[i * rx + j] = label;
        }
    }
    if (m >= n || up[order_at(o, m)] < floor) return 0;
    int64_t more = m;
    while (more < n && up[order_at(o, more)] >= floor) more++;
    return more;
}

/* ------------------------------------------------------------------------------------------------ entry points */
static axis_t make_axis(int64_t window, int64_t len, const uint8_t *valid, const double *weights,
                        const int64_t *start) {
    axis_t a = {window, len, valid, weights, start};
    return a;
}

#define MAX_THREADS 64

/* fn(jobs[t]) for t < threads: job 0 in the calling thread, the others on POSIX threads (run here when one cannot
 * be started). */
static void run_jobs(void *jobs, size_t size, int threads, void *(*fn)(void *)) {
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    char *base = jobs;
    for (int t = 1; t < threads; t++) started[t] = pthread_create(&ids[t], NULL, fn, base + t * size) == 0;
    fn(base);
    for (int t = 1; t < threads; t++) {
        if (started[t]) pthread_join(ids[t], NULL);
        else fn(base + t * size);
    }
}

/* Work items u0..u1 claimed `chunk` at a time from a counter the threads share: a thread whose core is busier (a
 * contended host, the other merge) takes fewer, instead of the others waiting for its fixed half. */
#define FOR_CLAIMED(J, var)                                                                                          \
    for (int64_t claim_; (claim_ = (J)->u0 + __atomic_fetch_add((J)->next, (J)->chunk, __ATOMIC_RELAXED)) < (J)->u1;) \
        for (int64_t var = claim_; var < claim_ + (J)->chunk && var < (J)->u1; var++)

/* A job's share of the work: items 0..total claimed `chunk` at a time from the entry point's counter. */
#define CLAIM_FROM(job, counter, total, size) ((job).u0 = 0, (job).u1 = (total), (job).next = &(counter), (job).chunk = (size))

/* Whether any of the first nt jobs failed (their status field). */
#define ANY_FAILED(jobs, nt) any_failed(&(jobs)[0].status, sizeof((jobs)[0]), (nt))
static int any_failed(const int *first, size_t stride, int nt) {
    for (int t = 0; t < nt; t++)
        if (*(const int *)((const char *)first + (size_t)t * stride)) return 1;
    return 0;
}

/* Cell rows per claim of the row-wise kernels: runs of consecutive rows, since each thread keeps its own row maxima
 * and the window of a cell row shares a mask row with the next one (single rows handed out in turn made both
 * threads read every mask row), yet a few runs per thread, so that a thread on a busier core takes fewer. */
static int64_t row_run(int64_t rows, int threads) {
    const int64_t run = rows / (4 * (int64_t)threads);
    return run > 1 ? run : 1;
}

static int clamp_threads(int32_t threads, int64_t work) {
    int t = threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS : threads;
    return work < t ? (work > 0 ? (int)work : 1) : t;
}

/* ------------------------------------------------------------------------------------------------ whole panoptic */
/* The panoptic merge (cellmerge.py, _panoptic_native): per cell, every
 * query's window extremes give its mask tests (inside / crossing the threshold's logit cuts, as the tensor path's
 * float32 comparisons) and, for the queries near the cell (largest logit >= far), float64 bounds of its score
 * s * sigmoid(logit); the others are bounded together by their largest score times the sigmoid of their largest
 * logit. A cell is decided when one query's lower bound beats every other upper bound (relative margin BOUND_REL:
 * far above float64 rounding of the per-pixel values, which stay within a few 1e-16 relative of the exact ones,
 * since the sigmoid's slope is at most the sigmoid itself). */
#define BOUND_REL 1e-10
#define BOUND_ABS 1e-30

typedef struct {
    const float *masks;           /* [Q, h, w] */
    const int64_t *ids;           /* [n] the kept queries' planes in masks (NULL: the first n) */
    int64_t n, h, w;
    const double *scores;
    int sigmoid_first;
    double threshold;
    float cut_in, cut_reach, far;
    axis_t y, x;
    const int64_t *y_len, *x_len; /* pixels per cell along each axis */
    int64_t cells_x;
    int64_t u0, u1;               /* merge: cell rows u0..u1; edge: cells */
    int64_t *next, chunk;         /* the shared claim counter (FOR_CLAIMED) */
    const int64_t *list;          /* edge: queries */
    int64_t *cell_winner;         /* [Cy * Cx]: -1 undecided */
    uint8_t *cell_owned, *cell_partly;
    int64_t *inside_area, *edge_area; /* [n] this job's own sums (merge), counts [m] (edge) */
    int32_t *pixels;              /* merge: [H * W] 2 * winner + owned at the pixels of the cells resolved per pixel */
    int64_t *won, *fin;           /* merge: [n] this job's pixels won / won and owned */
    const int64_t *y_pixel, *x_pixel; /* [C, r] output rows / columns of each cell's pixels */
    int64_t width;
    double *up;                   /* [n] scratch: one cell's candidates, their upper bounds and order */
    int64_t *cand, *order, *heap;
    double *win;                  /* [Sy * Sx] one query's window */
    bag_t bag;
    int status;
} whole_job;

/* The mask plane of entity e. */
static int64_t query(const whole_job *J, int64_t e) { return J->ids ? J->ids[e] : e; }

static int whole_alloc(whole_job *J) {
    const int64_t n = J->n + 1, s = J->y.window * J->x.window;
    bag_t *B = &J->bag;
    J->up = TAKE(B, double, n);
    J->cand = TAKE(B, int64_t, n);
    J->order = TAKE(B, int64_t, n);
    J->heap = TAKE(B, int64_t, n);
    J->win = TAKE(B, double, s);
    J->status = B->failed;
    return !J->status;
}

static void whole_free(whole_job *J) { bag_free(&J->bag); }

/* The largest of values[0..n) (n >= 1), in 16 lanes: the compiler keeps a one-accumulator maximum scalar (it may not
 * reorder the comparisons of a reduction without -ffast-math), which made the row maxima a chain of n dependent
 * compares; the maximum of finite values does not depend on the order. */
static float largest(const float *values, int64_t n) {
    float lane[16];
    for (int64_t l = 0; l < 16; l++) lane[l] = values[0];
    int64_t j = 0;
    for (; j + 16 <= n; j += 16)
        for (int64_t l = 0; l < 16; l++) lane[l] = values[j + l] > lane[l] ? values[j + l] : lane[l];
    float m = lane[0];
    for (int64_t l = 1; l < 16; l++) m = lane[l] > m ? lane[l] : m;
    for (; j < n; j++) m = values[j] > m ? values[j] : m;
    return m;
}

/* The smallest and largest value of a mask plane [h, w] on cell (yc, xc)'s window. */
static void window_extremes(const float *plane, int64_t w, const axis_t *ay, int64_t yc, const axis_t *ax,
                            int64_t xc, float *lo, float *hi) {
    const float *base = plane + ay->start[yc] * w + ax->start[xc];
    float a = base[0], b = base[0];
    for (int64_t i = 0; i < ay->window; i++)
        for (int64_t j = 0; j < ax->window; j++) {
            const float v = base[i * w + j];
            a = v < a ? v : a;
            b = v > b ? v : b;
        }
    *lo = a;
    *hi = b;
}

/* The same for every cell of cell row yc at once: lo / hi [cx_n], by vector loops over the mask rows (col_lo /
 * col_hi: scratch of w values). */
static void row_extremes(const float *plane, int64_t w, const axis_t *ay, int64_t yc, const axis_t *ax, int64_t cx_n,
                         float *col_lo, float *col_hi, float *lo, float *hi) {
    const float *rows = plane + ay->start[yc] * w;
    for (int64_t j = 0; j < w; j++) col_lo[j] = col_hi[j] = rows[j];
    for (int64_t a = 1; a < ay->window; a++)
        for (int64_t j = 0; j < w; j++) {
            const float v = rows[a * w + j];
            col_lo[j] = v < col_lo[j] ? v : col_lo[j];
            col_hi[j] = v > col_hi[j] ? v : col_hi[j];
        }
    for (int64_t c = 0; c < cx_n; c++) {
        const int64_t x0 = ax->start[c];
        float l = col_lo[x0], h = col_hi[x0];
        for (int64_t b = 1; b < ax->window; b++) {
            l = col_lo[x0 + b] < l ? col_lo[x0 + b] : l;
            h = col_hi[x0 + b] > h ? col_hi[x0 + b] : h;
        }
        lo[c] = l;
        hi[c] = h;
    }
}

/* Window extremes of query e at cell (yc, xc). */
static void extremes(const whole_job *J, int64_t e, int64_t yc, int64_t xc, float *lo, float *hi) {
    window_extremes(J->masks + query(J, e) * J->h * J->w, J->w, &J->y, yc, &J->x, xc, lo, hi);
}

/* A cell's candidates from its near queries (ids ne, widened probability bounds nlo / nhi from near_sigmoids)
 * and the far ones' largest score and logit: ascending query ids into cand, their widened upper bounds into up, at
 * most `limit` of them. Where the far queries can reach the near ones' best lower bound, every query is a candidate,
 * bounded by the exact sigmoid of hi[e * stride] (its largest window logit). Returns the count. */
static int64_t cell_candidates(const double *scores, int64_t n, int64_t nn, const int64_t *ne, double *nlo,
                               double *nhi, int any_far, double far_score, float far_hi, const float *hi,
                               int64_t stride, int64_t limit, int64_t *cand, double *up) {
    double best = -INFINITY;
    for (int64_t t = 0; t < nn; t++) {
        const double low = scores[ne[t]] * (nlo[t] > 0.0 ? nlo[t] : 0.0);
        best = low > best ? low : best;
    }
    const double floor = best * (1.0 - BOUND_REL) - BOUND_ABS;
    const int all = any_far && far_score * sigmoid((double)far_hi) * (1.0 + BOUND_REL) + BOUND_ABS >= floor;
    int64_t count = 0;
    for (int64_t t = 0; t < (all ? n : nn) && count < limit; t++) {
        const int64_t e = all ? t : ne[t];
        const double bound = all ? scores[e] * sigmoid((double)hi[e * stride]) : scores[e] * nhi[t];
        const double u = bound * (1.0 + BOUND_REL) + BOUND_ABS;
        if (u >= floor) {
            up[count] = u;
            cand[count++] = e;
        }
    }
    return count;
}

/* Each query's largest logit on each mask row that cell rows u0..u1 read ([n, rows] from mask row `first`), computed when
 * first asked for (window_row_max), so that a row is read for it right before the window extremes read it again (the
 * masks do not fit in the cache; a separate pass over them was the kernels' largest memory traffic). A query whose
 * largest logit on a cell row's window rows is below the far cut is far from every cell of the row, and that maximum
 * bounds its logit in each of them: its rows are not read again. */
typedef struct {
    const float *masks;
    const int64_t *ids; /* query of each entry (NULL: the entry itself) */
    int64_t h, w, first, rows;
    float *maxima;
    uint8_t *known;
} row_maxima_t;

static int row_maxima_init(row_maxima_t *R, bag_t *bag, const float *masks, const int64_t *ids, int64_t n, int64_t h,
                           int64_t w, const axis_t *ay, int64_t u0, int64_t u1) {
    R->masks = masks;
    R->ids = ids;
    R->h = h;
    R->w = w;
    R->first = u1 > u0 ? ay->start[u0] : 0;
    R->rows = u1 > u0 ? ay->start[u1 - 1] + ay->window - R->first : 0;
    R->maxima = TAKE(bag, float, n * R->rows + 1);
    R->known = TAKE0(bag, uint8_t, n * R->rows + 1);
    return !bag->failed;
}

static float window_row_max(row_maxima_t *R, int64_t e, const axis_t *ay, int64_t yc) {
    float top = -INFINITY;
    for (int64_t a = 0; a < ay->window; a++) {
        const int64_t at = e * R->rows + ay->start[yc] + a - R->first;
        if (!R->known[at]) {
            const float *row = R->masks + ((R->ids ? R->ids[e] : e) * R->h + ay->start[yc] + a) * R->w;
            R->maxima[at] = largest(row, R->w);
            R->known[at] = 1;
        }
        top = R->maxima[at] > top ? R->maxima[at] : top;
    }
    return top;
}

/* Scratch of the per-pixel work of one panoptic cell, and the fast values' error bounds. */
typedef struct {
    double *prob, *rows, *best, *second, *best_p;
    int64_t *best_e;
    double p_err, err; /* per probability, per score */
} pixel_scratch;

static int pixel_alloc(const whole_job *J, pixel_scratch *X, bag_t *bag) {
    const int64_t rx = J->x.len, P = J->y.len * rx;
    X->prob = TAKE(bag, double, P + 1);
    X->rows = TAKE(bag, double, J->y.window * rx + 1);
    X->best = TAKE(bag, double, P + 1);
    X->second = TAKE(bag, double, P + 1);
    X->best_p = TAKE(bag, double, P + 1);
    X->best_e = TAKE(bag, int64_t, P + 1);
    double smax = 1.0;
    for (int64_t e = 0; e < J->n; e++) smax = J->scores[e] > smax ? J->scores[e] : smax;
    X->p_err = J->sigmoid_first ? 0x1p-50 : FAST_SIGMOID_ERROR + 0x1p-50;
    X->err = smax * X->p_err;
    return !bag->failed;
}

/* The pixels of cell (yc, xc), whose n candidates are in J->cand / J->up (decided >= 0: the cell's winner, whose
 * mask edge crosses it: only its ownership per pixel): the candidates in the order of their upper bounds, each
 * evaluated at every pixel slot at once (interpolation and, for upsample_logits, the fast sigmoid as vector loops)
 * until no remaining bound reaches the lowest best value of the cell's pixels. A pixel whose best beats the
 * runner-up by more than twice the fast values' error (`err`) has that winner; near-ties are evaluated again exactly
 * (libm sigmoid, first maximum), and so is the winner's probability where it lies within the error of the mask
 * threshold. Into J->pixels, J->won (undecided cells) and J->fin. */
static void panoptic_resolve_cell(whole_job *J, pixel_scratch *X, int64_t yc, int64_t xc, int64_t n,
                                  int64_t decided) {
    const int64_t ry = J->y.len, rx = J->x.len, P = ry * rx;
    double *prob = X->prob, *best = X->best, *second = X->second, *best_p = X->best_p;
    int64_t *best_e = X->best_e;
    const double err = X->err;
    lazy_order o;
    order_init(&o, J->up, n, J->heap, J->order);
    for (int64_t p = 0; p < P; p++) {
        best[p] = second[p] = -INFINITY;
        best_e[p] = -1;
        best_p[p] = 0.0;
    }
    double low = -INFINITY; /* the lowest best value of the cell's slots (padding repeats real pixels) */
    int64_t evaluated = 0;
    for (; evaluated < n; evaluated++) {
        const int64_t c = order_at(&o, evaluated);
        if (evaluated > 0 && J->up[c] < low - err) break;
        const int64_t e = J->cand[c];
        const double score = J->scores[e];
        gather(J->masks, J->h, J->w, query(J, e), &J->y, yc, &J->x, xc, J->sigmoid_first, J->win);
        interpolate_cell(J->win, &J->y, yc, &J->x, xc, X->rows, prob);
        if (!J->sigmoid_first) sigmoid_fast(prob, P);
        low = INFINITY;
        for (int64_t p = 0; p < P; p++) {
            const double v = score * prob[p];
            if (v > best[p] || (v == best[p] && e < best_e[p])) {
                second[p] = best[p];
                best[p] = v;
                best_e[p] = e;
                best_p[p] = prob[p];
            } else if (v > second[p]) {
                second[p] = v;
            }
            low = best[p] < low ? best[p] : low;
        }
    }
    for (int64_t i = 0; i < ry; i++) {
        if (!J->y.valid[yc * ry + i]) continue;
        for (int64_t j = 0; j < rx; j++) {
            if (!J->x.valid[xc * rx + j]) continue;
            const int64_t p = i * rx + j;
            int64_t w = best_e[p];
            double pw = best_p[p];
            if (!(best[p] - err > second[p] + err)) { /* near a tie: the evaluated candidates, exactly */
                double top = -INFINITY;
                for (int64_t t = 0; t < evaluated; t++) {
                    const int64_t e = J->cand[o.order[t]];
                    gather(J->masks, J->h, J->w, query(J, e), &J->y, yc, &J->x, xc, J->sigmoid_first, J->win);
                    const double q = probability(J->win, &J->y, yc, i, &J->x, xc, j, J->sigmoid_first);
                    const double v = J->scores[e] * q;
                    if (t == 0 || v > top || (v == top && e < w)) {
                        top = v;
                        w = e;
                        pw = q;
                    }
                }
            } else if (!J->sigmoid_first && fabs(pw - J->threshold) <= X->p_err) { /* ownership: exactly */
                gather(J->masks, J->h, J->w, query(J, w), &J->y, yc, &J->x, xc, 0, J->win);
                pw = probability(J->win, &J->y, yc, i, &J->x, xc, j, 0);
            }
            const int owned = pw >= J->threshold;
            J->pixels[J->y_pixel[yc * ry + i] * J->width + J->x_pixel[xc * rx + j]] = (int32_t)(2 * w + owned);
            J->won[w] += decided < 0;
            J->fin[w] += owned;
        }
    }
}

/* The merge, one cell row at a time: each query's window extremes for the whole row first (vector loops over the
 * mask row), so that the queries far from the row - most of them - cost a few vector operations and no per-cell
 * work; then each cell's decision, and right away the per-pixel work of the cells it leaves open or whose winner's
 * edge crosses them (candidates from the same near lists and row extremes; those mask rows are still in the
 * cache). */
static void *merge_run(void *arg) {
    whole_job *J = arg;
    const int64_t n = J->n, cx_n = J->cells_x, w = J->w;
    bag_t bag = {0};
    pixel_scratch X;
    const int whole_ok = whole_alloc(J); /* J's own bag: the candidates of one cell */
    const int ok = pixel_alloc(J, &X, &bag) && whole_ok;
    float *lo_t = TAKE(&bag, float, n * cx_n + 1), *hi_t = TAKE(&bag, float, n * cx_n + 1);
    float *col_lo = TAKE(&bag, float, w + 1), *col_hi = TAKE(&bag, float, w + 1);
    float *far_hi = TAKE(&bag, float, cx_n + 1);
    double *far_s = TAKE(&bag, double, cx_n + 1);
    int64_t *near_n = TAKE(&bag, int64_t, cx_n + 1);
    int64_t *near_e = TAKE(&bag, int64_t, n * cx_n + 1);
    double *near_lo = TAKE(&bag, double, n * cx_n + 1);
    double *near_hi = TAKE(&bag, double, n * cx_n + 1);
    double *batch_lo = TAKE(&bag, double, n * cx_n + 1), *batch_hi = TAKE(&bag, double, n * cx_n + 1);
    row_maxima_t R;
    if (!row_maxima_init(&R, &bag, J->masks, J->ids, n, J->h, w, &J->y, J->u0, J->u1) || !ok) {
        J->status = 1;
        goto done;
    }
    FOR_CLAIMED(J, yc) {
        const int64_t height = J->y_len[yc];
        for (int64_t c = 0; c < cx_n; c++) {
            far_s[c] = 0.0;
            far_hi[c] = -INFINITY;
            near_n[c] = 0;
        }
        for (int64_t e = 0; e < n; e++) {
            const float row_top = window_row_max(&R, e, &J->y, yc);
            if (row_top < J->far) { /* far from the whole cell row: bounded by its row maximum everywhere */
                const double score = J->scores[e];
                float *lo = lo_t + e * cx_n, *hi = hi_t + e * cx_n;
                for (int64_t c = 0; c < cx_n; c++) {
                    lo[c] = hi[c] = row_top;
                    far_s[c] = score > far_s[c] ? score : far_s[c];
                    far_hi[c] = row_top > far_hi[c] ? row_top : far_hi[c];
                }
                continue;
            }
            float *lo = lo_t + e * cx_n, *hi = hi_t + e * cx_n;
            row_extremes(J->masks + query(J, e) * J->h * w, w, &J->y, yc, &J->x, cx_n, col_lo, col_hi, lo, hi);
            const double score = J->scores[e];
            if (largest(hi, cx_n) < J->far) { /* far from the whole row (most queries): one vector pass */
                for (int64_t c = 0; c < cx_n; c++) {
                    far_s[c] = score > far_s[c] ? score : far_s[c];
                    far_hi[c] = hi[c] > far_hi[c] ? hi[c] : far_hi[c];
                }
                continue;
            }
            for (int64_t c = 0; c < cx_n; c++) {
                if (hi[c] < J->far) { /* bounded with the other far queries; no mask test can pass */
                    far_s[c] = score > far_s[c] ? score : far_s[c];
                    far_hi[c] = hi[c] > far_hi[c] ? hi[c] : far_hi[c];
                    continue;
                }
                const int64_t at = c * n + near_n[c]++;
                near_e[at] = e;
                near_lo[at] = (double)lo[c];
                near_hi[at] = (double)hi[c];
                const int64_t size = height * J->x_len[c];
                if (lo[c] >= J->cut_in) J->inside_area[e] += size;
                else if (hi[c] >= J->cut_reach) J->edge_area[e] += size;
            }
        }
        row_near_sigmoids(near_lo, near_hi, near_n, n, cx_n, batch_lo, batch_hi);
        for (int64_t c = 0; c < cx_n; c++) {
            int64_t two[2]; /* a cell is decided when it has exactly one candidate */
            double two_up[2];
            const int64_t count = cell_candidates(J->scores, n, near_n[c], near_e + c * n, near_lo + c * n,
                                                  near_hi + c * n, far_hi[c] > -INFINITY, far_s[c], far_hi[c],
                                                  hi_t + c, cx_n, 2, two, two_up);
            const int64_t u = yc * cx_n + c, winner = count == 1 ? two[0] : -1;
            J->cell_winner[u] = winner;
            J->cell_owned[u] = winner >= 0 && lo_t[winner * cx_n + c] >= J->cut_in;
            J->cell_partly[u] = winner >= 0 && !J->cell_owned[u] && hi_t[winner * cx_n + c] >= J->cut_reach;
            const int64_t size = height * J->x_len[c];
            if (winner >= 0) {
                J->won[winner] += size;
                J->fin[winner] += J->cell_owned[u] ? size : 0;
                if (!J->cell_partly[u]) continue;
                J->cand[0] = winner; /* its mask edge crosses the cell: ownership per pixel */
                J->up[0] = INFINITY;
                panoptic_resolve_cell(J, &X, yc, c, 1, winner);
            } else { /* open: every candidate, right away (this row's mask rows are in the cache) */
                const int64_t m = cell_candidates(J->scores, n, near_n[c], near_e + c * n, near_lo + c * n,
                                                  near_hi + c * n, far_hi[c] > -INFINITY, far_s[c], far_hi[c],
                                                  hi_t + c, cx_n, n, J->cand, J->up);
                panoptic_resolve_cell(J, &X, yc, c, m, -1);
            }
        }
    }
done:
    bag_free(&bag);
    whole_free(J);
    return NULL;
}

/* Mask areas along the edges: for each listed query, the pixels with probability >= threshold in the cells its mask
 * edge crosses (cells u0..u1 of the grid; counts into inside_area[m]). */
static void *edge_run(void *arg) {
    whole_job *J = arg;
    if (!whole_alloc(J)) {
        whole_free(J);
        return NULL;
    }
    const int64_t ry = J->y.len, rx = J->x.len;
    const int64_t m = J->n; /* J->n: the number of listed queries here */
    FOR_CLAIMED(J, u) {
        const int64_t yc = u / J->cells_x, xc = u % J->cells_x;
        for (int64_t k = 0; k < m; k++) {
            const int64_t e = J->list[k];
            float lo, hi;
            extremes(J, e, yc, xc, &lo, &hi);
            if (lo >= J->cut_in || hi < J->cut_reach) continue;
            gather(J->masks, J->h, J->w, query(J, e), &J->y, yc, &J->x, xc, J->sigmoid_first, J->win);
            int64_t hits = 0;
            for (int64_t i = 0; i < ry; i++) {
                if (!J->y.valid[yc * ry + i]) continue;
                for (int64_t j = 0; j < rx; j++)
                    if (J->x.valid[xc * rx + j])
                        hits += probability(J->win, &J->y, yc, i, &J->x, xc, j, J->sigmoid_first) >= J->threshold;
            }
            J->inside_area[k] += hits;
        }
    }
    whole_free(J);
    return NULL;
}

static whole_job whole_base(const float *masks, const int64_t *ids, int64_t n, int64_t h, int64_t w, const double *scores,
                            int32_t sigmoid_first, double threshold, float cut_in, float cut_reach, float far,
                            int64_t sy, int64_t ry, const uint8_t *y_valid, const double *y_weights,
                            const int64_t *y_start, const int64_t *y_len, int64_t sx, int64_t rx,
                            const uint8_t *x_valid, const double *x_weights, const int64_t *x_start,
                            const int64_t *x_len, int64_t cells_x) {
    whole_job J;
    memset(&J, 0, sizeof J);
    J.masks = masks;
    J.ids = ids;
    J.n = n;
    J.h = h;
    J.w = w;
    J.scores = scores;
    J.sigmoid_first = sigmoid_first;
    J.threshold = threshold;
    J.cut_in = cut_in;
    J.cut_reach = cut_reach;
    J.far = far;
    J.y = make_axis(sy, ry, y_valid, y_weights, y_start);
    J.x = make_axis(sx, rx, x_valid, x_weights, x_start);
    J.y_len = y_len;
    J.x_len = x_len;
    J.cells_x = cells_x;
    return J;
}

#define WHOLE_ARGS                                                                                                   \
    const float *masks, const int64_t *ids, int64_t n, int64_t h, int64_t w, const double *scores,                   \
        int32_t sigmoid_first,                                                                                       \
        double threshold, float cut_in, float cut_reach, float far, int64_t sy, int64_t ry, const uint8_t *y_valid,  \
        const double *y_weights, const int64_t *y_start, const int64_t *y_len, int64_t sx, int64_t rx,               \
        const uint8_t *x_valid, const double *x_weights, const int64_t *x_start, const int64_t *x_len,               \
        int64_t cells_y, int64_t cells_x
#define WHOLE_BASE                                                                                                   \
    whole_base(masks, ids, n, h, w, scores, sigmoid_first, threshold, cut_in, cut_reach, far, sy, ry, y_valid, y_weights, \
               y_start, y_len, sx, rx, x_valid, x_weights, x_start, x_len, cells_x)

/* The whole panoptic merge but the id map: every cell's winner (-1: undecided), whether it owns the whole cell and
 * whether its mask edge crosses it, each query's area of cells inside its mask / crossed by its edge (inside_area,
 * edge_area [n]); the pixels of the undecided cells and of those crossed by their winner's edge into pixels [H * W]
 * (2 * winner + owned; the other pixels untouched), one cell row at a time right after its decision; each query's
 * pixels won and won and owned (won, fin [n]). The [n] outputs are added to. */
int64_t bfr_panoptic_merge(WHOLE_ARGS, const int64_t *y_pixel, const int64_t *x_pixel, int64_t width,
                           int64_t *cell_winner, uint8_t *cell_owned, uint8_t *cell_partly, int64_t *inside_area,
                           int64_t *edge_area, int32_t *pixels, int64_t *won, int64_t *fin, int32_t threads) {
    const int nt = clamp_threads(threads, cells_y);
    int64_t next = 0; /* the claim counter of FOR_CLAIMED */
    whole_job jobs[MAX_THREADS];
    int64_t *sums = calloc((size_t)(4 * n * nt + 1), sizeof(int64_t));
    if (!sums) return -1;
    for (int t = 0; t < nt; t++) { /* by cell rows */
        int64_t *own = sums + 4 * n * t;
        jobs[t] = WHOLE_BASE;
        CLAIM_FROM(jobs[t], next, cells_y, row_run(cells_y, nt));
        jobs[t].cell_winner = cell_winner;
        jobs[t].cell_owned = cell_owned;
        jobs[t].cell_partly = cell_partly;
        jobs[t].inside_area = own;
        jobs[t].edge_area = own + n;
        jobs[t].won = own + 2 * n;
        jobs[t].fin = own + 3 * n;
        jobs[t].pixels = pixels;
        jobs[t].y_pixel = y_pixel;
        jobs[t].x_pixel = x_pixel;
        jobs[t].width = width;
    }
    run_jobs(jobs, sizeof jobs[0], nt, merge_run);
    const int64_t status = ANY_FAILED(jobs, nt);
    for (int t = 0; t < nt; t++) {
        for (int64_t e = 0; e < n; e++) {
            inside_area[e] += jobs[t].inside_area[e];
            edge_area[e] += jobs[t].edge_area[e];
            won[e] += jobs[t].won[e];
            fin[e] += jobs[t].fin[e];
        }
    }
    free(sums);
    return status ? -1 : 0;
}

/* The id map and the segment table in one pass (postprocess: PanopticResult): each pixel's segment id
 * (lut[winner] where the winner owns it, else 0) into ids [H * W], a cell without per-pixel results as spans of one
 * id, the others from pixels (bfr_panoptic_merge); per id 0..n_ids the area, the sums of the pixels' columns and
 * rows, and the box (stats [7, n_ids + 1]: area, sum_x, sum_y, x0, y0, x1, y1; sums of integers, exact). */
typedef struct {
    const int64_t *cell_winner;
    const uint8_t *cell_owned, *cell_pixelwise;
    const int32_t *lut, *pixels;
    int32_t *ids;
    const int64_t *y_len, *x_len, *y_pixel, *x_pixel;
    int64_t ry, rx, cells_x, width, nb;
    int64_t u0, u1, *next, chunk;
    int64_t *stats;             /* [7, nb] this job's own */
    int status;
} paint_job;

static void add_span(int64_t *st, int64_t nb, int64_t id, int64_t y, int64_t x0, int64_t len) {
    st[id] += len;
    st[nb + id] += len * x0 + len * (len - 1) / 2;
    st[2 * nb + id] += y * len;
    st[3 * nb + id] = x0 < st[3 * nb + id] ? x0 : st[3 * nb + id];
    st[4 * nb + id] = y < st[4 * nb + id] ? y : st[4 * nb + id];
    st[5 * nb + id] = x0 + len - 1 > st[5 * nb + id] ? x0 + len - 1 : st[5 * nb + id];
    st[6 * nb + id] = y > st[6 * nb + id] ? y : st[6 * nb + id];
}

static void *paint_run(void *arg) {
    paint_job *J = arg;
    FOR_CLAIMED(J, yc) {
        for (int64_t i = 0; i < J->y_len[yc]; i++) {
            const int64_t y = J->y_pixel[yc * J->ry + i];
            int32_t *o = J->ids + y * J->width;
            const int32_t *px = J->pixels + y * J->width;
            for (int64_t xc = 0; xc < J->cells_x; xc++) {
                const int64_t cell = yc * J->cells_x + xc, x0 = J->x_pixel[xc * J->rx], len = J->x_len[xc];
                if (!J->cell_pixelwise[cell]) {
                    const int32_t id = J->cell_owned[cell] ? J->lut[J->cell_winner[cell]] : 0;
                    for (int64_t j = 0; j < len; j++) o[x0 + j] = id;
                    add_span(J->stats, J->nb, id, y, x0, len);
                    continue;
                }
                for (int64_t j = 0; j < len; j++) {
                    const int32_t v = px[x0 + j], id = (v & 1) ? J->lut[v >> 1] : 0;
                    o[x0 + j] = id;
                    add_span(J->stats, J->nb, id, y, x0 + j, 1);
                }
            }
        }
    }
    return NULL;
}

int64_t bfr_panoptic_paint(int64_t cells_y, int64_t cells_x, int64_t ry, int64_t rx, const int64_t *y_len,
                           const int64_t *x_len, const int64_t *y_pixel, const int64_t *x_pixel, int64_t width,
                           const int64_t *cell_winner, const uint8_t *cell_owned, const uint8_t *cell_pixelwise,
                           const int32_t *pixels, const int32_t *lut, int64_t n_ids, int32_t *ids_out, int64_t *stats,
                           int32_t threads) {
    const int nt = clamp_threads(threads, cells_y);
    const int64_t nb = n_ids + 1, big = INT64_MAX / 4;
    int64_t next = 0; /* the claim counter of FOR_CLAIMED */
    paint_job jobs[MAX_THREADS];
    int64_t *sums = malloc(sizeof(int64_t) * (size_t)(7 * nb * nt + 1));
    if (!sums) return -1;
    for (int t = 0; t < nt; t++) {
        int64_t *st = sums + 7 * nb * t;
        for (int64_t k = 0; k < nb; k++) {
            st[k] = st[nb + k] = st[2 * nb + k] = 0;
            st[3 * nb + k] = st[4 * nb + k] = big;
            st[5 * nb + k] = st[6 * nb + k] = -1;
        }
        jobs[t] = (paint_job){cell_winner, cell_owned, cell_pixelwise, lut, pixels, ids_out, y_len, x_len, y_pixel,
                              x_pixel, ry, rx, cells_x, width, nb, 0, 0, NULL, 0, st, 0};
        CLAIM_FROM(jobs[t], next, cells_y, row_run(cells_y, nt));
    }
    run_jobs(jobs, sizeof jobs[0], nt, paint_run);
    for (int64_t k = 0; k < nb; k++) {
        int64_t v[7] = {0, 0, 0, big, big, -1, -1};
        for (int t = 0; t < nt; t++) {
            const int64_t *st = sums + 7 * nb * t;
            for (int f = 0; f < 3; f++) v[f] += st[f * nb + k];
            for (int f = 3; f < 5; f++) v[f] = st[f * nb + k] < v[f] ? st[f * nb + k] : v[f];
            for (int f = 5; f < 7; f++) v[f] = st[f * nb + k] > v[f] ? st[f * nb + k] : v[f];
        }
        for (int f = 0; f < 7; f++) stats[f * nb + k] = v[f];
    }
    free(sums);
    return 0;
}

/* For the m listed kept queries (entity ids, as in the other calls): pixels with probability >= threshold in the cells
 * their mask edge crosses (counts [m], added to). */
int64_t bfr_panoptic_edges(WHOLE_ARGS, int64_t m, const int64_t *list, int64_t *counts, int32_t threads) {
    const int64_t cells = cells_y * cells_x;
    const int nt = clamp_threads(threads, cells);
    int64_t next = 0; /* the claim counter of FOR_CLAIMED */
    whole_job jobs[MAX_THREADS];
    int64_t *sums = calloc((size_t)(m * nt + 1), sizeof(int64_t));
    if (!sums) return -1;
    for (int t = 0; t < nt; t++) {
        jobs[t] = WHOLE_BASE;
        jobs[t].n = m;
        CLAIM_FROM(jobs[t], next, cells, cells_x);
        jobs[t].list = list;
        jobs[t].inside_area = sums + m * t;
    }
    run_jobs(jobs, sizeof jobs[0], nt, edge_run);
    const int64_t status = ANY_FAILED(jobs, nt);
    for (int t = 0; t < nt; t++)
        for (int64_t k = 0; k < m; k++) counts[k] += jobs[t].inside_area[k];
    free(sums);
    return status ? -1 : 0;
}

/* ------------------------------------------------------------------------------------------------ whole semantic */
/* The semantic merge (cellmerge.py, _semantic_native): per cell, every class score's bounds from
 * the live queries near the cell (window max >= near: each query's probability between the sigmoids of its window's
 * extreme logits), the live queries far from it together (the sigmoid of their largest logit times each class's sum
 * of their class probabilities) and the queries that are not live (`outside`, as the tensor path bounds them). A cell
 * whose best lower bound beats every other class's upper bound is decided; the others go to semantic_cell() with the
 * classes whose upper bound reaches it. Bounds are float64, widened by BOUND_REL (their rounding, and the per-pixel
 * sums', is ~1e-14 relative: non-negative terms). */
typedef struct {
    semantic_frame base;        /* masks, q, h, w, class_probs, k, live, n_live, sigmoid_first, prune, axes */
    const double *p_live;       /* [L, K] class probabilities of the live queries */
    const double *reach;        /* [K] their sum over the live queries */
    const double *dead, *dead_probs; /* [K] what the other queries add: at most dead, and dead_probs x their prob */
    const float *envelope;      /* [h, w] the other queries' largest logit; NULL when every query is live */
    const int64_t *major;       /* [n_major] ascending: the classes that can score high somewhere (or NULL) */
    int64_t n_major;
    double beyond;              /* at least every score of every other class anywhere */
    const int64_t *top_class;   /* [L] each live query's most probable class (the first of equals) */
    const double *top_prob, *other_prob; /* [L] its probability, and the largest of the query's other classes */
    double reach_max, dead_max, dead_probs_max; /* the largest entry of reach, dead, dead_probs */
    float near;
    int64_t cells_x, cells_y;
    int64_t u0, u1;             /* cell rows */
    int64_t *next, chunk;       /* the shared claim counter (FOR_CLAIMED) */
    const int64_t *y_len, *x_len; /* pixels per cell along each axis */
    const int64_t *y_pixel, *x_pixel; /* [C, r] output rows / columns of each cell's pixels */
    int64_t width;
    int64_t budget, *open_pixels; /* most pixels in open cells; their count so far (shared) */
    int *stop;                  /* shared: past the budget */
    void *out;                  /* [H * W] labels */
    int out_bytes;
    int64_t redone;
    int status;
} semwhole_job;

typedef struct {
    double *lower, *upper, *outside;
    int64_t *cand;
    double *cand_up, *cand_out;
} semwhole_scratch;

static float window_max(const float *plane, int64_t w, const axis_t *ay, int64_t yc, const axis_t *ax, int64_t xc) {
    float lo, hi;
    window_extremes(plane, w, ay, yc, ax, xc, &lo, &hi);
    return hi;
}

/* The cell decided by one class alone, from O(nn) sums instead of every class's (most cells: inside one segment, its
 * queries' class): the top class c of the near query with the best lower bound, whose lower bound must beat a bound
 * of every other class at once - per near query the largest probability it gives a class other than c (its top one,
 * or its second when its top one is c) times its upper bound, plus the largest reach of the far queries and the
 * largest share of the others. Sound for the same reasons as class_candidates' bounds, of which these are the
 * loosest; returns 1 with the candidate in S (as class_candidates), else 0. */
static int dominant_class(const semwhole_job *J, semwhole_scratch *S, int64_t nn, const int64_t *near_l,
                          const double *slo, const double *shi, double far, double env) {
    if (nn == 0) return 0;
    const int64_t K = J->base.k;
    int64_t best = 0;
    double best_low = -1.0;
    for (int64_t t = 0; t < nn; t++) {
        const double low = J->top_prob[near_l[t]] * (slo[t] > 0.0 ? slo[t] : 0.0);
        if (low > best_low) {
            best_low = low;
            best = t;
        }
    }
    const int64_t c = J->top_class[near_l[best]];
    double lower = 0.0, upper = 0.0, others = 0.0;
    for (int64_t t = 0; t < nn; t++) {
        const int64_t l = near_l[t];
        const double p = J->p_live[l * K + c];
        lower = lower + p * (slo[t] > 0.0 ? slo[t] : 0.0);
        upper = upper + p * shi[t];
        others = others + (J->top_class[l] == c ? J->other_prob[l] : J->top_prob[l]) * shi[t];
    }
    double out = 0.0, out_max = 0.0;
    if (J->envelope) {
        out = J->dead_probs[c] * env;
        out = J->dead[c] < out ? J->dead[c] : out;
        out_max = J->dead_probs_max * env;
        out_max = J->dead_max < out_max ? J->dead_max : out_max;
    }
    lower = lower * (1.0 - BOUND_REL) - BOUND_ABS;
    others = (others + far * J->reach_max + out_max) * (1.0 + BOUND_REL) + BOUND_ABS;
    if (!(lower > others)) return 0;
    S->cand[0] = c;
    S->cand_up[0] = (upper + far * J->reach[c] + out) * (1.0 + BOUND_REL) + BOUND_ABS;
    S->cand_out[0] = out;
    return 1;
}

/* Candidates of a cell from its near queries (nn of them: live indices near_l, probability bounds slo / shi), the
 * largest logit of the far live queries and of the other queries (envelope): into S->cand (ascending class ids),
 * cand_up (widened upper bounds), cand_out (the not-live queries' share). The classes that can score high decide
 * alone where their best lower bound beats `beyond`; elsewhere every class is bounded. Returns the count. */
static int64_t class_candidates(const semwhole_job *J, semwhole_scratch *S, int64_t nn, const int64_t *near_l,
                                const double *slo, const double *shi, float far_hi, float env_hi) {
    const int64_t K = J->base.k;
    const double far = far_hi > -INFINITY ? sigmoid((double)far_hi) : 0.0;
    const double env = J->envelope ? sigmoid((double)env_hi) : 0.0;
    if (dominant_class(J, S, nn, near_l, slo, shi, far, env)) return 1;
    for (int pass = J->n_major > 0 ? 0 : 1; pass < 2; pass++) {
        const int64_t ncls = pass == 0 ? J->n_major : K;
        const int64_t *cls = pass == 0 ? J->major : NULL;
        double *lower = S->lower, *upper = S->upper;
        for (int64_t i = 0; i < ncls; i++) lower[i] = upper[i] = 0.0;
        for (int64_t t = 0; t < nn; t++) {
            const double *row = J->p_live + near_l[t] * K, a = slo[t] > 0.0 ? slo[t] : 0.0, b = shi[t];
            if (cls) {
                for (int64_t i = 0; i < ncls; i++) {
                    lower[i] = lower[i] + row[cls[i]] * a;
                    upper[i] = upper[i] + row[cls[i]] * b;
                }
            } else {
                for (int64_t i = 0; i < ncls; i++) {
                    lower[i] = lower[i] + row[i] * a;
                    upper[i] = upper[i] + row[i] * b;
                }
            }
        }
        double best = -INFINITY;
        for (int64_t i = 0; i < ncls; i++) {
            const int64_t k = cls ? cls[i] : i;
            double out = 0.0;
            if (J->envelope) {
                out = J->dead_probs[k] * env;
                out = J->dead[k] < out ? J->dead[k] : out;
            }
            S->outside[i] = out;
            upper[i] = (upper[i] + far * J->reach[k] + out) * (1.0 + BOUND_REL) + BOUND_ABS;
            lower[i] = lower[i] * (1.0 - BOUND_REL) - BOUND_ABS;
            best = lower[i] > best ? lower[i] : best;
        }
        if (pass == 0 && !(best > J->beyond)) continue; /* another class might win: bound them all */
        int64_t n = 0;
        for (int64_t i = 0; i < ncls; i++)
            if (upper[i] >= best) {
                S->cand[n] = cls ? cls[i] : i;
                S->cand_up[n] = upper[i];
                S->cand_out[n++] = S->outside[i];
            }
        return n;
    }
    return 0; /* not reached */
}

static void semwhole_alloc(const semwhole_job *J, semwhole_scratch *S, bag_t *bag) {
    const int64_t K = J->base.k + 1;
    S->lower = TAKE(bag, double, K);
    S->upper = TAKE(bag, double, K);
    S->outside = TAKE(bag, double, K);
    S->cand = TAKE(bag, int64_t, K);
    S->cand_up = TAKE(bag, double, K);
    S->cand_out = TAKE(bag, double, K);
}

/* Row scratch of the semantic decision: the live queries' extremes on one cell row and its cells' near lists. */
typedef struct {
    float *col_lo, *col_hi, *row_lo, *row_hi, *far_hi;
    int64_t *nn, *near_l;
    double *slo, *shi, *batch_lo, *batch_hi;
    row_maxima_t R;
} semrow_scratch;

static int semrow_alloc(const semwhole_job *J, semrow_scratch *W, bag_t *bag) {
    const semantic_frame *B = &J->base;
    const int64_t L = B->n_live, cx_n = J->cells_x, w = B->w;
    W->col_lo = TAKE(bag, float, w + 1);
    W->col_hi = TAKE(bag, float, w + 1);
    W->row_lo = TAKE(bag, float, cx_n + 1);
    W->row_hi = TAKE(bag, float, cx_n + 1);
    W->far_hi = TAKE(bag, float, cx_n + 1);
    W->nn = TAKE(bag, int64_t, cx_n + 1);
    W->near_l = TAKE(bag, int64_t, cx_n * L + 1);
    W->slo = TAKE(bag, double, cx_n * L + 1);
    W->shi = TAKE(bag, double, cx_n * L + 1);
    W->batch_lo = TAKE(bag, double, cx_n * L + 1);
    W->batch_hi = TAKE(bag, double, cx_n * L + 1);
    return row_maxima_init(&W->R, bag, B->masks, B->live, L, B->h, w, &B->y, 0, J->cells_y);
}

/* The decision of cell row yc, into label[c] (-1 where undecided): the live queries' window extremes for the whole
 * row by vector loops, each cell's near queries listed with their logits, then the sigmoids of every near bound of
 * the row in one vector pass (a few per cell did not fill the vectors). */
static void semantic_decide_row(const semwhole_job *J, semwhole_scratch *S, semrow_scratch *W, int64_t yc,
                                int64_t *label) {
    const semantic_frame *B = &J->base;
    const int64_t L = B->n_live, cx_n = J->cells_x, w = B->w;
    for (int64_t c = 0; c < cx_n; c++) {
        W->far_hi[c] = -INFINITY;
        W->nn[c] = 0;
    }
    for (int64_t l = 0; l < L; l++) {
        const float row_top = window_row_max(&W->R, l, &B->y, yc);
        if (row_top < J->near) { /* far from the whole cell row: bounded by its row maximum everywhere */
            for (int64_t c = 0; c < cx_n; c++) W->far_hi[c] = row_top > W->far_hi[c] ? row_top : W->far_hi[c];
            continue;
        }
        row_extremes(B->masks + B->live[l] * B->h * w, w, &B->y, yc, &B->x, cx_n, W->col_lo, W->col_hi, W->row_lo,
                     W->row_hi);
        for (int64_t c = 0; c < cx_n; c++) {
            const float lo = W->row_lo[c], hi = W->row_hi[c];
            if (hi < J->near) {
                W->far_hi[c] = hi > W->far_hi[c] ? hi : W->far_hi[c];
            } else {
                const int64_t at = c * L + W->nn[c]++;
                W->near_l[at] = l;
                W->slo[at] = (double)lo;
                W->shi[at] = (double)hi;
            }
        }
    }
    row_near_sigmoids(W->slo, W->shi, W->nn, L, cx_n, W->batch_lo, W->batch_hi);
    for (int64_t c = 0; c < cx_n; c++) {
        const float env_hi = J->envelope ? window_max(J->envelope, w, &B->y, yc, &B->x, c) : 0.0f;
        const int64_t n = class_candidates(J, S, W->nn[c], W->near_l + c * L, W->slo + c * L, W->shi + c * L,
                                           W->far_hi[c], env_hi);
        label[c] = n == 1 ? S->cand[0] : -1;
    }
}

static int semcell_alloc(const semwhole_job *J, semantic_scratch *T, bag_t *bag) {
    const semantic_frame *B = &J->base;
    const int64_t K = B->k, L = B->n_live, q = B->q, s = B->y.window * B->x.window;
    const int64_t rx = B->x.len, P = B->y.len * rx;
    T->win = TAKE(bag, double, s + 1);
    T->scratch = TAKE(bag, double, B->y.window * rx + 1);
    T->probs = TAKE(bag, double, L * P + 1);
    T->pc = TAKE(bag, double, K * L + 1);
    T->slack = TAKE(bag, double, K + 1);
    T->err = TAKE(bag, double, K + 1);
    T->value = TAKE(bag, double, K + 1);
    T->prob = TAKE(bag, double, q + 1);
    T->all_win = TAKE(bag, double, q * s + 1);
    T->active = TAKE(bag, int64_t, L + 1);
    T->hl = TAKE(bag, double, L + 1);
    T->sums = TAKE(bag, double, K * P + 1);
    T->order = TAKE(bag, int64_t, K + 1);
    T->heap = TAKE(bag, int64_t, K + 1);
    T->near_l = TAKE(bag, int64_t, L + 1);
    T->slo = TAKE(bag, double, L + 1);
    T->shi = TAKE(bag, double, L + 1);
    return !bag->failed;
}

/* The labels of open cell (yc, xc)'s pixel slots into labels [ry * rx]; returns the pixels evaluated with every
 * query. Its candidates come again from every live query's window extremes (tighter than the decision's row
 * maxima for the far ones, and still in the cache: the decision of the same row read those mask rows). */
static int64_t semantic_resolve_cell(const semwhole_job *J, semwhole_scratch *S, semantic_scratch *T, int64_t yc,
                                     int64_t xc, int64_t *labels) {
    const semantic_frame *B = &J->base;
    const int64_t L = B->n_live, hw = B->h * B->w;
    int64_t nn = 0;
    float far_hi = -INFINITY;
    for (int64_t l = 0; l < L; l++) {
        float lo, hi;
        window_extremes(B->masks + B->live[l] * hw, B->w, &B->y, yc, &B->x, xc, &lo, &hi);
        T->hl[l] = (double)hi;
        if (hi < J->near) {
            far_hi = hi > far_hi ? hi : far_hi;
        } else {
            T->near_l[nn] = l;
            T->slo[nn] = (double)lo;
            T->shi[nn++] = (double)hi;
        }
    }
    near_sigmoids(T->slo, T->shi, nn);
    sigmoid_fast(T->hl, L);
    const float env_hi = J->envelope ? window_max(J->envelope, B->w, &B->y, yc, &B->x, xc) : 0.0f;
    const int64_t n = class_candidates(J, S, nn, T->near_l, T->slo, T->shi, far_hi, env_hi);
    semantic_open_cell C = {yc, xc, n, S->cand, S->cand_up, S->cand_out, labels, 0};
    lazy_order o;
    order_init(&o, S->cand_up, n, T->heap, T->order);
    int64_t m = n < 2 ? n : 2;
    while ((m = semantic_cell(B, T, &C, &o, m)) != 0) {
    }
    return C.redone;
}

/* Labels of one cell row into the output map out [H * W] (1- or 4-byte integers): each pixel row once, a decided
 * cell as one span of its label (columns of a cell are consecutive), an open one from open [xc * ry * rx ...]. */
#define PAINT_ROW(type)                                                                                              \
    do {                                                                                                             \
        type *o = (type *)J->out + y_pixel * J->width;                                                               \
        for (int64_t xc = 0; xc < cx_n; xc++) {                                                                      \
            const int64_t x0 = J->x_pixel[xc * rx], len = J->x_len[xc], v = label[xc];                             \
            if (v >= 0) {                                                                                            \
                for (int64_t j = 0; j < len; j++) o[x0 + j] = (type)v;                                               \
            } else {                                                                                                 \
                const int64_t *src = open + (xc * ry + i) * rx;                                                      \
                for (int64_t j = 0; j < len; j++) o[x0 + j] = (type)src[j];                                          \
            }                                                                                                        \
        }                                                                                                            \
    } while (0)

static void paint_row(const semwhole_job *J, int64_t yc, const int64_t *label, const int64_t *open) {
    const int64_t cx_n = J->cells_x, ry = J->base.y.len, rx = J->base.x.len;
    for (int64_t i = 0; i < J->y_len[yc]; i++) {
        const int64_t y_pixel = J->y_pixel[yc * ry + i];
        if (J->out_bytes == 1) PAINT_ROW(uint8_t);
        else PAINT_ROW(int32_t);
    }
}

/* The whole semantic merge, one cell row at a time: the row's decision, then right away the per-pixel work of its
 * open cells (their mask rows still in the cache), every pixel's label written into the output map. Open pixels
 * are counted against `budget`; past it every thread stops (the caller takes the dense merge instead). */
static void *semlabels_run(void *arg) {
    semwhole_job *J = arg;
    const semantic_frame *B = &J->base;
    const int64_t cx_n = J->cells_x, ry = B->y.len, rx = B->x.len;
    semwhole_scratch S;
    semrow_scratch W;
    semantic_scratch T;
    bag_t bag = {0};
    semwhole_alloc(J, &S, &bag);
    int64_t *row_label = TAKE(&bag, int64_t, cx_n + 1);
    int64_t *open = TAKE(&bag, int64_t, cx_n * ry * rx + 1); /* the open cells' pixel slots */
    if (!semrow_alloc(J, &W, &bag) || !semcell_alloc(J, &T, &bag)) {
        J->status = 1;
        goto done;
    }
    FOR_CLAIMED(J, yc) {
        if (__atomic_load_n(J->stop, __ATOMIC_RELAXED)) break;
        semantic_decide_row(J, &S, &W, yc, row_label);
        for (int64_t xc = 0; xc < cx_n; xc++) {
            if (row_label[xc] >= 0) continue;
            const int64_t pixels = J->y_len[yc] * J->x_len[xc];
            if (__atomic_add_fetch(J->open_pixels, pixels, __ATOMIC_RELAXED) > J->budget) {
                __atomic_store_n(J->stop, 1, __ATOMIC_RELAXED);
                break;
            }
            J->redone += semantic_resolve_cell(J, &S, &T, yc, xc, open + xc * ry * rx);
        }
        if (__atomic_load_n(J->stop, __ATOMIC_RELAXED)) break; /* the output is dropped */
        paint_row(J, yc, row_label, open);
    }
done:
    bag_free(&bag);
    return NULL;
}

#define SEMWHOLE_ARGS                                                                                                \
    const float *masks, int64_t q, int64_t h, int64_t w, const double *class_probs, int64_t k, const int64_t *live,  \
        int64_t n_live, const double *p_live, const double *reach, const double *dead, const double *dead_probs,    \
        const float *envelope, const int64_t *major, int64_t n_major, double beyond, int32_t sigmoid_first,          \
        double prune, float near, int64_t sy, int64_t ry,                                                            \
        const uint8_t *y_valid, const double *y_weights, const int64_t *y_start, int64_t sx, int64_t rx,             \
        const uint8_t *x_valid, const double *x_weights, const int64_t *x_start, int64_t cells_y, int64_t cells_x

static semwhole_job semwhole_base(SEMWHOLE_ARGS) {
    semwhole_job J;
    memset(&J, 0, sizeof J);
    semantic_frame *B = &J.base;
    B->masks = masks;
    B->q = q;
    B->h = h;
    B->w = w;
    B->class_probs = class_probs;
    B->k = k;
    B->live = live;
    B->n_live = n_live;
    B->sigmoid_first = sigmoid_first;
    B->prune = prune;
    B->y = make_axis(sy, ry, y_valid, y_weights, y_start);
    B->x = make_axis(sx, rx, x_valid, x_weights, x_start);
    J.p_live = p_live;
    J.reach = reach;
    J.dead = dead;
    J.dead_probs = dead_probs;
    J.envelope = envelope;
    J.major = major;
    J.n_major = major ? n_major : 0;
    J.beyond = beyond;
    J.near = near;
    J.cells_x = cells_x;
    J.cells_y = cells_y;
    return J;
}

#define SEMWHOLE_BASE                                                                                                \
    semwhole_base(masks, q, h, w, class_probs, k, live, n_live, p_live, reach, dead, dead_probs, envelope, major,   \
                  n_major, beyond, sigmoid_first, prune, near, sy, ry, y_valid, y_weights, y_start, sx, rx, x_valid, x_weights,       \
                  x_start, cells_y, cells_x)

/* Every pixel's label into out [H * W] (out_bytes 1: uint8, 4: int32). Returns the number of pixels evaluated with
 * every query (near-ties), -2 when more than `budget` pixels lie in open cells (out is then incomplete), or -1 when
 * memory ran out. */
int64_t bfr_semantic_labels(SEMWHOLE_ARGS, const int64_t *y_len, const int64_t *x_len, const int64_t *y_pixel,
                            const int64_t *x_pixel, int64_t width, int64_t budget, void *out, int32_t out_bytes,
                            int32_t threads) {
    const int nt = clamp_threads(threads, cells_y);
    int64_t next = 0, open_pixels = 0; /* the claim counter of FOR_CLAIMED; pixels of open cells so far */
    int stop = 0;
    semwhole_job jobs[MAX_THREADS];
    int64_t *top_class = malloc(sizeof(int64_t) * (size_t)(n_live + 1));
    double *top_prob = malloc(sizeof(double) * (size_t)(2 * n_live + 1)), *other_prob = top_prob + n_live;
    if (!top_class || !top_prob) {
        free(top_class);
        free(top_prob);
        return -1;
    }
    for (int64_t l = 0; l < n_live; l++) { /* dominant_class's tables */
        const double *row = p_live + l * k;
        int64_t c = 0;
        for (int64_t i = 1; i < k; i++) c = row[i] > row[c] ? i : c;
        double other = 0.0;
        for (int64_t i = 0; i < k; i++) other = i != c && row[i] > other ? row[i] : other;
        top_class[l] = c;
        top_prob[l] = row[c];
        other_prob[l] = other;
    }
    double reach_max = 0.0, dead_max = 0.0, dead_probs_max = 0.0;
    for (int64_t i = 0; i < k; i++) {
        reach_max = reach[i] > reach_max ? reach[i] : reach_max;
        dead_max = dead[i] > dead_max ? dead[i] : dead_max;
        dead_probs_max = dead_probs[i] > dead_probs_max ? dead_probs[i] : dead_probs_max;
    }
    for (int t = 0; t < nt; t++) { /* by cell rows */
        jobs[t] = SEMWHOLE_BASE;
        jobs[t].top_class = top_class;
        jobs[t].top_prob = top_prob;
        jobs[t].other_prob = other_prob;
        jobs[t].reach_max = reach_max;
        jobs[t].dead_max = dead_max;
        jobs[t].dead_probs_max = dead_probs_max;
        CLAIM_FROM(jobs[t], next, cells_y, row_run(cells_y, nt));
        jobs[t].y_len = y_len;
        jobs[t].x_len = x_len;
        jobs[t].y_pixel = y_pixel;
        jobs[t].x_pixel = x_pixel;
        jobs[t].width = width;
        jobs[t].budget = budget;
        jobs[t].open_pixels = &open_pixels;
        jobs[t].stop = &stop;
        jobs[t].out = out;
        jobs[t].out_bytes = out_bytes;
    }
    run_jobs(jobs, sizeof jobs[0], nt, semlabels_run);
    free(top_class);
    free(top_prob);
    if (ANY_FAILED(jobs, nt)) return -1;
    if (stop) return -2;
    int64_t redone = 0;
    for (int t = 0; t < nt; t++) redone += jobs[t].redone;
    return redone;
}
