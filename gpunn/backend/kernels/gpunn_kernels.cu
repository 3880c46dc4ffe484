// gpunn's CUDA kernels, compiled at run time by CuPy (NVRTC) once per device and checked
// with nvcc by tests/test_cuda_sources.py. Each kernel is written once as a template and
// exported for float and double; all loops are grid-stride, so any launch size is valid.
//
// Activation codes must match ACTIVATION_CODES in gpunn/backend/cupy_kernels.py.
#define GPUNN_IDENTITY 0
#define GPUNN_LINEAR 1
#define GPUNN_SIGMOID 2
#define GPUNN_TANH 3
#define GPUNN_BINARY_STEP 4
#define GPUNN_RELU 5
#define GPUNN_LEAKY_RELU 6
#define GPUNN_ELU 7
#define GPUNN_GELU 8
#define GPUNN_SOFTPLUS 9

// Hooks for tests/cuda_emu/emu.h, which runs these kernels on a CPU: dynamic shared
// memory, and the body of an exported kernel.
#ifndef GPUNN_SHARED
#define GPUNN_SHARED(T, name)                                                           \
    extern __shared__ unsigned char gpunn_smem[];                                       \
    T* name = reinterpret_cast<T*>(gpunn_smem)
#endif
#ifndef GPUNN_KERNEL_BODY
#define GPUNN_KERNEL_BODY(...) __VA_ARGS__
#endif

#define GPUNN_GRID_STRIDE(i, n)                                                         \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n);     \
         i += (long long)blockDim.x * gridDim.x)

template <typename T>
__device__ __forceinline__ T gpunn_sigmoid(T z) {
    // exp of a non-positive number never overflows.
    T e = exp(-fabs(z));
    return z >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
}

template <typename T>
__device__ __forceinline__ T gpunn_gelu_inner(T z) {
    return T(0.7978845608028654) * (z + T(0.044715) * z * z * z);  // sqrt(2/pi)
}

// y = f(z); `p` is the activation's parameter (a for linear, alpha for leaky ReLU / ELU).
template <typename T>
__device__ __forceinline__ T gpunn_act(int act, T z, T p) {
    switch (act) {
        case GPUNN_LINEAR: return p * z;
        case GPUNN_SIGMOID: return gpunn_sigmoid(z);
        case GPUNN_TANH: return tanh(z);
        case GPUNN_BINARY_STEP: return z >= T(0) ? T(1) : T(0);
        case GPUNN_RELU: return z > T(0) ? z : T(0);
        case GPUNN_LEAKY_RELU: return z > T(0) ? z : p * z;
        case GPUNN_ELU: return z > T(0) ? z : p * expm1(z);
        case GPUNN_GELU: return T(0.5) * z * (T(1) + tanh(gpunn_gelu_inner(z)));
        case GPUNN_SOFTPLUS: return log1p(exp(-fabs(z))) + (z > T(0) ? z : T(0));
        default: return z;
    }
}

// dy/dz from z and y = f(z): from y where the maths allows (saves a transcendental).
template <typename T>
__device__ __forceinline__ T gpunn_act_grad(int act, T z, T y, T p) {
    switch (act) {
        case GPUNN_LINEAR: return p;
        case GPUNN_SIGMOID: return y * (T(1) - y);
        case GPUNN_TANH: return T(1) - y * y;
        case GPUNN_BINARY_STEP: return T(0);
        case GPUNN_RELU: return z > T(0) ? T(1) : T(0);
        case GPUNN_LEAKY_RELU: return z > T(0) ? T(1) : p;
        case GPUNN_ELU: return z > T(0) ? T(1) : y + p;
        case GPUNN_GELU: {
            T t = tanh(gpunn_gelu_inner(z));
            T dinner = T(0.7978845608028654) * (T(1) + T(3) * T(0.044715) * z * z);
            return T(0.5) * (T(1) + t) + T(0.5) * z * (T(1) - t * t) * dinner;
        }
        case GPUNN_SOFTPLUS: return gpunn_sigmoid(z);
        default: return T(1);
    }
}

// z (rows, cols) holds x @ W; adds the bias in place and writes y = f(z + b).
// y may alias z (identity output).
template <typename T>
__device__ void bias_act_forward(T* z, const T* b, T* y, long long n, long long cols, int act,
                                 T p) {
    GPUNN_GRID_STRIDE(i, n) {
        T v = z[i] + b[i % cols];
        z[i] = v;
        y[i] = gpunn_act(act, v, p);
    }
}

// out = g * f'(z); out may alias g.
template <typename T>
__device__ void act_backward(const T* z, const T* y, const T* g, T* out, long long n, int act,
                             T p) {
    GPUNN_GRID_STRIDE(i, n) { out[i] = g[i] * gpunn_act_grad(act, z[i], y[i], p); }
}

// Cross-block sums without atomics on the values: each block writes its partial sums,
// and the last block to finish (a ticket on `counter`) adds the partials in block order,
// so the result is the same bits whatever order the blocks ran in. Returns true in the
// block that must add them; the counter is left at zero for the next launch.
__device__ __forceinline__ bool gpunn_last_block(unsigned* counter, unsigned* flag) {
    __threadfence();  // this block's partials are visible before its ticket is
    __syncthreads();
    if (threadIdx.x == 0 && threadIdx.y == 0) {
        unsigned blocks = gridDim.x * gridDim.y;
        *flag = atomicAdd(counter, 1u) == blocks - 1 ? 1u : 0u;
        if (*flag) *counter = 0u;
    }
    __syncthreads();
    return *flag != 0u;
}

