//! Eigenvalues of a small dense real matrix: reduction to upper Hessenberg form by
//! stabilised elementary similarity transforms, then Francis double-shift QR (the classic
//! EISPACK `elmhes` + `hqr` pair). For the d×d OV-circuit matrices (d = head width, tens),
//! where a dependency would be heavier than these hundred lines.
// Index loops mirror the published algorithm line by line, which is what makes it checkable.
#![allow(clippy::needless_range_loop)]

/// One eigenvalue `re + i·im`; complex ones come in conjugate pairs.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Complex {
    pub re: f64,
    pub im: f64,
}

impl Complex {
    /// `|λ|`.
    pub fn abs(self) -> f64 {
        self.re.hypot(self.im)
    }
}

/// The eigenvalues of the `n×n` row-major matrix `m`, in no particular order; `None` if QR
/// did not converge (30 iterations without a deflation) or the input is not finite.
pub fn eigenvalues(m: &[f64], n: usize) -> Option<Vec<Complex>> {
    assert_eq!(
        m.len(),
        n * n,
        "eigenvalues: {n}×{n} matrix needs {} entries",
        n * n
    );
    if m.iter().any(|x| !x.is_finite()) {
        return None;
    }
    // 1-based storage keeps the transcription of the textbook loops exact.
    let mut a = vec![vec![0.0f64; n + 1]; n + 1];
    for i in 0..n {
        for j in 0..n {
            a[i + 1][j + 1] = m[i * n + j];
        }
    }
    hessenberg(&mut a, n);
    hqr(&mut a, n)
}

/// Reduces `a` (1-based, n×n) to upper Hessenberg form with pivoted Gaussian elimination
/// applied as similarity transforms (so the spectrum is kept); zeroes below the subdiagonal.
fn hessenberg(a: &mut [Vec<f64>], n: usize) {
    for m in 2..n {
        let mut x = 0.0f64;
        let mut i = m;
        for j in m..=n {
            if a[j][m - 1].abs() > x.abs() {
                x = a[j][m - 1];
                i = j;
            }
        }
        if i != m {
            for j in (m - 1)..=n {
                let t = a[i][j];
                a[i][j] = a[m][j];
                a[m][j] = t;
            }
            for row in a.iter_mut().skip(1) {
                row.swap(i, m);
            }
        }
        if x != 0.0 {
            for i in (m + 1)..=n {
                let mut y = a[i][m - 1];
                if y != 0.0 {
                    y /= x;
                    a[i][m - 1] = y;
                    for j in m..=n {
                        a[i][j] -= y * a[m][j];
                    }
                    for j in 1..=n {
                        a[j][m] += y * a[j][i];
                    }
                }
            }
        }
    }
    for i in 3..=n {
        for j in 1..i - 1 {
            a[i][j] = 0.0;
        }
    }
}

fn sign(a: f64, b: f64) -> f64 {
    if b >= 0.0 {
        a.abs()
    } else {
        -a.abs()
    }
}

