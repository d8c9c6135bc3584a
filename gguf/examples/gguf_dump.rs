//! Prints a GGUF file's header, metadata and tensor list; dequantises tensors on request.
//!
//! ```text
//! cargo run --release -p weft-gguf --example gguf_dump -- MODEL.gguf            # summary
//! cargo run --release -p weft-gguf --example gguf_dump -- MODEL.gguf --all      # + time to dequantise every tensor
//! cargo run --release -p weft-gguf --example gguf_dump -- MODEL.gguf NAME OUT   # tensor NAME as raw little-endian f32
//! ```

use std::io::{self, Write};
use std::path::Path;
use std::time::Instant;
use weft_gguf::{GgufFile, MetaValue};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        // `gguf_dump X | head` closes the pipe early: that is the reader's choice, not an error.
        if e.downcast_ref::<io::Error>().map(io::Error::kind) == Some(io::ErrorKind::BrokenPipe) {
            return;
        }
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let Some(path) = args.first() else {
        return Err("usage: gguf_dump FILE.gguf [--all | TENSOR OUT.f32]".into());
    };
    let t0 = Instant::now();
    let f = GgufFile::open(Path::new(path))?;
    let parsed = t0.elapsed();
    let mut out = io::stdout().lock();
    match args.get(1).map(String::as_str) {
        Some("--all") => {
            let t0 = Instant::now();
            let mut values = 0usize;
            for t in &f.tensors {
                values += f.tensor_f32(&t.name)?.len();
            }
            let s = t0.elapsed().as_secs_f64();
            writeln!(
                out,
                "dequantised {} tensors, {values} values, in {s:.3} s (header parsed in {:.3} s)",
                f.tensors.len(),
                parsed.as_secs_f64()
            )?;
        }
        Some(name) => {
            let dest = args.get(2).ok_or("missing output path")?;
            let v = f.tensor_f32(name)?;
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            std::fs::write(dest, bytes)?;
            writeln!(out, "{name}: {} values -> {dest}", v.len())?;
        }
        None => {
            writeln!(
                out,
                "GGUF v{}, {} metadata entries, {} tensors, alignment {}, data at {} (parsed in {:.3} s)",
                f.version,
                f.metadata.len(),
                f.tensors.len(),
                f.alignment,
                f.data_offset,
                parsed.as_secs_f64()
            )?;
            for (k, v) in &f.metadata {
                match v {
                    MetaValue::String(s) if s.len() > 60 => {
                        writeln!(out, "  {k}: {} bytes of text", s.len())?
                    }
                    _ => writeln!(out, "  {k}: {v}")?,
                }
            }
            for t in &f.tensors {
                writeln!(
                    out,
                    "  {} {:?} {} @{}",
                    t.name, t.dims, t.ggml_type, t.offset
                )?;
            }
        }
    }
    Ok(())
}