// The (32, 8)-thread column kernels: threadIdx.x walks a 32-column tile (coalesced rows),
// threadIdx.y strides the rows of row chunk blockIdx.y, [r0, r1).
// Loops of those kernels: every thread of a tile row runs the same column-tile iterations
// (c may pass cols in the last tile: barriers inside stay uniform), then its rows.
#define GPUNN_COLUMN_TILES(c, cols)                                                       \
    for (long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x;                  \
         c - threadIdx.x < (cols); c += (long long)gridDim.x * blockDim.x)
#define GPUNN_CHUNK_ROWS(r, r0, r1) \
    for (long long r = (r0) + threadIdx.y; r < (r1); r += blockDim.y)
__device__ __forceinline__ void gpunn_row_chunk(long long rows, long long* r0, long long* r1) {
    long long chunk = (rows + gridDim.y - 1) / gridDim.y;
    *r0 = blockIdx.y * chunk;
    *r1 = *r0 + chunk < rows ? *r0 + chunk : rows;
}

// Adds each thread's column sum `s` over the block's rows into partial[chunk][c].
template <typename T>
__device__ void gpunn_column_partial(T s, T* red, T* partial, long long c, long long cols) {
    red[threadIdx.y * blockDim.x + threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        T t = T(0);
        for (unsigned k = 0; k < blockDim.y; ++k) t += red[k * blockDim.x + threadIdx.x];
        partial[blockIdx.y * cols + c] = t;
    }
    __syncthreads();
}

// In the last block: db[c] = the chunks' partial sums of column c, in chunk order.
template <typename T>
__device__ void gpunn_column_total(const T* partial, T* db, long long cols) {
    const volatile T* part = partial;
    for (long long c = threadIdx.y * blockDim.x + threadIdx.x; c < cols;
         c += blockDim.x * blockDim.y) {
        T t = T(0);
        for (unsigned k = 0; k < gridDim.y; ++k) t += part[k * cols + c];
        db[c] = t;
    }
}

// Activation derivative and bias gradient in one pass over (rows, cols):
// out = g * f'(z) (skipped when out aliases g for identity) and db[c] = sum_r out[r, c].
// Block (32, 8): threadIdx.x walks a 32-column tile (coalesced), threadIdx.y strides the
// rows of row chunk blockIdx.y; partial holds one row of column sums per chunk.
template <typename T>
__device__ void act_backward_bias(const T* z, const T* y, const T* g, T* out, T* db,
                                  T* partial, unsigned* counter, long long rows,
                                  long long cols, int act, T p) {
    GPUNN_SHARED(T, red);
    unsigned* flag = reinterpret_cast<unsigned*>(red + blockDim.x * blockDim.y);
    long long r0, r1;
    gpunn_row_chunk(rows, &r0, &r1);
    bool write = !(act == GPUNN_IDENTITY && out == g);
    GPUNN_COLUMN_TILES(c, cols) {
        T s = T(0);
        if (c < cols) {
            GPUNN_CHUNK_ROWS(r, r0, r1) {
                long long i = r * cols + c;
                T v = act == GPUNN_IDENTITY ? g[i] : g[i] * gpunn_act_grad(act, z[i], y[i], p);
                if (write) out[i] = v;
                s += v;
            }
        }
        gpunn_column_partial(s, red, partial, c, cols);
    }
    if (gpunn_last_block(counter, flag)) gpunn_column_total(partial, db, cols);
}

// Block-wide reductions over the block's threads (a power of two) in shared memory.
template <typename T>
__device__ T gpunn_block_sum(T v, T* red) {
    unsigned tid = threadIdx.y * blockDim.x + threadIdx.x;  // 1-D and 2-D blocks
    red[tid] = v;
    __syncthreads();
    for (unsigned s = blockDim.x * blockDim.y / 2; s > 0; s >>= 1) {
        if (tid < s) red[tid] += red[tid + s];
        __syncthreads();
    }
    T out = red[0];
    __syncthreads();
    return out;
}

template <typename T>
__device__ T gpunn_block_max(T v, T* red) {
    red[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] = fmax(red[threadIdx.x], red[threadIdx.x + s]);
        __syncthreads();
    }
    T out = red[0];
    __syncthreads();
    return out;
}

// The first index of the largest value (as argmax does); `at` is -1 for no value.
template <typename T>
__device__ long long gpunn_block_argmax(T v, long long at, T* red, long long* where) {
    red[threadIdx.x] = v;
    where[threadIdx.x] = at;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            T w = red[threadIdx.x + s];
            long long j = where[threadIdx.x + s];
            long long i = where[threadIdx.x];
            if (j >= 0 && (i < 0 || w > red[threadIdx.x] || (w == red[threadIdx.x] && j < i))) {
                red[threadIdx.x] = w;
                where[threadIdx.x] = j;
            }
        }
        __syncthreads();
    }
    long long out = where[0];
    __syncthreads();
    return out;
}