/// Francis double-shift QR on an upper Hessenberg `a` (1-based); destroys `a`.
fn hqr(a: &mut [Vec<f64>], n: usize) -> Option<Vec<Complex>> {
    let mut wr = vec![0.0; n + 1];
    let mut wi = vec![0.0; n + 1];
    let mut anorm = 0.0f64;
    for i in 1..=n {
        for j in i.saturating_sub(1).max(1)..=n {
            anorm += a[i][j].abs();
        }
    }
    let mut nn = n;
    let mut t = 0.0f64;
    let (mut p, mut q, mut r, mut x, mut y, mut z, mut w, mut s): (
        f64,
        f64,
        f64,
        f64,
        f64,
        f64,
        f64,
        f64,
    );
    while nn >= 1 {
        let mut its = 0;
        loop {
            // Look for a single small subdiagonal element to split the matrix.
            let mut l = nn;
            while l >= 2 {
                s = a[l - 1][l - 1].abs() + a[l][l].abs();
                if s == 0.0 {
                    s = anorm;
                }
                if a[l][l - 1].abs() + s == s {
                    a[l][l - 1] = 0.0;
                    break;
                }
                l -= 1;
            }
            x = a[nn][nn];
            if l == nn {
                // One root found.
                wr[nn] = x + t;
                wi[nn] = 0.0;
                nn -= 1;
            } else {
                y = a[nn - 1][nn - 1];
                w = a[nn][nn - 1] * a[nn - 1][nn];
                if l == nn - 1 {
                    // Two roots found.
                    p = 0.5 * (y - x);
                    q = p * p + w;
                    z = q.abs().sqrt();
                    x += t;
                    if q >= 0.0 {
                        z = p + sign(z, p);
                        wr[nn - 1] = x + z;
                        wr[nn] = x + z;
                        if z != 0.0 {
                            wr[nn] = x - w / z;
                        }
                        wi[nn - 1] = 0.0;
                        wi[nn] = 0.0;
                    } else {
                        wr[nn - 1] = x + p;
                        wr[nn] = x + p;
                        wi[nn - 1] = -z;
                        wi[nn] = z;
                    }
                    nn = nn.saturating_sub(2);
                } else {
                    if its == 30 {
                        return None;
                    }
                    if its == 10 || its == 20 {
                        // Exceptional shift.
                        t += x;
                        for i in 1..=nn {
                            a[i][i] -= x;
                        }
                        s = a[nn][nn - 1].abs() + a[nn - 1][nn - 2].abs();
                        x = 0.75 * s;
                        y = x;
                        w = -0.4375 * s * s;
                    }
                    its += 1;
                    // Form the shift and look for two consecutive small subdiagonal elements.
                    let mut m = nn - 2;
                    loop {
                        z = a[m][m];
                        r = x - z;
                        s = y - z;
                        p = (r * s - w) / a[m + 1][m] + a[m][m + 1];
                        q = a[m + 1][m + 1] - z - r - s;
                        r = a[m + 2][m + 1];
                        s = p.abs() + q.abs() + r.abs();
                        p /= s;
                        q /= s;
                        r /= s;
                        if m == l {
                            break;
                        }
                        let u = a[m][m - 1].abs() * (q.abs() + r.abs());
                        let v = p.abs() * (a[m - 1][m - 1].abs() + z.abs() + a[m + 1][m + 1].abs());
                        if u + v == v {
                            break;
                        }
                        m -= 1;
                    }
                    for i in (m + 2)..=nn {
                        a[i][i - 2] = 0.0;
                        if i != m + 2 {
                            a[i][i - 3] = 0.0;
                        }
                    }
                    // Double QR step on rows l..nn and columns m..nn.
                    for k in m..nn {
                        if k != m {
                            p = a[k][k - 1];
                            q = a[k + 1][k - 1];
                            r = if k != nn - 1 { a[k + 2][k - 1] } else { 0.0 };
                            x = p.abs() + q.abs() + r.abs();
                            if x != 0.0 {
                                p /= x;
                                q /= x;
                                r /= x;
                            }
                        }
                        s = sign((p * p + q * q + r * r).sqrt(), p);
                        if s != 0.0 {
                            if k == m {
                                if l != m {
                                    a[k][k - 1] = -a[k][k - 1];
                                }
                            } else {
                                a[k][k - 1] = -s * x;
                            }
                            p += s;
                            x = p / s;
                            y = q / s;
                            z = r / s;
                            q /= p;
                            r /= p;
                            for j in k..=nn {
                                p = a[k][j] + q * a[k + 1][j];
                                if k != nn - 1 {
                                    p += r * a[k + 2][j];
                                    a[k + 2][j] -= p * z;
                                }
                                a[k + 1][j] -= p * y;
                                a[k][j] -= p * x;
                            }
                            let mmin = if nn < k + 3 { nn } else { k + 3 };
                            for i in l..=mmin {
                                p = x * a[i][k] + y * a[i][k + 1];
                                if k != nn - 1 {
                                    p += z * a[i][k + 2];
                                    a[i][k + 2] -= p * r;
                                }
                                a[i][k + 1] -= p * q;
                                a[i][k] -= p;
                            }
                        }
                    }
                }
            }
            if nn < 2 || l >= nn - 1 {
                break;
            }
        }
    }
    Some(
        (1..=n)
            .map(|i| Complex {
                re: wr[i],
                im: wi[i],
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::Rng;

    fn sorted_re(mut v: Vec<Complex>) -> Vec<f64> {
        v.sort_by(|a, b| a.re.total_cmp(&b.re));
        v.iter().map(|c| c.re).collect()
    }

    #[test]
    fn known_spectra() {
        // Companion matrix of (x−1)(x−2)(x−3) = x³ − 6x² + 11x − 6.
        let c = [6.0, -11.0, 6.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        let re = sorted_re(eigenvalues(&c, 3).unwrap());
        for (got, want) in re.iter().zip([1.0, 2.0, 3.0]) {
            assert!((got - want).abs() < 1e-9, "{re:?}");
        }
        // A rotation by 0.3 scaled by 2: eigenvalues 2·e^{±0.3i}.
        let (co, si) = (2.0 * 0.3f64.cos(), 2.0 * 0.3f64.sin());
        let ev = eigenvalues(&[co, -si, si, co], 2).unwrap();
        for e in &ev {
            assert!(
                (e.re - co).abs() < 1e-12 && (e.im.abs() - si).abs() < 1e-12,
                "{ev:?}"
            );
        }
    }

    #[test]
    fn random_matrix_trace_and_characteristic_check() {
        // Σλ = trace, Σλ² = trace(A²), for a random 12×12 matrix (complex pairs included).
        let n = 12;
        let mut rng = Rng::new(7);
        let a: Vec<f64> = (0..n * n).map(|_| rng.normal()).collect();
        let ev = eigenvalues(&a, n).unwrap();
        let trace: f64 = (0..n).map(|i| a[i * n + i]).sum();
        let mut tr2 = 0.0;
        for i in 0..n {
            for k in 0..n {
                tr2 += a[i * n + k] * a[k * n + i];
            }
        }
        let s1: f64 = ev.iter().map(|e| e.re).sum();
        let s2: f64 = ev.iter().map(|e| e.re * e.re - e.im * e.im).sum();
        let si: f64 = ev.iter().map(|e| e.im).sum();
        assert!((s1 - trace).abs() < 1e-8, "{s1} vs {trace}");
        assert!((s2 - tr2).abs() < 1e-7, "{s2} vs {tr2}");
        assert!(si.abs() < 1e-9);
        assert!(
            ev.iter().any(|e| e.im != 0.0),
            "a random 12×12 matrix has complex pairs"
        );
    }
}
