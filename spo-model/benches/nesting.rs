//! Hostile nesting at the size limit (8 MiB): the worst shapes of deep nesting, each refused
//! in at most 100 ms. Among them, input nested just under the limit all the way and too deep
//! only at its end, and a stream of documents each too deep: the YAML parser alone reads these
//! at 6-10 MB/s (over a second), so the byte scan in `spo_model::nesting` refuses them before
//! it, and a stream stops at its first document nested too deep.
//!
//! `cargo bench -p spo-model --bench nesting`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use spo_model::document::{MAX_NESTING_DEPTH, MAX_SOURCE_BYTES};
use spo_model::{Outcome, parse_source};

/// `prefix`, then `unit` repeated to fill MAX_SOURCE_BYTES, then `suffix`, cut to the limit.
fn fill(prefix: &str, unit: &str, suffix: &str) -> String {
    let room = MAX_SOURCE_BYTES - prefix.len() - suffix.len();
    let mut s = String::with_capacity(MAX_SOURCE_BYTES);
    s.push_str(prefix);
    s.push_str(&unit.repeat(room / unit.len()));
    s.push_str(suffix);
    s
}

/// Indented block mappings, one level per line, as deep as 8 MiB allows (indentation grows, so
/// about 4,000 levels), or the nesting limit with a sibling tree repeated after it.
fn block_indented() -> String {
    let mut s = String::with_capacity(MAX_SOURCE_BYTES);
    let mut depth = 0;
    loop {
        let line = format!("{}a:\n", " ".repeat(depth));
        if s.len() + line.len() > MAX_SOURCE_BYTES {
            break;
        }
        s.push_str(&line);
        depth += 1;
    }
    s
}

/// Nesting just under the limit, repeated to fill the input, then one level too deep at the
/// very end: the whole input is read before it is refused.
fn deep_at_the_end() -> String {
    let ok = MAX_NESTING_DEPTH - 2;
    let unit = format!("{}{}, ", "[".repeat(ok), "]".repeat(ok));
    let bad = MAX_NESTING_DEPTH + 1;
    let suffix = format!("{}{}]\n", "[".repeat(bad), "]".repeat(bad));
    fill("a: [", &unit, &suffix)
}

/// Block lists nested just under the limit on every line, one level too deep on the last.
fn block_deep_at_the_end() -> String {
    let suffix = format!("{}x\n", "- ".repeat(MAX_NESTING_DEPTH + 1));
    fill("", &format!("{}x\n", "- ".repeat(MAX_NESTING_DEPTH - 1)), &suffix)
}

fn shapes() -> Vec<(&'static str, String)> {
    vec![
        ("flow_sequences", fill("a: ", "[", "")),
        ("flow_mappings", fill("a: ", "{a: ", "")),
        ("block_indented", block_indented()),
        ("block_sequences", fill("", "- ", "x\n")),
        ("json_arrays", fill("", "[", "")),
        (
            "many_deep_documents",
            fill("", &format!("---\na: {}\n", "[".repeat(MAX_NESTING_DEPTH + 1)), ""),
        ),
        ("deep_at_the_end", deep_at_the_end()),
        ("block_deep_at_the_end", block_deep_at_the_end()),
    ]
}

fn refused(text: &str) -> bool {
    parse_source("bench", text).is_ok_and(|docs| {
        docs.iter().all(|d| {
            matches!(d.outcome, Outcome::Invalid) && d.problems.iter().any(|p| p.message.contains("nested more than"))
        })
    })
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("refuse_deep_nesting_8MiB");
    group.sample_size(10);
    for (name, text) in shapes() {
        assert!(text.len() <= MAX_SOURCE_BYTES, "{name}: {} bytes", text.len());
        assert!(refused(&text), "{name} was not refused for its nesting");
        group.bench_function(name, |b| b.iter(|| parse_source("bench", black_box(&text))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