// Elementwise losses over (rows, cols), mean over all elements, with a training step's
// extras in the same launch (see softmax_xent): b (optional) added to z in place; then
// SIGMOID: sigmoid + binary cross-entropy from logits, prob = p, grad = (p - t) * inv_n,
//   loss max(z, 0) - z t + log1p(exp(-|z|)); metric (optional, long long) counts the
//   elements with (p >= 1/2) == (t >= 1/2);
// SQUARED: squared error, prob = z (not written when prob aliases z), grad = 2 (z - t) inv_n;
//   metric (optional, T) the sum over rows of the mean absolute error over outputs.
// db (optional) the column sums of grad. Blocks as act_backward_bias; partial holds
// gridDim.y rows of column sums, then (loss, count) per block.
enum { GPUNN_LOSS_SIGMOID = 0, GPUNN_LOSS_SQUARED = 1 };
template <typename T, int KIND>
__device__ void elementwise_loss(T* z, const T* b, const T* target, T* prob, T* grad,
                                 T* loss_out, T* db, void* metric, T* partial,
                                 unsigned* counter, long long rows, long long cols,
                                 T inv_n) {
    GPUNN_SHARED(T, red);
    unsigned* flag = reinterpret_cast<unsigned*>(red + blockDim.x * blockDim.y);
    unsigned tid = threadIdx.y * blockDim.x + threadIdx.x;
    long long r0, r1;
    gpunn_row_chunk(rows, &r0, &r1);
    T loss = T(0), hits = T(0);
    GPUNN_COLUMN_TILES(c, cols) {
        T s = T(0);
        if (c < cols) {
            GPUNN_CHUNK_ROWS(r, r0, r1) {
                long long i = r * cols + c;
                T v = z[i] + (b != nullptr ? b[c] : T(0));
                if (b != nullptr) z[i] = v;
                T t = target[i];
                T g;
                if (KIND == GPUNN_LOSS_SIGMOID) {
                    T e = exp(-fabs(v));
                    T p = v >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
                    g = (p - t) * inv_n;
                    prob[i] = p;
                    loss += ((v > T(0) ? v : T(0)) - v * t + log1p(e)) * inv_n;
                    hits += (p >= T(0.5)) == (t >= T(0.5)) ? T(1) : T(0);
                } else {
                    T d = v - t;
                    g = T(2) * d * inv_n;
                    if (prob != z) prob[i] = v;
                    loss += d * d * inv_n;
                    hits += fabs(d);
                }
                grad[i] = g;
                s += g;
            }
        }
        if (db != nullptr) gpunn_column_partial(s, red, partial, c, cols);
    }
    T* mine = partial + gridDim.y * cols + 2 * (blockIdx.y * gridDim.x + blockIdx.x);
    loss = gpunn_block_sum(loss, red);
    hits = gpunn_block_sum(hits, red);
    if (tid == 0) {
        mine[0] = loss;
        mine[1] = hits;
    }
    if (gpunn_last_block(counter, flag)) {
        if (db != nullptr) gpunn_column_total(partial, db, cols);
        if (tid < 2) {  // thread 0 the loss, thread 1 the count
            const volatile T* pairs = partial + gridDim.y * cols + tid;
            T t = T(0);
            for (unsigned k = 0; k < gridDim.x * gridDim.y; ++k) t += pairs[2 * k];
            if (tid == 0) loss_out[0] = t;
            else if (metric != nullptr && KIND == GPUNN_LOSS_SIGMOID)
                static_cast<long long*>(metric)[0] = (long long)t;
            else if (metric != nullptr) static_cast<T*>(metric)[0] = t / T(cols);
        }
    }
}

// Softmax + categorical cross-entropy from logits, one block per row (grid-stride), and
// what a training step needs of it in the same launch:
// - b (optional): the last layer's bias, added to z in place (z = x @ W on entry);
// - prob, grad = (p - t) * inv_n, loss_out[0] = sum over rows of the loss * inv_n;
// - db (optional): the bias gradient, the column sums of grad;
// - correct (optional, labels only): rows whose first largest probability is the label.
// Targets are integer labels (LABELS) or dense rows. partial holds gridDim.x rows of
// (cols column sums, loss, count): cross-block sums are added by the last block, in block
// order (see gpunn_last_block), so the values do not depend on the block schedule.
template <typename T, bool LABELS>
__device__ void softmax_xent(T* z, const T* b, const long long* labels, const T* target,
                             T* prob, T* grad, T* loss_out, T* db, long long* correct,
                             T* partial, unsigned* counter, long long rows, long long cols,
                             T inv_n) {
    GPUNN_SHARED(T, red);
    long long* where = reinterpret_cast<long long*>(red + blockDim.x);
    unsigned* flag = reinterpret_cast<unsigned*>(where + blockDim.x);
    T* mine = partial + blockIdx.x * (cols + 2);
    if (db != nullptr) {
        for (long long c = threadIdx.x; c < cols; c += blockDim.x) mine[c] = T(0);
    }
    T block_loss = T(0), block_correct = T(0);
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        T* zr = z + r * cols;
        T m = zr[0] + (b != nullptr ? b[0] : T(0));
        for (long long c = threadIdx.x; c < cols; c += blockDim.x)
            m = fmax(m, zr[c] + (b != nullptr ? b[c] : T(0)));
        m = gpunn_block_max(m, red);
        T s = T(0);
        for (long long c = threadIdx.x; c < cols; c += blockDim.x)
            s += exp(zr[c] + (b != nullptr ? b[c] : T(0)) - m);
        s = gpunn_block_sum(s, red);
        T log_s = log(s);
        T loss_r = T(0), best = T(0);
        long long label = LABELS ? labels[r] : -1, best_at = -1;
        for (long long c = threadIdx.x; c < cols; c += blockDim.x) {
            T v = zr[c] + (b != nullptr ? b[c] : T(0));
            if (b != nullptr) zr[c] = v;
            T shifted = v - m;
            T pc = exp(shifted) / s;
            T t = LABELS ? (c == label ? T(1) : T(0)) : target[r * cols + c];
            T gc = (pc - t) * inv_n;
            prob[r * cols + c] = pc;
            grad[r * cols + c] = gc;
            if (db != nullptr) mine[c] += gc;
            loss_r -= t * (shifted - log_s);
            if (best_at < 0 || pc > best) {
                best = pc;
                best_at = c;
            }
        }
        loss_r = gpunn_block_sum(loss_r, red);
        if (correct != nullptr) {
            long long guess = gpunn_block_argmax(best, best_at, red, where);
            block_correct += guess == label ? T(1) : T(0);
        }
        block_loss += loss_r * inv_n;
    }
    if (threadIdx.x == 0) {
        mine[cols] = block_loss;
        mine[cols + 1] = block_correct;
    }
    if (gpunn_last_block(counter, flag)) {
        const volatile T* part = partial;
        for (long long c = threadIdx.x; c < cols + 2; c += blockDim.x) {
            if (c < cols && db == nullptr) continue;
            T t = T(0);
            for (unsigned k = 0; k < gridDim.x; ++k) t += part[k * (cols + 2) + c];
            if (c < cols) db[c] = t;
            else if (c == cols) loss_out[0] = t;
            else if (correct != nullptr) correct[0] = (long long)t;
        }
    }
}

