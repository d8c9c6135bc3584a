//! Dequantisation of ggml's block formats to f32.
//!
//! Each format is a function over whole blocks; the arithmetic follows ggml's reference
//! dequantisers operation for operation (`d * q`, `(d * sc) * q - dmin * m`, ...), all in
//! f32 without fused multiply-adds, so results equal llama.cpp's and the `gguf` Python
//! package's bit for bit (the fixtures under `tests/fixtures/` check this).

use crate::{GgmlType, GgufError, Result};
use half::{bf16, f16};
use rayon::prelude::*;

/// Elements per parallel work item: large enough that scheduling costs nothing, small
/// enough that a 50k×576 embedding splits across every core.
const CHUNK_ELEMENTS: usize = 1 << 14;

/// A dequantiser of whole blocks: `src` holds `dst.len() / block` blocks.
type Kernel = fn(&[u8], &mut [f32]);

/// `n_elements` values of type `ty` from `bytes` (exactly the bytes they occupy), in
/// storage order.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n_elements: usize) -> Result<Vec<f32>> {
    let kernel: Kernel = match ty {
        GgmlType::F32 => f32s,
        GgmlType::F16 => f16s,
        GgmlType::BF16 => bf16s,
        GgmlType::Q8_0 => q8_0,
        GgmlType::Q4_0 => q4_0,
        GgmlType::Q4_1 => q4_1,
        GgmlType::Q4_K => q4_k,
        GgmlType::Q5_K => q5_k,
        GgmlType::Q6_K => q6_k,
        GgmlType::Other(_) => return Err(GgufError::Unsupported { ty }),
    };
    let Some((block, size)) = ty.layout() else {
        return Err(GgufError::Unsupported { ty });
    };
    let (block, size) = (block as usize, size as usize);
    let size_err = |msg: String| GgufError::Size { ty, msg };
    if !n_elements.is_multiple_of(block) {
        return Err(size_err(format!(
            "{n_elements} elements are not a whole number of blocks of {block}"
        )));
    }
    let blocks = n_elements / block;
    let want = blocks.checked_mul(size);
    if want != Some(bytes.len()) {
        return Err(size_err(format!(
            "{n_elements} elements ({blocks} blocks of {size} bytes) need {} bytes, got {}",
            want.map_or_else(|| "more than usize::MAX".to_string(), |w| w.to_string()),
            bytes.len()
        )));
    }
    let mut out = vec![0f32; n_elements];
    let per_chunk = (CHUNK_ELEMENTS / block).max(1);
    out.par_chunks_mut(per_chunk * block)
        .zip(bytes.par_chunks(per_chunk * size))
        .for_each(|(dst, src)| kernel(src, dst));
    Ok(out)
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

fn f32s(src: &[u8], dst: &mut [f32]) {
    for (y, x) in dst.iter_mut().zip(src.chunks_exact(4)) {
        *y = f32::from_le_bytes([x[0], x[1], x[2], x[3]]);
    }
}

fn f16s(src: &[u8], dst: &mut [f32]) {
    for (y, x) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *y = f16::from_bits(u16::from_le_bytes([x[0], x[1]])).to_f32();
    }
}

fn bf16s(src: &[u8], dst: &mut [f32]) {
    for (y, x) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *y = bf16::from_bits(u16::from_le_bytes([x[0], x[1]])).to_f32();
    }
}

/// Q8_0, 34 bytes per 32 values: `d: f16`, `qs: [i8; 32]`; `y = qs * d`.
fn q8_0(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.chunks_exact_mut(32).zip(src.chunks_exact(34)) {
        let d = f16_at(b, 0);
        for (y, &q) in y.iter_mut().zip(&b[2..34]) {
            *y = (q as i8) as f32 * d;
        }
    }
}

