"""Fits the rational tanh of `runtime/src/cpu/fast/exp.rs`: tanh(x) ~ x*P(x^2)/Q(x^2) on
[0, 7.9] (beyond, f32 tanh is 1 within 3e-7), P of degree 5 and Q of degree 3 with Q(0) = 1,
near-minimax by iteratively reweighted linear least squares (Sanathanan-Koerner for the
denominator, Lawson-style weights for the maximum). Prints the coefficients as f32 and the
largest error of the f32 evaluation (the Rust code's order of operations, Horner steps as
fused multiply-adds) against double-precision tanh.

    python3 runtime/tools/fit_tanh.py      # numpy only
"""
import numpy as np

F = np.float32
CLAMP, NP, NQ = 7.9, 6, 4


def fit(iters=200):
    x = np.linspace(1e-6, CLAMP, 40001)
    v = (x / CLAMP) ** 2  # scaled so the least-squares system is well conditioned
    t = np.tanh(x)
    q_prev, lw, best = np.ones_like(x), np.ones_like(x) / len(x), None
    for _ in range(iters):
        a = np.hstack([x[:, None] * v[:, None] ** np.arange(NP),
                       -(t[:, None] * v[:, None] ** np.arange(1, NQ))])
        w = np.sqrt(lw) / q_prev
        sol, *_ = np.linalg.lstsq(a * w[:, None], t * w, rcond=None)
        p, q = sol[:NP], np.concatenate([[1.0], sol[NP:]])
        q_prev = np.polyval(q[::-1], v)
        err = x * np.polyval(p[::-1], v) / q_prev - t
        if best is None or np.abs(err).max() < best[2]:
            best = (p, q, np.abs(err).max())
        lw = lw * np.abs(err) ** 0.5 + 1e-300
        lw /= lw.sum()
    p, q, _ = best
    # Back to powers of u = x^2.
    return ([F(c / CLAMP ** (2 * k)) for k, c in enumerate(p)],
            [F(c / CLAMP ** (2 * k)) for k, c in enumerate(q)])


def fma(a, b, c):
    # The product of two f32 is exact in f64; one rounding there, one to f32.
    return (a.astype(np.float64) * b + c).astype(F)


def tanh32(x, p, q):
    x = np.clip(x.astype(F), -F(CLAMP), F(CLAMP))
    u = x * x
    num, den = np.full_like(x, p[-1]), np.full_like(x, q[-1])
    for c in p[-2::-1]:
        num = fma(num, u, c)
    for c in q[-2::-1]:
        den = fma(den, u, c)
    return x * num / den


p, q = fit()
print("P:", ", ".join(str(c) for c in p))  # the shortest that round-trips
print("Q:", ", ".join(str(c) for c in q))
xs = np.concatenate([np.linspace(-12, 12, 800001), np.geomspace(1e-30, 1e-2, 2001)]).astype(F)
err = np.abs(tanh32(xs, p, q).astype(np.float64) - np.tanh(xs.astype(np.float64)))
print("largest error of the f32 evaluation: %.3g at x = %g" % (err.max(), xs[err.argmax()]))