// A shuffled batch in one launch: rows idx (k,) of X (N, xcols) and of the targets, int64
// labels (LABELS: one column) or rows of target (N, tcols).
template <typename T, bool LABELS>
__device__ void gather_batch(const T* X, const long long* labels, const T* target,
                             const long long* idx, T* xout, long long* lout, T* tout,
                             long long k, long long xcols, long long tcols) {
    long long nx = k * xcols;
    GPUNN_GRID_STRIDE(i, nx + k * tcols) {
        if (i < nx) {
            long long r = i / xcols;
            xout[i] = X[idx[r] * xcols + (i - r * xcols)];
        } else {
            long long j = i - nx;
            long long r = j / tcols;
            long long src = idx[r] * tcols + (j - r * tcols);
            if (LABELS) lout[j] = labels[src];
            else tout[j] = target[src];
        }
    }
}

// One kernel per optimiser; the variant is chosen by scalar flags.
// Adam/AdamW: step_size = lr * sqrt(c2) / c1 and eps_hat = eps * sqrt(c2) fold the bias
// corrections in, as in gpunn/backend/numpy_kernels.py. Every constant (1 - b1, 1 - b2,
// 1 - lr * wd) is computed by the caller in double and rounded once, as NumPy does: in
// float32, 1.0f - 0.999f is 0.00099998713, not 0.001. The moments are updated in the
// same form as the NumPy path, m += (1 - b1) (g - m), for tight CPU/GPU parity.
template <typename T>
__device__ void adam_update(T* p, const T* g, T* m, T* v, long long n, T one_minus_b1,
                            T one_minus_b2, T eps_hat, T step_size, T wd, T decay,
                            int decoupled) {
    GPUNN_GRID_STRIDE(i, n) {
        T pi = p[i];
        T gi = g[i];
        if (wd != T(0)) {
            if (decoupled) pi *= decay;
            else gi += pi * wd;
        }
        T mi = m[i];
        T vi = v[i];
        mi += one_minus_b1 * (gi - mi);
        vi += one_minus_b2 * (gi * gi - vi);
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - (mi / (sqrt(vi) + eps_hat)) * step_size;
    }
}

// SGD with optional (Nesterov) momentum; vel is unused when momentum == 0.
template <typename T>
__device__ void sgd_update(T* p, const T* g, T* vel, long long n, T lr, T momentum, T wd,
                           int nesterov) {
    GPUNN_GRID_STRIDE(i, n) {
        T pi = p[i];
        T gi = g[i] + wd * pi;
        if (momentum != T(0)) {
            T b = momentum * vel[i] + gi;
            vel[i] = b;
            gi = nesterov ? gi + momentum * b : b;
        }
        p[i] = pi - lr * gi;
    }
}

// RMSprop with optional momentum; vel is unused when momentum == 0.
template <typename T>
__device__ void rmsprop_update(T* p, const T* g, T* sq, T* vel, long long n, T lr, T alpha,
                               T one_minus_alpha, T eps, T momentum, T wd) {
    GPUNN_GRID_STRIDE(i, n) {
        T pi = p[i];
        T gi = g[i] + wd * pi;
        T si = alpha * sq[i] + one_minus_alpha * (gi * gi);
        sq[i] = si;
        T step = gi / (sqrt(si) + eps);
        if (momentum != T(0)) {
            step = momentum * vel[i] + step;
            vel[i] = step;
        }
        p[i] = pi - lr * step;
    }
}

// Adagrad: sum += g^2; p -= lr g / (sqrt(sum) + eps).
template <typename T>
__device__ void adagrad_update(T* p, const T* g, T* sum_sq, long long n, T lr, T eps, T wd) {
    GPUNN_GRID_STRIDE(i, n) {
        T pi = p[i];
        T gi = g[i] + pi * wd;
        T si = sum_sq[i] + gi * gi;
        sum_sq[i] = si;
        p[i] = pi - lr * (gi / (sqrt(si) + eps));
    }
}

// ---------------------------------------------------------------- patches and pooling
// Images are planes of (n * c) rows of h x w values; a 1-D signal is a plane of height 1
// (kh = sh = 1, ph = 0). Output positions per axis: oh = (h + 2 ph - kh) / sh + 1.
//
// Patches of x (n, c, h, w) as the columns of a convolution: cols (n, c * kh * kw,
// oh * ow), row-major over (channel, kernel row, kernel column) and over the output
// positions: the layout of the generic Backend.im2col. Zeros where a patch overlaps the
// padding.
template <typename T>
__device__ void im2col(const T* x, T* cols, long long n, long long c, long long h,
                       long long w, int kh, int kw, int sh, int sw, int ph, int pw,
                       long long oh, long long ow) {
    GPUNN_GRID_STRIDE(i, n * c * kh * kw * oh * ow) {
        long long q = i;
        long long ox = q % ow;
        q /= ow;
        long long oy = q % oh;
        q /= oh;
        long long kx = q % kw;
        q /= kw;
        long long ky = q % kh;
        q /= kh;  // the plane: sample * c + channel
        long long y = oy * sh - ph + ky, xx = ox * sw - pw + kx;
        cols[i] = (y >= 0 && y < h && xx >= 0 && xx < w) ? x[(q * h + y) * w + xx] : T(0);
    }
}

