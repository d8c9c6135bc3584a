//! Data sources and transforms: determinism, batch invariants, each task's structure,
//! text packing, Masked Thought and vocabulary extension.

use std::path::{Path, PathBuf};
use weft_runtime::data::{
    append_mean_rows, extend_vocab, step_rng, Arithmetic, ArithmeticLevel, Batch, CopyTask,
    DataError, DataSource, Facts, KvRecall, LabelMapping, MaskedThought, Replacement, TextData,
    Tokenizer, PAD,
};
use weft_runtime::{Rng, Tensor};

fn i32s(t: &Tensor) -> &[i32] {
    t.as_i32().expect("i32 tensor")
}

/// The invariants every batch keeps (see `Batch`'s docs).
fn check_invariants(b: &Batch, vocab: usize) {
    let (bs, t) = (b.batch_size(), b.seq_len());
    for x in [
        &b.tokens,
        &b.targets,
        &b.answer_mask,
        &b.answer_segments,
        &b.segments,
        &b.turns,
    ] {
        assert_eq!(x.shape, vec![bs, t]);
    }
    let (tok, tgt, seg, turn, aseg) = (
        i32s(&b.tokens),
        i32s(&b.targets),
        i32s(&b.segments),
        i32s(&b.turns),
        i32s(&b.answer_segments),
    );
    let mask = b.answer_mask.as_f32().unwrap();
    for i in 0..bs * t {
        assert!(
            (0..vocab as i32).contains(&tok[i]),
            "token {} at {i}",
            tok[i]
        );
        assert!(tgt[i] >= -1 && tgt[i] < vocab as i32);
        assert_eq!(
            mask[i] == 1.0,
            aseg[i] >= 0,
            "answer mask vs segments at {i}"
        );
        assert!(mask[i] == 0.0 || mask[i] == 1.0);
        if mask[i] == 1.0 {
            assert!(tgt[i] >= 0, "an answer position has a target");
        }
        if seg[i] == -1 {
            assert_eq!((tok[i], tgt[i], turn[i]), (PAD, -1, -1), "padding at {i}");
        }
        if tgt[i] >= 0 && (i + 1) % t != 0 {
            assert_eq!(tgt[i], tok[i + 1], "target is the next input at {i}");
            assert_eq!(seg[i], seg[i + 1], "targets never cross documents");
        }
    }
}

fn shakespeare() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data/shakespeare.txt")
}

fn sources() -> Vec<(Box<dyn DataSource>, usize)> {
    vec![
        (Box::new(CopyTask::new(16, 64, 3).unwrap()), 40),
        (Box::new(KvRecall::new(8, 64, 64, 3).unwrap()), 64),
        (
            Box::new(LabelMapping::new(16, 8, 4, 64, 0.15, 128, 3).unwrap()),
            96,
        ),
        (
            Box::new(Arithmetic::new(4, 100, 200, ArithmeticLevel::Chars, 128, 3).unwrap()),
            64,
        ),
        (Box::new(Facts::new(50, 10, 512, 3).unwrap()), 64),
        (
            Box::new(TextData::load(&shakespeare(), Tokenizer::Bytes, None, 0.05, 256, 3).unwrap()),
            128,
        ),
    ]
}

#[test]
fn every_source_is_deterministic_and_keeps_the_batch_invariants() {
    for (src, seq) in sources() {
        let name = src.describe();
        let a = src.next_batch(8, seq, 5, &mut step_rng(11, 5)).unwrap();
        let b = src.next_batch(8, seq, 5, &mut step_rng(11, 5)).unwrap();
        assert_eq!(a, b, "{name}: same seed and step, same batch");
        let c = src.next_batch(8, seq, 6, &mut step_rng(11, 6)).unwrap();
        assert_ne!(a.tokens, c.tokens, "{name}: another step, another batch");
        check_invariants(&a, src.vocab());
        assert!(a.target_count() > 0, "{name}");
        let eval = src.eval_batches(8, seq).unwrap();
        assert!(!eval.is_empty(), "{name}");
        assert_eq!(
            eval,
            src.eval_batches(8, seq).unwrap(),
            "{name}: fixed eval set"
        );
        for e in &eval {
            check_invariants(e, src.vocab());
        }
        let inputs = a.to_inputs();
        for k in [
            "tokens",
            "targets",
            "answer_mask",
            "answer_segments",
            "segments",
            "turns",
        ] {
            assert!(inputs.contains_key(k), "{name}: {k}");
        }
        assert!(!src.token_text(i32s(&a.tokens)[0]).is_empty());
    }
}