/// Q4_0, 18 bytes per 32 values: `d: f16`, `qs: [u8; 16]`; value `j` is the low nibble of
/// byte `j` and value `j + 16` the high nibble, each minus 8, times `d`.
fn q4_0(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.chunks_exact_mut(32).zip(src.chunks_exact(18)) {
        let d = f16_at(b, 0);
        let (lo, hi) = y.split_at_mut(16);
        for (j, &q) in b[2..18].iter().enumerate() {
            lo[j] = ((q & 0x0f) as i32 - 8) as f32 * d;
            hi[j] = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// Q4_1, 20 bytes per 32 values: `d: f16`, `m: f16`, `qs: [u8; 16]` (nibbles as Q4_0,
/// unsigned); `y = d * q + m`.
fn q4_1(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.chunks_exact_mut(32).zip(src.chunks_exact(20)) {
        let d = f16_at(b, 0);
        let m = f16_at(b, 2);
        let (lo, hi) = y.split_at_mut(16);
        for (j, &q) in b[4..20].iter().enumerate() {
            lo[j] = d * (q & 0x0f) as f32 + m;
            hi[j] = d * (q >> 4) as f32 + m;
        }
    }
}

/// The 6-bit scale and minimum of sub-block `j` (0..8) of a K-quant super-block, packed in
/// 12 bytes: sub-blocks 0-3 hold theirs in the low 6 bits of bytes `j` and `j + 4`; 4-7
/// combine a nibble of byte `j + 4` with the top 2 bits of bytes `j - 4` and `j`.
fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// Q4_K, 144 bytes per 256 values: `d: f16`, `dmin: f16`, `scales: [u8; 12]`,
/// `qs: [u8; 128]`. Four groups of 64 values share 32 bytes of `qs`: the first 32 values
/// are the low nibbles (sub-block `2g`), the next 32 the high nibbles (sub-block `2g + 1`);
/// `y = (d * sc) * q - dmin * m`.
fn q4_k(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.chunks_exact_mut(256).zip(src.chunks_exact(144)) {
        let d = f16_at(b, 0);
        let dmin = f16_at(b, 2);
        let scales = &b[4..16];
        let qs = &b[16..144];
        for g in 0..4 {
            let (sc1, m1) = scale_min_k4(2 * g, scales);
            let (sc2, m2) = scale_min_k4(2 * g + 1, scales);
            let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
            let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
            let q = &qs[32 * g..32 * g + 32];
            let out = &mut y[64 * g..64 * g + 64];
            for l in 0..32 {
                out[l] = d1 * (q[l] & 0x0f) as f32 - min1;
                out[l + 32] = d2 * (q[l] >> 4) as f32 - min2;
            }
        }
    }
}

/// Q5_K, 176 bytes per 256 values: `d`, `dmin`, `scales` as Q4_K, then `qh: [u8; 32]`
/// and `qs: [u8; 128]`. Values as Q4_K, with a fifth bit: value `l` of sub-block `s`
/// (0..8) adds 16 when bit `s` of `qh[l]` is set.
fn q5_k(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.chunks_exact_mut(256).zip(src.chunks_exact(176)) {
        let d = f16_at(b, 0);
        let dmin = f16_at(b, 2);
        let scales = &b[4..16];
        let qh = &b[16..48];
        let qs = &b[48..176];
        for g in 0..4 {
            let (sc1, m1) = scale_min_k4(2 * g, scales);
            let (sc2, m2) = scale_min_k4(2 * g + 1, scales);
            let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
            let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
            let (bit1, bit2) = (1u8 << (2 * g), 1u8 << (2 * g + 1));
            let q = &qs[32 * g..32 * g + 32];
            let out = &mut y[64 * g..64 * g + 64];
            for l in 0..32 {
                let h1 = if qh[l] & bit1 != 0 { 16 } else { 0 };
                let h2 = if qh[l] & bit2 != 0 { 16 } else { 0 };
                out[l] = d1 * ((q[l] & 0x0f) + h1) as f32 - min1;
                out[l + 32] = d2 * ((q[l] >> 4) + h2) as f32 - min2;
            }
        }
    }
}

/// Q6_K, 210 bytes per 256 values: `ql: [u8; 128]`, `qh: [u8; 64]`, `scales: [i8; 16]`,
/// `d: f16`. Each half of 128 values uses 64 bytes of `ql` and 32 of `qh`: its four
/// quarters take the low nibbles of `ql[0..32]`, of `ql[32..64]`, then the high nibbles of
/// each, with bits (0-1, 2-3, 4-5, 6-7) of `qh[l]` on top; codes are offset by 32 and every
/// 16 values share an 8-bit scale: `y = (d * scale) * (q - 32)`.
fn q6_k(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.chunks_exact_mut(256).zip(src.chunks_exact(210)) {
        let d = f16_at(b, 208);
        for half in 0..2 {
            let ql = &b[64 * half..64 * half + 64];
            let qh = &b[128 + 32 * half..128 + 32 * half + 32];
            let sc = &b[192 + 8 * half..192 + 8 * half + 8];
            let out = &mut y[128 * half..128 * half + 128];
            for l in 0..32 {
                let codes = [
                    (ql[l] & 0x0f) | ((qh[l] & 3) << 4),
                    (ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4),
                    (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                    (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
                ];
                for (k, &c) in codes.iter().enumerate() {
                    let scale = (sc[l / 16 + 2 * k] as i8) as f32;
                    out[l + 32 * k] = (d * scale) * (c as i32 - 32) as f32;
                }
            }
        }
    }
}