// The adjoint of im2col as a gather: each input position adds up the column entries that
// read it, in kernel-offset order (the generic path's order). One thread per output
// value, no atomics: the same bits whatever the schedule.
template <typename T>
__device__ void col2im(const T* cols, T* gx, long long n, long long c, long long h,
                       long long w, int kh, int kw, int sh, int sw, int ph, int pw,
                       long long oh, long long ow) {
    GPUNN_GRID_STRIDE(i, n * c * h * w) {
        long long q = i;
        long long xx = q % w;
        q /= w;
        long long y = q % h;
        q /= h;
        const T* plane = cols + q * kh * kw * oh * ow;
        T s = T(0);
        for (int ky = 0; ky < kh; ++ky) {
            long long dy = y + ph - ky;
            if (dy < 0) break;  // the offsets further on start below the image too
            if (dy % sh != 0 || dy / sh >= oh) continue;
            for (int kx = 0; kx < kw; ++kx) {
                long long dx = xx + pw - kx;
                if (dx < 0) break;
                if (dx % sw != 0 || dx / sw >= ow) continue;
                s += plane[((long long)(ky * kw + kx) * oh + dy / sh) * ow + dx / sw];
            }
        }
        gx[i] = s;
    }
}

// Pooling over the windows of each plane of x (planes, h, w), no padding, in one pass:
// MAX writes the maximum and its offset in the window (row-major; the first maximum, or
// the first NaN, as argmax picks) to arg; AVG the mean (arg unused).
enum { GPUNN_POOL_MAX = 0, GPUNN_POOL_AVG = 1 };
template <typename T>
__device__ void pool_forward(const T* x, T* y, long long* arg, long long planes, long long h,
                             long long w, int kh, int kw, int sh, int sw, long long oh,
                             long long ow, int kind) {
    GPUNN_GRID_STRIDE(i, planes * oh * ow) {
        long long q = i;
        long long ox = q % ow;
        q /= ow;
        long long oy = q % oh;
        q /= oh;
        const T* p = x + (q * h + oy * sh) * w + ox * sw;
        if (kind == GPUNN_POOL_MAX) {
            T best = p[0];
            long long at = 0;
            for (int ky = 0; ky < kh; ++ky)
                for (int kx = 0; kx < kw; ++kx) {
                    T v = p[ky * w + kx];
                    if (v > best || (v != v && best == best)) {
                        best = v;
                        at = ky * kw + kx;
                    }
                }
            y[i] = best;
            arg[i] = at;
        } else {
            T s = T(0);
            for (int ky = 0; ky < kh; ++ky)
                for (int kx = 0; kx < kw; ++kx) s += p[ky * w + kx];
            y[i] = s / T(kh * kw);
        }
    }
}

// The input gradient of pool_forward as a gather: each input value adds the gradients of
// the windows that cover it, in window order (MAX: only those whose arg is this value;
// AVG: each divided by the window's size). No atomics: deterministic.
template <typename T>
__device__ void pool_backward(const T* g, const long long* arg, T* gx, long long planes,
                              long long h, long long w, int kh, int kw, int sh, int sw,
                              long long oh, long long ow, int kind) {
    GPUNN_GRID_STRIDE(i, planes * h * w) {
        long long q = i;
        long long xx = q % w;
        q /= w;
        long long y = q % h;
        q /= h;
        T s = T(0);
        for (int ky = 0; ky < kh; ++ky) {
            long long dy = y - ky;
            if (dy < 0) break;
            if (dy % sh != 0 || dy / sh >= oh) continue;
            for (int kx = 0; kx < kw; ++kx) {
                long long dx = xx - kx;
                if (dx < 0) break;
                if (dx % sw != 0 || dx / sw >= ow) continue;
                long long l = (q * oh + dy / sh) * ow + dx / sw;
                if (kind == GPUNN_POOL_AVG) s += g[l] / T(kh * kw);
                else if (arg[l] == ky * kw + kx) s += g[l];
            }
        }
        gx[i] = s;
    }
}

// ---------------------------------------------------------------- batch normalisation
// x (n, c, s): s values per sample and channel (the spatial size; 1 for (n, c)), so the
// value j of channel ch (j < n * s) is x[((j / s) * c + ch) * s + j % s]. A reduction
// kernel has a grid of (chunks, c) blocks: block (i, ch) reduces chunk i of channel ch's
// values and writes its partials; the last block of the grid (see gpunn_last_block) merges
// every channel's partials in chunk order, so the result does not depend on the schedule.
// An elementwise kernel then applies the per-channel values to every element.
__device__ __forceinline__ long long gpunn_bn_index(long long j, long long ch, long long c,
                                                    long long s) {
    long long r = j / s;
    return (r * c + ch) * s + (j - r * s);
}

__device__ __forceinline__ void gpunn_bn_chunk(long long count, long long* j0, long long* j1) {
    long long chunk = (count + gridDim.x - 1) / gridDim.x;
    *j0 = blockIdx.x * chunk;
    *j1 = *j0 + chunk < count ? *j0 + chunk : count;
}