#[test]
fn copy_task_repeats_the_first_half_and_answers_are_the_second() {
    let n = 10;
    let src = CopyTask::new(n, 50, 0).unwrap();
    let b = src.next_batch(4, 24, 0, &mut Rng::new(1)).unwrap();
    let (tok, tgt, aseg) = (i32s(&b.tokens), i32s(&b.targets), i32s(&b.answer_segments));
    for r in 0..4 {
        let row = &tok[r * 24..(r + 1) * 24];
        assert_eq!(row[..n], row[n..2 * n], "s ⊕ s");
        assert!(row[..2 * n].iter().all(|&x| (2..50).contains(&x)));
        assert!(row[2 * n..].iter().all(|&x| x == PAD));
        for t in 0..24 {
            let want = if (n - 1..2 * n - 1).contains(&t) {
                0
            } else {
                -1
            };
            assert_eq!(aseg[r * 24 + t], want, "row {r} pos {t}");
        }
        assert_eq!(tgt[r * 24 + 2 * n - 1], -1, "nothing after the second copy");
    }
    assert!(matches!(
        src.next_batch(1, 2 * n - 2, 0, &mut Rng::new(1)),
        Err(DataError::TooLong { .. })
    ));
    assert!(CopyTask::new(4, 2, 0).is_err());
}

#[test]
fn kv_recall_answers_the_queried_value_and_places_the_needle() {
    let (pairs, len) = (6, 48);
    let src = KvRecall::new(pairs, len, 64, 0).unwrap();
    let mut rng = Rng::new(2);
    for _ in 0..50 {
        let s = src.sample(&mut rng, None);
        assert_eq!(s.len(), len + 1);
        let key = s.ids[len - 1];
        let at = KvRecall::needle_position(&s).expect("queried key is in the context");
        assert_eq!(
            s.ids[at + 1],
            s.ids[len],
            "answer = the value after the key"
        );
        assert_eq!(
            s.ids[..len - 2].iter().filter(|&&x| x == key).count(),
            1,
            "distinct keys"
        );
        assert_eq!(s.answer.iter().filter(|&&a| a >= 0).count(), 1);
    }
    let b = src.next_batch(2, len, 0, &mut rng).unwrap();
    let aseg = i32s(&b.answer_segments);
    assert_eq!(aseg[len - 1], 0, "the answer is the last position's target");
    assert_eq!(aseg.iter().filter(|&&a| a >= 0).count(), 2);
    // Needle control: start, middle, end of the context.
    for (f, lo, hi) in [(0.0, 0, 2), (0.5, 18, 28), (1.0, len - 6, len - 2)] {
        for _ in 0..20 {
            let at = KvRecall::needle_position(&src.sample(&mut rng, Some(f))).unwrap();
            assert!((lo..hi).contains(&at), "needle {f}: key at {at}");
        }
    }
    assert!(KvRecall::new(30, 100, 64, 0).is_err(), "not enough key ids");
    assert!(src.next_batch(1, len - 1, 0, &mut rng).is_err());
}

