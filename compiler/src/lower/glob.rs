//! Glob matching over dotted names (`layers.*.attn.gain`, `*.router.*`): `*` matches any run
//! of characters, including dots, so one pattern covers every layer.

/// Whether `name` matches `pattern`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == n[ni] || p[pi] == '?') {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether any pattern matches.
pub fn any_match(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| glob_match(p, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_cross_dots() {
        assert!(glob_match("*", "layers.0.attn.wq"));
        assert!(glob_match("layers.*.attn.gain", "layers.11.attn.gain"));
        assert!(!glob_match("layers.*.attn.gain", "layers.1.attn.wq"));
        assert!(glob_match("*.router.*", "layers.0.attn.router.w1"));
        assert!(!glob_match("embed", "embed.weight"));
    }
}