// Training statistics: each block the count, mean and sum of squared deviations of its
// chunk (two passes over it, as the generic path's centred variance); the last block
// merges the chunks (Chan et al.'s pairwise update, in double) into mean_out, the biased
// var_out and inv_out = 1 / sqrt(var + eps). partial: 3 values per block.
template <typename T>
__device__ void batchnorm_stats(const T* x, T* mean_out, T* var_out, T* inv_out, T* partial,
                                unsigned* counter, long long n, long long c, long long s,
                                T eps) {
    GPUNN_SHARED(T, red);
    unsigned* flag = reinterpret_cast<unsigned*>(red + blockDim.x);
    long long ch = blockIdx.y, j0, j1;
    gpunn_bn_chunk(n * s, &j0, &j1);
    T t = T(0);
    for (long long j = j0 + threadIdx.x; j < j1; j += blockDim.x)
        t += x[gpunn_bn_index(j, ch, c, s)];
    long long m = j1 > j0 ? j1 - j0 : 0;
    T mean = gpunn_block_sum(t, red) / T(m > 0 ? m : 1);  // an empty chunk counts 0
    t = T(0);
    for (long long j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
        T d = x[gpunn_bn_index(j, ch, c, s)] - mean;
        t += d * d;
    }
    t = gpunn_block_sum(t, red);
    T* mine = partial + 3 * (ch * gridDim.x + blockIdx.x);
    if (threadIdx.x == 0) {
        mine[0] = T(m);
        mine[1] = mean;
        mine[2] = t;
    }
    if (gpunn_last_block(counter, flag)) {
        const volatile T* part = partial;
        for (long long k = threadIdx.x; k < c; k += blockDim.x) {
            double total = 0.0, mu = 0.0, m2 = 0.0;
            for (unsigned i = 0; i < gridDim.x; ++i) {
                const volatile T* q = part + 3 * (k * gridDim.x + i);
                double ni = q[0];
                if (ni == 0.0) continue;
                double delta = double(q[1]) - mu, both = total + ni;
                mu += delta * ni / both;
                m2 += double(q[2]) + delta * delta * total * ni / both;
                total = both;
            }
            T var = T(m2 / total);
            mean_out[k] = T(mu);
            var_out[k] = var;
            inv_out[k] = T(1) / sqrt(var + eps);
        }
    }
}

// Normalisation with per-channel statistics (the batch's, or the running ones):
// xhat = (x - mean) * inv, y = xhat * gamma + beta, inv = 1 / sqrt(var + eps) (also
// written to inv_out: the same bits as batchnorm_stats computes).
template <typename T>
__device__ void batchnorm_apply(const T* x, const T* gamma, const T* beta, const T* mean,
                                const T* var, T* y, T* xhat, T* inv_out, long long n,
                                long long c, long long s, T eps) {
    GPUNN_GRID_STRIDE(i, n * c * s) {
        long long ch = (i / s) % c;
        T inv = T(1) / sqrt(var[ch] + eps);
        T v = (x[i] - mean[ch]) * inv;
        xhat[i] = v;
        y[i] = v * gamma[ch] + beta[ch];
        if (i < c) inv_out[i] = T(1) / sqrt(var[i] + eps);
    }
}

// The backward's per-channel sums: dbeta = sum g, dgamma = sum g * xhat, chunk by chunk,
// added in chunk order by the last block. partial: 2 values per block.
template <typename T>
__device__ void batchnorm_grad_sums(const T* g, const T* xhat, T* dgamma, T* dbeta,
                                    T* partial, unsigned* counter, long long n, long long c,
                                    long long s) {
    GPUNN_SHARED(T, red);
    unsigned* flag = reinterpret_cast<unsigned*>(red + blockDim.x);
    long long ch = blockIdx.y, j0, j1;
    gpunn_bn_chunk(n * s, &j0, &j1);
    T a = T(0), b = T(0);
    for (long long j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
        long long k = gpunn_bn_index(j, ch, c, s);
        a += g[k];
        b += g[k] * xhat[k];
    }
    a = gpunn_block_sum(a, red);
    b = gpunn_block_sum(b, red);
    T* mine = partial + 2 * (ch * gridDim.x + blockIdx.x);
    if (threadIdx.x == 0) {
        mine[0] = a;
        mine[1] = b;
    }
    if (gpunn_last_block(counter, flag)) {
        const volatile T* part = partial;
        for (long long k = threadIdx.x; k < c; k += blockDim.x) {
            T ta = T(0), tb = T(0);
            for (unsigned i = 0; i < gridDim.x; ++i) {
                ta += part[2 * (k * gridDim.x + i)];
                tb += part[2 * (k * gridDim.x + i) + 1];
            }
            dbeta[k] = ta;
            dgamma[k] = tb;
        }
    }
}

// dx = gamma inv (g - dbeta / count - xhat dgamma / count) after a training forward
// (batch_stats), gamma inv g when the statistics were constants (inference).
template <typename T>
__device__ void batchnorm_backward(const T* g, const T* xhat, const T* gamma, const T* inv,
                                   const T* dgamma, const T* dbeta, T* dx, long long n,
                                   long long c, long long s, int batch_stats) {
    T count = T(n * s);
    GPUNN_GRID_STRIDE(i, n * c * s) {
        long long ch = (i / s) % c;
        T scale = gamma[ch] * inv[ch];
        T gi = g[i];
        dx[i] = batch_stats ? scale * (gi - dbeta[ch] / count - xhat[i] * (dgamma[ch] / count))
                            : gi * scale;
    }
}