#[test]
fn label_mapping_has_turns_segments_and_the_configured_noise() {
    let src = LabelMapping::new(4, 8, 4, 20, 0.0, 64, 9).unwrap();
    let mut rng = Rng::new(3);
    let s = src.sample(&mut rng, 2, 5, false);
    assert_eq!(s.len(), 11);
    assert_eq!(
        (s.ids[0], s.turn[0], s.answer[0]),
        (src.task_token(2), 0, -1)
    );
    for j in 0..5 {
        let (x, y) = (s.ids[1 + 2 * j], s.ids[2 + 2 * j]);
        assert_eq!(s.turn[1 + 2 * j], j as i32 + 1);
        assert_eq!(s.turn[2 + 2 * j], j as i32 + 1);
        assert_eq!((s.answer[1 + 2 * j], s.answer[2 + 2 * j]), (-1, j as i32));
        let xi = (x - src.input_token(0)) as usize;
        assert_eq!(
            y,
            src.label_token(src.label_of(2, xi)),
            "noise 0: true labels"
        );
    }
    // Batch view: the answer target of demo j sits at the position of x_j.
    let b = Batch::from_samples(&[s], 1, 16).unwrap();
    let aseg = i32s(&b.answer_segments);
    assert_eq!(&aseg[..11], &[-1, 0, -1, 1, -1, 2, -1, 3, -1, 4, -1]);

    let noisy = LabelMapping::new(4, 8, 4, 20, 0.2, 64, 9).unwrap();
    let (mut flipped, mut total) = (0, 0);
    for _ in 0..400 {
        let task = rng.below(4) as usize;
        let s = noisy.sample(&mut rng, task, 10, true);
        for j in 0..10 {
            let xi = (s.ids[1 + 2 * j] - noisy.input_token(0)) as usize;
            let wrong = s.ids[2 + 2 * j] != noisy.label_token(noisy.label_of(task, xi));
            if j == 9 {
                assert!(!wrong, "clean_last keeps the query label true");
            } else {
                flipped += wrong as usize;
                total += 1;
            }
        }
    }
    let rate = flipped as f64 / total as f64;
    assert!((rate - 0.2).abs() < 0.02, "flip rate {rate}");

    let b = src.batch_with_shots(3, 16, 7, &mut rng).unwrap();
    assert_eq!(i32s(&b.answer_segments).iter().max(), Some(&6));
    let p = src.prompt(1, &[(0, src.label_of(1, 0))], 3);
    assert_eq!(p.len(), 4);
    let lp = Batch::left_padded(&[p.clone(), src.prompt(1, &[], 3)], 6).unwrap();
    assert_eq!(&i32s(&lp.tokens)[2..6], &p[..], "right-aligned");
    assert_eq!(i32s(&lp.tokens)[6 + 5], p[3], "same last token position");
    assert!(LabelMapping::new(100, 8, 4, 8, 0.0, 64, 0).is_err());
}

#[test]
fn label_mapping_without_task_id_starts_every_task_alike_and_names_held_out_tasks() {
    let lm = LabelMapping::new(4, 8, 4, 20, 0.0, 64, 9)
        .unwrap()
        .with_task_id(false);
    assert!(lm.describe().contains("task_id: false"));
    assert_eq!(lm.prompt(3, &[], 1)[0], lm.prompt(0, &[], 1)[0]);
    let seq = 21;
    let tasks = lm.eval_tasks(seq);
    let rows: Vec<i32> = lm
        .eval_batches(8, seq)
        .unwrap()
        .iter()
        .flat_map(|b| i32s(&b.tokens).to_vec())
        .collect();
    assert!(rows.len() / seq >= tasks.len() && !tasks.is_empty());
    // Turn 0 says nothing; the demonstrations follow the task `eval_tasks` names (noise 0).
    for (row, &task) in rows.chunks(seq).zip(&tasks) {
        assert_eq!(row[0], 1, "the shared start token");
        for pair in row[1..].chunks(2).take_while(|p| p.len() == 2 && p[0] != 0) {
            let x = (pair[0] - lm.input_token(0)) as usize;
            assert_eq!(pair[1], lm.label_token(lm.label_of(task, x)));
        }
    }
    // Several tasks occur, so the labels cannot all be explained by one table.
    assert!(tasks.iter().any(|&t| t != tasks[0]));
}

