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

// Block-wide reductions over blockDim.x (a power of two) values in shared memory.
template <typename T>
__device__ T gpunn_block_sum(T v, T* red) {
    red[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
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

// Softmax + categorical cross-entropy from logits, one block per row.
// Targets are integer labels (LABELS) or dense rows. Writes the probabilities, the
// gradient (p - t) * inv_n, and each row's loss * inv_n into row_loss[r]; the caller sums
// those (a deterministic reduction, where an atomicAdd would depend on block order).
template <typename T, bool LABELS>
__device__ void softmax_xent(const T* z, const long long* labels, const T* target, T* prob,
                             T* grad, T* row_loss, long long rows, long long cols, T inv_n) {
    GPUNN_SHARED(T, red);
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* zr = z + r * cols;
        T m = zr[0];
        for (long long c = threadIdx.x; c < cols; c += blockDim.x) m = fmax(m, zr[c]);
        m = gpunn_block_max(m, red);
        T s = T(0);
        for (long long c = threadIdx.x; c < cols; c += blockDim.x) s += exp(zr[c] - m);
        s = gpunn_block_sum(s, red);
        T log_s = log(s);
        T loss_r = T(0);
        long long label = LABELS ? labels[r] : -1;
        for (long long c = threadIdx.x; c < cols; c += blockDim.x) {
            T shifted = zr[c] - m;
            T pc = exp(shifted) / s;
            T t = LABELS ? (c == label ? T(1) : T(0)) : target[r * cols + c];
            prob[r * cols + c] = pc;
            grad[r * cols + c] = (pc - t) * inv_n;
            loss_r -= t * (shifted - log_s);
        }
        loss_r = gpunn_block_sum(loss_r, red);
        if (threadIdx.x == 0) row_loss[r] = loss_r * inv_n;
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

#define GPUNN_EXPORT(T, S)                                                                   \
    extern "C" __global__ void bias_act_forward_##S(T* z, const T* b, T* y, long long n,     \
                                                    long long cols, int act, T p) {          \
        GPUNN_KERNEL_BODY(bias_act_forward<T>(z, b, y, n, cols, act, p));                    \
    }                                                                                        \
    extern "C" __global__ void act_backward_##S(const T* z, const T* y, const T* g, T* out,  \
                                                long long n, int act, T p) {                 \
        GPUNN_KERNEL_BODY(act_backward<T>(z, y, g, out, n, act, p));                         \
    }                                                                                        \
    extern "C" __global__ void softmax_xent_labels_##S(const T* z, const long long* labels, \
            T* prob, T* grad, T* loss, long long rows, long long cols, T inv_n) {            \
        GPUNN_KERNEL_BODY(softmax_xent<T, true>(z, labels, nullptr, prob, grad, loss, rows,  \
                                                cols, inv_n));                               \
    }                                                                                        \
    extern "C" __global__ void softmax_xent_dense_##S(const T* z, const T* target, T* prob,  \
            T* grad, T* loss, long long rows, long long cols, T inv_n) {                     \
        GPUNN_KERNEL_BODY(softmax_xent<T, false>(z, nullptr, target, prob, grad, loss, rows, \
                                                 cols, inv_n));                              \
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