// ---------------------------------------------------------------- layer normalisation
// x (rows, cols): each row normalised over its cols values (the layer's normalised axes).
// One block per row (grid-stride): mean and biased variance in two passes, as the generic
// path; xhat = (x - mean) * inv, y = xhat * gamma + beta (gamma, beta: (cols,)),
// inv_out[row] = 1 / sqrt(var + eps).
template <typename T>
__device__ void layernorm_forward(const T* x, const T* gamma, const T* beta, T* y, T* xhat,
                                  T* inv_out, long long rows, long long cols, T eps) {
    GPUNN_SHARED(T, red);
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + r * cols;
        T t = T(0);
        for (long long c = threadIdx.x; c < cols; c += blockDim.x) t += xr[c];
        T mean = gpunn_block_sum(t, red) / T(cols);
        t = T(0);
        for (long long c = threadIdx.x; c < cols; c += blockDim.x) {
            T d = xr[c] - mean;
            t += d * d;
        }
        T inv = T(1) / sqrt(gpunn_block_sum(t, red) / T(cols) + eps);
        for (long long c = threadIdx.x; c < cols; c += blockDim.x) {
            T v = (xr[c] - mean) * inv;
            xhat[r * cols + c] = v;
            y[r * cols + c] = v * gamma[c] + beta[c];
        }
        if (threadIdx.x == 0) inv_out[r] = inv;
    }
}

// The input gradient of layernorm_forward, one block per row: with h = g * gamma,
// dx = inv (h - mean(h) - xhat mean(h xhat)) over the row. (gamma's and beta's gradients,
// sums over rows, are the caller's.)
template <typename T>
__device__ void layernorm_backward(const T* g, const T* xhat, const T* gamma, const T* inv,
                                   T* dx, long long rows, long long cols) {
    GPUNN_SHARED(T, red);
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* gr = g + r * cols;
        const T* hr = xhat + r * cols;
        T a = T(0), b = T(0);
        for (long long c = threadIdx.x; c < cols; c += blockDim.x) {
            T h = gr[c] * gamma[c];
            a += h;
            b += h * hr[c];
        }
        a = gpunn_block_sum(a, red) / T(cols);
        b = gpunn_block_sum(b, red) / T(cols);
        T ir = inv[r];
        for (long long c = threadIdx.x; c < cols; c += blockDim.x)
            dx[r * cols + c] = ir * (gr[c] * gamma[c] - a - hr[c] * b);
    }
}