#[test]
fn arithmetic_renders_chain_of_thought_and_holds_out_problems() {
    let src = Arithmetic::new(4, 100, 300, ArithmeticLevel::Chars, 128, 1).unwrap();
    let (prompt, answer) = src.render(&[17, 45, 92, 8]);
    let text = |ids: &[i32]| ids.iter().map(|&i| char::from(i as u8)).collect::<String>();
    assert_eq!(text(&prompt), "17+45+92+8=");
    assert_eq!(text(&answer), "17+45=62,62+92=54,54+8=62;62\n");
    assert_eq!(text(&src.result_ids(&answer)), "62");
    assert_eq!(src.result(&[17, 45, 92, 8]), 62);
    let train: std::collections::HashSet<_> = src.train_problems().iter().collect();
    assert_eq!(train.len(), 300);
    assert_eq!(src.eval_problems().len(), Arithmetic::EVAL_PROBLEMS);
    assert!(
        src.eval_problems().iter().all(|p| !train.contains(p)),
        "held out"
    );

    let s = src.sample(&[17, 45, 92, 8]);
    assert!(s.answer[..prompt.len()].iter().all(|&a| a == -1));
    assert!(s.answer[prompt.len()..].iter().all(|&a| a == 0));
    assert_eq!(s.turn[prompt.len()], 1);

    let tok = Arithmetic::new(4, 100, 300, ArithmeticLevel::Tokens, 107, 1).unwrap();
    let (p, a) = tok.render(&[17, 45, 92, 8]);
    assert_eq!(p.len(), 8);
    assert_eq!(tok.result_ids(&a), vec![7 + 62]);
    // A generated answer that stops right after a `;` has no result (and does not panic).
    let semi = a[a.len() - 3];
    assert_eq!(tok.result_ids(&[a[0], semi]), Vec::<i32>::new());
    assert_eq!(tok.token_text(7 + 62), "62");
    assert!(Arithmetic::new(4, 100, 300, ArithmeticLevel::Tokens, 100, 1).is_err());
}

#[test]
fn facts_twins_differ_only_in_the_subject() {
    let src = Facts::new(50, 10, 512, 4).unwrap();
    let mut rng = Rng::new(8);
    for _ in 0..50 {
        let p = src.prompt_pair(&mut rng);
        assert_eq!(p.clean.len(), p.corrupted.len());
        let diff: Vec<usize> = (0..p.clean.len())
            .filter(|&i| p.clean[i] != p.corrupted[i])
            .collect();
        assert_eq!(diff, vec![p.subject_pos]);
        assert_eq!(p.clean[p.subject_pos], src.subject_token(p.subject));
        assert_eq!(
            p.corrupted[p.subject_pos],
            src.subject_token(p.corrupted_subject)
        );
        assert_ne!(p.subject, p.corrupted_subject);
        assert_eq!(p.answer, src.answer_token(p.subject));
        assert_eq!(src.token_text(p.answer), format!("K{}", p.subject));
    }
    let b = src.next_batch(4, 64, 0, &mut rng).unwrap();
    let (tgt, aseg) = (i32s(&b.targets), i32s(&b.answer_segments));
    for i in 0..4 * 64 {
        if aseg[i] >= 0 {
            assert_eq!(
                src.token_text(tgt[i]).chars().next(),
                Some('K'),
                "answers are K_i"
            );
        }
    }
    assert!(Facts::new(300, 10, 512, 0).is_err());
}

