//! The `weft` command-line tool.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "Declarative transformer research models, compiled to fused kernels"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check specs for errors; exit 0 when all are clean, 1 with diagnostics on stderr.
    Check {
        /// Spec files (`.weft`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the canonical form of a spec (comments kept).
    Fmt {
        /// The spec to format.
        file: PathBuf,
        /// Rewrite the file in place instead of printing.
        #[arg(long)]
        write: bool,
        /// Exit 1 if the file is not already formatted (prints nothing).
        #[arg(long, conflicts_with = "write")]
        check: bool,
    },
    /// Lower a spec to IR and print it, or write its fused kernels (WGSL or SPIR-V) to DIR.
    Compile {
        file: PathBuf,
        /// What to print.
        #[arg(long, value_enum, default_value = "ir")]
        emit: weft::cli::Emit,
        /// Batch size the graph is built for.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Sequence length (default: the model's ctx).
        #[arg(long)]
        seq: Option<usize>,
        /// Include the loss and the backward graph.
        #[arg(long)]
        grad: bool,
        /// Where `--emit wgsl|spirv` writes the kernels and `manifest.json`.
        dir: Option<PathBuf>,
    },
    /// Train a spec; writes metrics, checkpoints and traces to a run directory.
    Train {
        file: PathBuf,
        /// cpu, wgpu or auto.
        #[arg(long, default_value = "auto")]
        backend: String,
        /// Total optimizer steps (default: the spec's `steps`).
        #[arg(long)]
        steps: Option<u64>,
        /// Seed for initialisation and data (default: the spec's `seed`).
        #[arg(long)]
        seed: Option<u64>,
        /// Run directory (default: runs/SPEC_NAME).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue the run in --out from its latest checkpoint up to --steps total.
        #[arg(long)]
        resume: bool,
        /// Start over in a run directory that already holds a run: the old one is moved aside
        /// to DIR.old-<UTC time> (nothing is deleted).
        #[arg(long, conflicts_with = "resume")]
        overwrite: bool,
        /// Start from these weights (safetensors, e.g. an imported or trained model) instead of
        /// a seeded initialisation; parameters the file lacks keep their seeded values.
        #[arg(long, conflicts_with = "resume")]
        init: Option<PathBuf>,
    },
    /// List every parameter: name, shape, count, trainable; totals.
    Params { file: PathBuf },
    /// Reproduce a method against its baseline (examples/repro/NAME) and write a report.
    Repro {
        /// An experiment (`weft repro list`), `all`, or `summary` to regenerate REPRODUCTIONS.md
        /// from the reports in --out.
        name: String,
        /// Reduced steps and samples: checks the pipeline in minutes, not the effect.
        #[arg(long)]
        quick: bool,
        /// cpu, wgpu or auto.
        #[arg(long, default_value = "cpu")]
        backend: String,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Reports go to OUT/NAME/report.md (and .json), run directories below them.
        #[arg(long, default_value = "runs/repro")]
        out: PathBuf,
        /// Where `summary` writes.
        #[arg(long, default_value = "REPRODUCTIONS.md")]
        summary: PathBuf,
    },
    /// One forward pass: logits and captured hook values written as safetensors.
    Eval {
        file: PathBuf,
        /// Weights (safetensors); without it, weights are initialised from --seed.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// JSON array of equal-length arrays of token ids (batch × seq).
        #[arg(long, required_unless_present = "text", conflicts_with = "text")]
        tokens: Option<PathBuf>,
        /// Text to tokenize instead of --tokens (one sequence).
        #[arg(long)]
        text: Option<String>,
        /// Tokenizer for --text: `auto` (a tokenizer.json beside the weights or the spec,
        /// else bytes), `bytes`, or a HF tokenizer.json path.
        #[arg(long, default_value = "auto")]
        tokenizer: String,
        /// Output safetensors: `logits` [batch, seq, vocab] and each captured hook.
        #[arg(long)]
        out: PathBuf,
        /// Hook points to capture (comma-separated; `*` globs), e.g. layers.*.attn.pattern.
        #[arg(long, value_delimiter = ',')]
        capture: Vec<String>,
        /// cpu, wgpu or auto.
        #[arg(long, default_value = "auto")]
        backend: String,
        /// Seed for initialisation when no --weights are given.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Write the weights used (e.g. the seeded initialisation) to this file.
        #[arg(long)]
        save_init: Option<PathBuf>,
        /// Replace a hook point's value: HOOK=FILE.safetensors (the tensor named HOOK in
        /// FILE, e.g. written by --capture); repeatable; on every backend.
        #[arg(long, value_name = "HOOK=FILE")]
        replace: Vec<String>,
    },
    /// Run a spec's `program NAME = probe(...)`; writes OUT/programs/NAME.json.
    Run {
        file: PathBuf,
        /// The program's name in the spec.
        program: String,
        /// Weights (safetensors); without it, weights are initialised from --seed.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// cpu, wgpu or auto (every backend runs the probes that patch values).
        #[arg(long, default_value = "cpu")]
        backend: String,
        /// Directory the result goes under (programs/NAME.json).
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Seed of the probe's data generator (and of initialisation without --weights).
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Time matmul, attention and a training step on each backend; print a table.
    Bench {
        /// cpu, wgpu or all.
        #[arg(long, default_value = "all")]
        backend: String,
        /// Small sizes, 3 runs each (a smoke test of the table).
        #[arg(long)]
        quick: bool,
        /// Also matmul 4096, attention at B·H 32 T 2048 and the spec's own batch and length
        /// (for real GPUs).
        #[arg(long)]
        full: bool,
        /// Matmul sizes and attention lengths (comma-separated) instead of the defaults.
        #[arg(long, value_delimiter = ',')]
        sizes: Option<Vec<usize>>,
        /// Runs per measurement; the median is reported (default 5, 3 with --quick).
        #[arg(long)]
        runs: Option<usize>,
        /// The spec whose training step (forward + backward) is timed.
        #[arg(long, default_value = "examples/gpt.weft")]
        spec: PathBuf,
        /// Also write the table to this markdown file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Instead: time each kernel of this spec's training step, fused and unfused.
        #[arg(long, value_name = "SPEC")]
        profile: Option<PathBuf>,
        /// Autotune each workload's matmul tilings on the wgpu adapter first (cached).
        #[arg(long)]
        tune: bool,
    },
    /// Autotune the matmul tilings of a spec's forward and training step on the wgpu
    /// adapter; choices are cached per adapter (see BENCHMARKS.md, "How to tune").
    Tune {
        file: PathBuf,
        /// Batch rows (default: the spec's training micro-batch).
        #[arg(long)]
        batch: Option<usize>,
        /// Sequence length (default: the spec's training `seq`, else `ctx`).
        #[arg(long)]
        seq: Option<usize>,
        /// Timed runs per candidate (median compared).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Time shapes again even when the cache has a choice for them.
        #[arg(long)]
        retune: bool,
    },
    /// Import a HF GPT-2 or Llama checkpoint directory, or a GGUF file, as a weft spec (and
    /// weights; a GGUF's tokenizer.json is written beside them).
    Import {
        /// Directory with config.json and model.safetensors (or shards with an index), or a
        /// `.gguf` file.
        dir: PathBuf,
        /// The spec to write.
        #[arg(long)]
        out: PathBuf,
        /// Write the weights under weft's parameter names to this safetensors file.
        #[arg(long)]
        weights: Option<PathBuf>,
    },
    /// Export a GPT-2- or Llama-shaped spec with weights as a HF checkpoint directory.
    Export {
        file: PathBuf,
        #[arg(long)]
        weights: PathBuf,
        /// Output directory (config.json, model.safetensors).
        #[arg(long)]
        out: PathBuf,
    },
    /// Text generation from a prompt or a chat message (greedy, or sampled with a seed).
    Generate {
        file: PathBuf,
        #[arg(long)]
        weights: PathBuf,
        /// The prompt, continued as is.
        #[arg(long, required_unless_present = "chat", conflicts_with = "chat")]
        text: Option<String>,
        /// A user message, wrapped in the model's chat template (tokenizer_config.json).
        #[arg(long)]
        chat: Option<String>,
        /// A system message for --chat.
        #[arg(long, requires = "chat")]
        system: Option<String>,
        /// At most this many new tokens (generation also stops at the eos token).
        #[arg(long, default_value_t = 32)]
        max_new: usize,
        /// `auto` (a tokenizer.json beside the weights or the spec, else bytes), `bytes`, or
        /// a HF tokenizer.json path.
        #[arg(long, default_value = "auto")]
        tokenizer: String,
        /// Sampling temperature; 0 is greedy.
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        /// Sample among the k most likely tokens only (0: all).
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        /// Sample among the most likely tokens whose probabilities reach p.
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
        /// Seed of the sampler.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Keep generating past the eos token (for benchmarks).
        #[arg(long)]
        ignore_eos: bool,
        /// Recompute the whole sequence every step instead of reusing one compiled graph.
        #[arg(long)]
        no_cache: bool,
        /// cpu, wgpu or auto.
        #[arg(long, default_value = "auto")]
        backend: String,
    },
    /// Open the viewer window on a run directory (live while it is written) or a spec.
    View {
        /// A run directory or a `.weft` spec (with --check: one or more).
        #[arg(required = true, num_args = 1..)]
        paths: Vec<PathBuf>,
        /// Tab to open: curves, attention, heads, routing, programs, model.
        #[arg(long)]
        tab: Option<String>,
        /// Window size WIDTHxHEIGHT (default 1400x900).
        #[arg(long)]
        size: Option<String>,
        /// No window: read each path as the viewer does, decode every trace as its panel
        /// does, print what is there and any problem; exit 1 on a warning or an error.
        #[arg(long)]
        check: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { files } => weft::cli::check(&files),
        Command::Fmt { file, write, check } => weft::cli::fmt(&file, write, check),
        Command::Compile {
            file,
            emit,
            batch,
            seq,
            grad,
            dir,
        } => weft::cli::compile(&file, emit, batch, seq, grad, dir.as_deref()),
        Command::Train {
            file,
            backend,
            steps,
            seed,
            out,
            resume,
            overwrite,
            init,
        } => weft::cli::train(&weft::cli::TrainArgs {
            spec: file,
            backend,
            steps,
            seed,
            out,
            resume,
            overwrite,
            init,
        }),
        Command::Params { file } => weft::cli::params(&file),
        Command::Repro {
            name,
            quick,
            backend,
            seed,
            out,
            summary,
        } => weft::cli::repro(&weft::cli::ReproArgs {
            name,
            quick,
            backend,
            seed,
            out,
            summary,
        }),
        Command::Eval {
            file,
            weights,
            tokens,
            text,
            tokenizer,
            out,
            capture,
            backend,
            seed,
            save_init,
            replace,
        } => weft::cli::eval(&weft::cli::EvalArgs {
            spec: file,
            weights,
            tokens,
            text,
            tokenizer,
            out,
            capture,
            backend,
            seed,
            save_init,
            replace,
        }),
        Command::Run {
            file,
            program,
            weights,
            backend,
            out,
            seed,
        } => weft::cli::run(&weft::cli::RunArgs {
            spec: file,
            program,
            weights,
            backend,
            out,
            seed,
        }),
        Command::Bench {
            backend,
            quick,
            full,
            sizes,
            runs,
            spec,
            out,
            profile,
            tune,
        } => weft::cli::bench(&weft::cli::BenchArgs {
            backend,
            quick,
            full,
            sizes,
            runs,
            spec,
            out,
            profile,
            tune,
        }),
        Command::Tune {
            file,
            batch,
            seq,
            repeats,
            retune,
        } => weft::cli::tune(&weft::cli::TuneArgs {
            spec: file,
            batch,
            seq,
            repeats,
            retune,
        }),
        Command::Import { dir, out, weights } => weft::cli::import(&dir, &out, weights.as_deref()),
        Command::Export { file, weights, out } => weft::cli::export(&file, &weights, &out),
        Command::Generate {
            file,
            weights,
            text,
            chat,
            system,
            max_new,
            tokenizer,
            temperature,
            top_k,
            top_p,
            seed,
            ignore_eos,
            no_cache,
            backend,
        } => weft::cli::generate(&weft::cli::GenerateArgs {
            spec: file,
            weights,
            text,
            chat,
            system,
            max_new,
            tokenizer,
            no_cache,
            backend,
            temperature,
            top_k,
            top_p,
            seed,
            ignore_eos,
        }),
        Command::View {
            paths,
            tab,
            size,
            check,
        } => {
            if check {
                weft::cli::view_check(&paths)
            } else if let [path] = paths.as_slice() {
                weft::cli::view(path, tab.as_deref(), size.as_deref())
            } else {
                eprintln!("error: the window opens one path; --check takes several");
                ExitCode::FAILURE
            }
        }
    }
}