#define GPUNN_EXPORT(T, S)                                                                   \
    extern "C" __global__ void bias_act_forward_##S(T* z, const T* b, T* y, long long n,     \
                                                    long long cols, int act, T p) {          \
        GPUNN_KERNEL_BODY(bias_act_forward<T>(z, b, y, n, cols, act, p));                    \
    }                                                                                        \
    extern "C" __global__ void act_backward_##S(const T* z, const T* y, const T* g, T* out,  \
                                                long long n, int act, T p) {                 \
        GPUNN_KERNEL_BODY(act_backward<T>(z, y, g, out, n, act, p));                         \
    }                                                                                        \
    extern "C" __global__ void act_backward_bias_##S(const T* z, const T* y, const T* g,     \
            T* out, T* db, T* partial, unsigned* counter, long long rows, long long cols,    \
            int act, T p) {                                                                  \
        GPUNN_KERNEL_BODY(act_backward_bias<T>(z, y, g, out, db, partial, counter, rows,     \
                                               cols, act, p));                               \
    }                                                                                        \
    extern "C" __global__ void softmax_xent_labels_##S(T* z, const T* b,                     \
            const long long* labels, T* prob, T* grad, T* loss, T* db, long long* correct,   \
            T* partial, unsigned* counter, long long rows, long long cols, T inv_n) {        \
        GPUNN_KERNEL_BODY(softmax_xent<T, true>(z, b, labels, nullptr, prob, grad, loss, db, \
                                                correct, partial, counter, rows, cols,       \
                                                inv_n));                                     \
    }                                                                                        \
    extern "C" __global__ void softmax_xent_dense_##S(T* z, const T* b, const T* target,     \
            T* prob, T* grad, T* loss, T* db, T* partial, unsigned* counter, long long rows, \
            long long cols, T inv_n) {                                                       \
        GPUNN_KERNEL_BODY(softmax_xent<T, false>(z, b, nullptr, target, prob, grad, loss,    \
                                                 db, nullptr, partial, counter, rows, cols,  \
                                                 inv_n));                                    \
    }                                                                                        \
    extern "C" __global__ void sigmoid_xent_##S(T* z, const T* b, const T* target, T* prob,  \
            T* grad, T* loss, T* db, long long* correct, T* partial, unsigned* counter,      \
            long long rows, long long cols, T inv_n) {                                       \
        GPUNN_KERNEL_BODY(elementwise_loss<T, GPUNN_LOSS_SIGMOID>(z, b, target, prob, grad,  \
                          loss, db, correct, partial, counter, rows, cols, inv_n));          \
    }                                                                                        \
    extern "C" __global__ void squared_error_##S(T* z, const T* b, const T* target, T* out,  \
            T* grad, T* loss, T* db, T* abs_error, T* partial, unsigned* counter,            \
            long long rows, long long cols, T inv_n) {                                       \
        GPUNN_KERNEL_BODY(elementwise_loss<T, GPUNN_LOSS_SQUARED>(z, b, target, out, grad,   \
                          loss, db, abs_error, partial, counter, rows, cols, inv_n));        \
    }                                                                                        \
    extern "C" __global__ void gather_labels_##S(const T* X, const long long* labels,       \
            const long long* idx, T* xout, long long* lout, long long k, long long xcols) {  \
        GPUNN_KERNEL_BODY(gather_batch<T, true>(X, labels, nullptr, idx, xout, lout,         \
                                                nullptr, k, xcols, 1));                      \
    }                                                                                        \
    extern "C" __global__ void gather_rows_##S(const T* X, const T* target,                  \
            const long long* idx, T* xout, T* tout, long long k, long long xcols,            \
            long long tcols) {                                                               \
        GPUNN_KERNEL_BODY(gather_batch<T, false>(X, nullptr, target, idx, xout, nullptr,     \
                                                 tout, k, xcols, tcols));                    \
    }                                                                                        \
    extern "C" __global__ void im2col_##S(const T* x, T* cols, long long n, long long c,     \
            long long h, long long w, int kh, int kw, int sh, int sw, int ph, int pw,        \
            long long oh, long long ow) {                                                    \
        GPUNN_KERNEL_BODY(im2col<T>(x, cols, n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow));   \
    }                                                                                        \
    extern "C" __global__ void col2im_##S(const T* cols, T* gx, long long n, long long c,    \
            long long h, long long w, int kh, int kw, int sh, int sw, int ph, int pw,        \
            long long oh, long long ow) {                                                    \
        GPUNN_KERNEL_BODY(col2im<T>(cols, gx, n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow));  \
    }                                                                                        \
    extern "C" __global__ void pool_forward_##S(const T* x, T* y, long long* arg,            \
            long long planes, long long h, long long w, int kh, int kw, int sh, int sw,      \
            long long oh, long long ow, int kind) {                                          \
        GPUNN_KERNEL_BODY(pool_forward<T>(x, y, arg, planes, h, w, kh, kw, sh, sw, oh, ow,   \
                                          kind));                                            \
    }                                                                                        \
    extern "C" __global__ void pool_backward_##S(const T* g, const long long* arg, T* gx,    \
            long long planes, long long h, long long w, int kh, int kw, int sh, int sw,      \
            long long oh, long long ow, int kind) {                                          \
        GPUNN_KERNEL_BODY(pool_backward<T>(g, arg, gx, planes, h, w, kh, kw, sh, sw, oh, ow, \
                                           kind));                                           \
    }                                                                                        \
    extern "C" __global__ void batchnorm_stats_##S(const T* x, T* mean_out, T* var_out,     \
            T* inv_out, T* partial, unsigned* counter, long long n, long long c, long long s, \
            T eps) {                                                                         \
        GPUNN_KERNEL_BODY(batchnorm_stats<T>(x, mean_out, var_out, inv_out, partial, counter, \
                                             n, c, s, eps));                                 \
    }                                                                                        \
    extern "C" __global__ void batchnorm_apply_##S(const T* x, const T* gamma,               \
            const T* beta, const T* mean, const T* var, T* y, T* xhat, T* inv_out,           \
            long long n, long long c, long long s, T eps) {                                  \
        GPUNN_KERNEL_BODY(batchnorm_apply<T>(x, gamma, beta, mean, var, y, xhat, inv_out, n, \
                                             c, s, eps));                                    \
    }                                                                                        \
    extern "C" __global__ void batchnorm_grad_sums_##S(const T* g, const T* xhat,            \
            T* dgamma, T* dbeta, T* partial, unsigned* counter, long long n, long long c,    \
            long long s) {                                                                   \
        GPUNN_KERNEL_BODY(batchnorm_grad_sums<T>(g, xhat, dgamma, dbeta, partial, counter,   \
                                                 n, c, s));                                  \
    }                                                                                        \
    extern "C" __global__ void batchnorm_backward_##S(const T* g, const T* xhat,             \
            const T* gamma, const T* inv, const T* dgamma, const T* dbeta, T* dx,            \
            long long n, long long c, long long s, int batch_stats) {                        \
        GPUNN_KERNEL_BODY(batchnorm_backward<T>(g, xhat, gamma, inv, dgamma, dbeta, dx, n,   \
                                                c, s, batch_stats));                         \
    }                                                                                        \
    extern "C" __global__ void layernorm_forward_##S(const T* x, const T* gamma,             \
            const T* beta, T* y, T* xhat, T* inv_out, long long rows, long long cols,        \
            T eps) {                                                                         \
        GPUNN_KERNEL_BODY(layernorm_forward<T>(x, gamma, beta, y, xhat, inv_out, rows, cols, \
                                               eps));                                        \
    }                                                                                        \
    extern "C" __global__ void layernorm_backward_##S(const T* g, const T* xhat,             \
            const T* gamma, const T* inv, T* dx, long long rows, long long cols) {           \
        GPUNN_KERNEL_BODY(layernorm_backward<T>(g, xhat, gamma, inv, dx, rows, cols));       \
    }                                                                                        \
    extern "C" __global__ void adam_##S(T* p, const T* g, T* m, T* v, long long n,           \
            T one_minus_b1, T one_minus_b2, T eps_hat, T step_size, T wd, T decay,           \
            int decoupled) {                                                                 \
        GPUNN_KERNEL_BODY(adam_update<T>(p, g, m, v, n, one_minus_b1, one_minus_b2, eps_hat, \
                                         step_size, wd, decay, decoupled));                  \
    }                                                                                        \
    extern "C" __global__ void sgd_##S(T* p, const T* g, T* vel, long long n, T lr,          \
            T momentum, T wd, int nesterov) {                                                \
        GPUNN_KERNEL_BODY(sgd_update<T>(p, g, vel, n, lr, momentum, wd, nesterov));          \
    }                                                                                        \
    extern "C" __global__ void rmsprop_##S(T* p, const T* g, T* sq, T* vel, long long n,     \
            T lr, T alpha, T one_minus_alpha, T eps, T momentum, T wd) {                     \
        GPUNN_KERNEL_BODY(rmsprop_update<T>(p, g, sq, vel, n, lr, alpha, one_minus_alpha,    \
                                            eps, momentum, wd));                             \
    }                                                                                        \
    extern "C" __global__ void adagrad_##S(T* p, const T* g, T* sum_sq, long long n, T lr,   \
            T eps, T wd) {                                                                   \
        GPUNN_KERNEL_BODY(adagrad_update<T>(p, g, sum_sq, n, lr, eps, wd));                  \
    }

GPUNN_EXPORT(float, f32)
GPUNN_EXPORT(double, f64)
