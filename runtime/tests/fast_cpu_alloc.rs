//! What a steady-state training step of the fast CPU path allocates, counted by a global
//! allocator: after the first runs have filled the buffer pool, a run of the peer
//! benchmark's training graph (forward + backward) takes every activation and gradient
//! buffer from the pool (its count and bytes do not change) and gives the same result.
//!
//! What a run still allocates, measured here at B2 T64 (7.6 MB arena; parameters are read
//! where they lie, not copied into it): the `Outputs` it hands back (they own their tensors:
//! 4.6 MB), the packing scratch the `gemm` crate allocates inside each product (about 9 MB
//! over a step's ~130 products; it offers no way to pass a buffer in), and the small results
//! of the few ops that make their own (cross-entropy, one-hot, gathers, scatter-add: under
//! 0.5 MB). The bound: a steady run allocates at least one arena less than the first run,
//! which filled the pool and otherwise did the same; a run that allocated its activations
//! again (a broken pool) would not.
//!
//! One test in this file: the counters are global, so no other test may run beside it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use weft_runtime::{bench, Backend, FastCpuBackend, HookSelection};

/// Counts bytes and calls of every allocation, then defers to the system allocator.
struct Counting;

static BYTES: AtomicUsize = AtomicUsize::new(0);
static CALLS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counters are atomics and allocate nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        CALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System::alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        CALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        BYTES.fetch_add(new_size, Ordering::Relaxed);
        CALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `alloc`; `ptr` came from this allocator, hence from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through the methods above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn counters() -> (usize, usize) {
    (BYTES.load(Ordering::SeqCst), CALLS.load(Ordering::SeqCst))
}

#[test]
fn a_steady_state_training_step_allocates_no_activations() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../benchmarks/peer/gpt_b16_t128.weft"
    );
    let src = std::fs::read_to_string(path).expect("peer spec");
    let spec = weft_dsl::check_source(&src).expect("peer spec checks");
    // Full width (dim 128, 4 layers), a short batch to keep the test quick.
    let w = bench::train_step("gpt", &spec, 2, 64).expect("training graph");
    let fast = FastCpuBackend::new();
    let run = || {
        fast.run(&w.graph, &w.inputs, &w.params, &HookSelection::None)
            .expect("runs")
    };
    let (b0, _) = counters();
    let first = run();
    let cold = counters().0 - b0;
    drop(run());
    let (arena, buffers) = (fast.arena_bytes(), fast.buffers_allocated());
    assert!(arena > 0 && buffers > 0);
    let mut per_run = Vec::new();
    for _ in 0..3 {
        let (b0, c0) = counters();
        let out = run();
        let (b1, c1) = counters();
        assert_eq!(out, first, "a repeated run gives the same result");
        let outputs: usize = out
            .outputs
            .values()
            .map(|t| t.shape.iter().product::<usize>() * 4)
            .sum();
        per_run.push((b1 - b0, c1 - c0, outputs));
    }
    assert_eq!(
        fast.buffers_allocated(),
        buffers,
        "no buffer beyond the pool's"
    );
    assert_eq!(
        fast.arena_bytes(),
        arena,
        "the arena does not grow across steps"
    );
    for &(bytes, calls, outputs) in &per_run {
        eprintln!("steady run: {bytes} bytes in {calls} allocations; outputs {outputs} bytes; arena {arena} bytes; first run {cold} bytes");
        assert!(
            bytes + arena <= cold,
            "a steady-state run allocated {bytes} bytes ({calls} calls): not the {arena}-byte \
             arena less than the first run's {cold}"
        );
    }
}