#[test]
fn text_windows_cover_the_file_and_respect_documents() {
    let path = shakespeare();
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 900_000, "the shipped corpus is about 1 MB");
    let seq = 256;
    let src = TextData::load(&path, Tokenizer::Bytes, None, 0.05, 128, 0).unwrap();
    assert_eq!(src.len(), bytes.len());
    let n = src.train_windows(seq);
    assert_eq!(n, (src.train_len() - 1) / seq);
    // One epoch of training windows visits every window once: every training position (up
    // to the last partial window) is read exactly once.
    let batch = 32;
    let mut seen = vec![0u8; src.train_len()];
    let steps = n.div_ceil(batch);
    let mut epoch = std::collections::HashSet::new();
    for i in 0..(steps * batch) as u64 {
        let w = src.window_of_sample(i, seq);
        if i < n as u64 {
            assert!(epoch.insert(w), "window {w} twice in one epoch");
        }
    }
    assert_eq!(epoch.len(), n);
    for step in 0..steps as u64 {
        let b = src.next_batch(batch, seq, step, &mut Rng::new(0)).unwrap();
        for r in 0..batch {
            let i = step * batch as u64 + r as u64;
            if i >= n as u64 {
                break;
            }
            let start = src.window_of_sample(i, seq) * seq;
            let row = &i32s(&b.tokens)[r * seq..(r + 1) * seq];
            assert!(row
                .iter()
                .zip(&bytes[start..])
                .all(|(&a, &b)| a == b as i32));
            seen[start..start + seq].iter_mut().for_each(|s| *s += 1);
        }
    }
    assert!(seen[..n * seq].iter().all(|&s| s == 1));
    assert!(src.train_len() - n * seq <= seq);
    // Evaluation windows tile the held-out tail.
    let eval = src.eval_batches(8, seq).unwrap();
    let tail: Vec<i32> = eval
        .iter()
        .flat_map(|b| {
            i32s(&b.tokens)
                .chunks(seq)
                .map(|r| r.to_vec())
                .collect::<Vec<_>>()
        })
        .flatten()
        .filter(|&x| x != PAD)
        .collect();
    let want: Vec<i32> = bytes[src.train_len()..].iter().map(|&b| b as i32).collect();
    assert_eq!(
        tail.len(),
        want.len(),
        "the corpus has no NUL bytes, so PAD marks only padding"
    );
    assert_eq!(tail, want);
}

