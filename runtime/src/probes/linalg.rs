//! Small dense linear algebra for probes: solving a few-unknown linear system, dot
//! products, cosines and the projector onto the span of a few vectors.

/// Solves the `n×n` row-major system `a·x = b` by Gaussian elimination with partial
/// pivoting; `None` if it is singular to working precision.
pub fn solve(a: &[f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut m = a.to_vec();
    let mut x = b.to_vec();
    let scale = a
        .iter()
        .fold(0.0f64, |s, v| s.max(v.abs()))
        .max(f64::MIN_POSITIVE);
    for c in 0..n {
        let p = (c..n).max_by(|&i, &j| m[i * n + c].abs().total_cmp(&m[j * n + c].abs()))?;
        if m[p * n + c].abs() <= scale * 1e-13 {
            return None;
        }
        if p != c {
            for k in 0..n {
                m.swap(p * n + k, c * n + k);
            }
            x.swap(p, c);
        }
        for r in c + 1..n {
            let f = m[r * n + c] / m[c * n + c];
            if f != 0.0 {
                for k in c..n {
                    m[r * n + k] -= f * m[c * n + k];
                }
                x[r] -= f * x[c];
            }
        }
    }
    for c in (0..n).rev() {
        let mut s = x[c];
        for k in c + 1..n {
            s -= m[c * n + k] * x[k];
        }
        x[c] = s / m[c * n + c];
    }
    Some(x)
}

/// `⟨a, b⟩`.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `‖a‖₂`.
pub fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// Cosine similarity; 0 when either vector is zero.
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let d = norm(a) * norm(b);
    if d == 0.0 {
        0.0
    } else {
        dot(a, b) / d
    }
}

/// The orthogonal projection of `v` onto the span of `basis` (`P = M(MᵀM)⁻¹Mᵀ` with the
/// basis vectors as the columns of M); `None` if the basis is linearly dependent.
pub fn project(v: &[f64], basis: &[&[f64]]) -> Option<Vec<f64>> {
    let k = basis.len();
    let mut gram = vec![0.0; k * k];
    let mut rhs = vec![0.0; k];
    for i in 0..k {
        rhs[i] = dot(basis[i], v);
        for j in 0..k {
            gram[i * k + j] = dot(basis[i], basis[j]);
        }
    }
    let c = solve(&gram, &rhs, k)?;
    let mut out = vec![0.0; v.len()];
    for (ci, b) in c.iter().zip(basis) {
        for (o, x) in out.iter_mut().zip(b.iter()) {
            *o += ci * x;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solves_and_projects() {
        let x = solve(&[0.0, 2.0, 1.0, 1.0], &[4.0, 3.0], 2).unwrap();
        assert!((x[0] - 1.0).abs() < 1e-12 && (x[1] - 2.0).abs() < 1e-12);
        assert!(solve(&[1.0, 2.0, 2.0, 4.0], &[1.0, 1.0], 2).is_none());
        let p = project(&[1.0, 2.0, 3.0], &[&[1.0, 0.0, 0.0], &[1.0, 1.0, 0.0]]).unwrap();
        assert!((p[0] - 1.0).abs() < 1e-12 && (p[1] - 2.0).abs() < 1e-12 && p[2].abs() < 1e-12);
    }
}