#[test]
fn jsonl_documents_become_segments_and_bytes_must_fit_the_vocab() {
    let dir = std::env::temp_dir().join(format!("weft-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("docs.jsonl");
    std::fs::write(
        &path,
        "{\"text\": \"abc\"}\n\n{\"text\": \"defg\", \"x\": 1}\n{\"text\": \"hi\"}\n",
    )
    .unwrap();
    let src = TextData::load(&path, Tokenizer::Bytes, Some("text"), 0.0, 256, 0).unwrap();
    assert_eq!((src.len(), src.documents()), (9, 3));
    let b = src.eval_batches(1, 8);
    assert!(b.unwrap().is_empty(), "valid = 0: nothing held out");
    let b = src.next_batch(1, 8, 0, &mut Rng::new(0)).unwrap();
    assert_eq!(
        i32s(&b.tokens),
        "abcdefgh".bytes().map(i32::from).collect::<Vec<_>>()
    );
    assert_eq!(i32s(&b.segments), &[0, 0, 0, 1, 1, 1, 1, 2]);
    assert_eq!(
        i32s(&b.targets),
        &['b' as i32, 'c' as i32, -1, 'e' as i32, 'f' as i32, 'g' as i32, -1, 'i' as i32],
        "no target across a document boundary"
    );

    std::fs::write(&path, "{\"text\": \"ok\"}\n{\"body\": \"no\"}\n").unwrap();
    let e = TextData::load(&path, Tokenizer::Bytes, Some("text"), 0.0, 256, 0).unwrap_err();
    assert!(
        e.to_string().contains("docs.jsonl:2") && e.to_string().contains("text"),
        "{e}"
    );
    std::fs::write(&path, "caf\u{e9}").unwrap();
    let e = TextData::load(&path, Tokenizer::Bytes, None, 0.0, 128, 0).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::TokenOutOfRange {
                offset: 3,
                vocab: 128,
                ..
            }
        ),
        "{e}"
    );
    assert!(Tokenizer::from_name("gpt2.txt", Path::new(".")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn masked_thought_touches_only_answer_inputs_at_the_scheduled_rate() {
    let mt = MaskedThought {
        p: 0.4,
        warmup: 0.66,
        replace: Replacement::Mask(127),
    };
    assert_eq!(mt.rate(0, 1000), 0.0);
    assert!((mt.rate(330, 1000) - 0.4 * 330.0 / 661.0).abs() < 1e-12);
    assert_eq!(mt.rate(700, 1000), 0.4);
    assert_eq!(mt.rate(1000, 1000), 0.4);

    let src = Arithmetic::new(4, 100, 500, ArithmeticLevel::Chars, 128, 2).unwrap();
    let clean = src.next_batch(64, 64, 0, &mut Rng::new(4)).unwrap();
    let mut masked = clean.clone();
    let n = mt.apply(&mut masked, 900, 1000, &mut Rng::new(5));
    assert!(n > 0);
    assert_eq!(masked.targets, clean.targets, "labels unchanged");
    assert_eq!(masked.answer_mask, clean.answer_mask);
    let (a, b) = (i32s(&clean.tokens), i32s(&masked.tokens));
    let amask = clean.answer_mask.as_f32().unwrap();
    let (mut candidates, mut changed) = (0, 0);
    for i in 0..a.len() {
        let answer_input = i % 64 != 0 && amask[i - 1] == 1.0;
        if a[i] != b[i] {
            assert!(answer_input, "position {i} is not an answer token");
            assert_eq!(b[i], 127);
            changed += 1;
        }
        candidates += answer_input as usize;
    }
    assert_eq!(changed, n);
    let rate = changed as f64 / candidates as f64;
    assert!(
        (rate - 0.4).abs() < 0.03,
        "rate {rate} over {candidates} answer tokens"
    );

    let random = MaskedThought {
        replace: Replacement::Random { low: 2, high: 10 },
        ..mt
    };
    let mut r = clean.clone();
    random.apply(&mut r, 1000, 1000, &mut Rng::new(6));
    let changed: Vec<i32> = i32s(&r.tokens)
        .iter()
        .zip(a)
        .filter(|(x, y)| x != y)
        .map(|(x, _)| *x)
        .collect();
    assert!(!changed.is_empty() && changed.iter().all(|x| (2..10).contains(x)));
    let mut untouched = clean.clone();
    assert_eq!(
        mt.apply(&mut untouched, 0, 1000, &mut Rng::new(7)),
        0,
        "p_0 = 0"
    );
    assert_eq!(untouched, clean);
}

#[test]
fn vocabulary_extension_appends_mean_rows() {
    let (v, ids) = extend_vocab(128, &["<mask>".to_string(), "<sep>".to_string()]);
    assert_eq!((v, ids), (130, vec![128, 129]));
    let emb = Tensor::f32(&[3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 9.0]);
    let e = append_mean_rows(&emb, 0, 2);
    assert_eq!(e.shape, vec![5, 2]);
    assert_eq!(
        e.as_f32().unwrap(),
        &[1.0, 2.0, 3.0, 4.0, 5.0, 9.0, 3.0, 5.0, 3.0, 5.0]
    );
    // Unembedding [D, V]: one new column per token.
    let un = Tensor::f32(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 9.0]);
    let u = append_mean_rows(&un, 1, 1);
    assert_eq!(u.shape, vec![2, 4]);
    assert_eq!(
        u.as_f32().unwrap(),
        &[1.0, 2.0, 3.0, 2.0, 4.0, 5.0, 9.0, 6.0]
    );
}

#[test]
fn text_tokenized_by_a_hf_tokenizer_json() {
    let dir = std::env::temp_dir().join(format!("weft-tokjson-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("tokenizer.json"),
        r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
            "pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
            "model":{"type":"WordLevel","vocab":{"<unk>":0,"the":1,"cat":2,"sat":3},"unk_token":"<unk>"}}"#,
    )
    .unwrap();
    std::fs::write(dir.join("c.txt"), "the cat sat the cat sat the cat").unwrap();
    let tok = Tokenizer::from_name("tokenizer.json", &dir).unwrap();
    let src = TextData::load(&dir.join("c.txt"), tok, None, 0.0, 8, 0).unwrap();
    let b = src.next_batch(1, 4, 0, &mut step_rng(0, 0)).unwrap();
    let ids = b.tokens.as_i32().unwrap().to_vec();
    assert!(ids.iter().all(|&i| (1..=3).contains(&i)), "{ids:?}");
    assert_eq!(src.token_text(2), "cat");
    // A vocabulary too small for the tokenizer's ids is refused, naming the tokenizer.
    let e = TextData::load(
        &dir.join("c.txt"),
        Tokenizer::from_name("tokenizer.json", &dir).unwrap(),
        None,
        0.0,
        2,
        0,
    )
    .unwrap_err();
    assert!(e.to_string().contains("tokenizer.json gives id"), "{e}");
}
