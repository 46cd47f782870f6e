//! Rendering 1,000 AppArmorProfiles (checks included), and one real apparmor_parser
//! validation of a rendered profile beside the bare parser on the same text.
//!
//! `cargo bench -p spo-apparmor --bench render`; figures in `docs/benchmarks.md`.

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use spo_apparmor::{ParserValidator, render_and_check, render_profile};
use spo_model::AppArmorProfile;

/// The integration tests' full fixture, renamed and varied per index so no two are equal.
fn profiles(n: usize) -> Vec<AppArmorProfile> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/web-enforce.yaml");
    let text = std::fs::read_to_string(path).expect("fixture");
    let base: AppArmorProfile = serde_norway::from_str(&text).expect("parse fixture");
    (0..n)
        .map(|i| {
            let mut p = base.clone();
            p.metadata.name = Some(format!("web-{i}"));
            let fs = p
                .spec
                .abstract_
                .as_mut()
                .and_then(|a| a.filesystem.as_mut())
                .expect("fs");
            fs.read_write_paths
                .get_or_insert_with(Vec::new)
                .push(format!("/var/lib/app-{i}/{{data,cache}}/**"));
            p
        })
        .collect()
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    let batch = profiles(1000);
    let lines: usize = batch
        .iter()
        .map(|p| render_profile(p).expect("render").text.lines().count())
        .sum();
    println!("1,000 profiles of {} rule lines on average", lines / batch.len());
    // The parts of a render: the model's checks, then those plus the path grammar.
    c.bench_function("model validate 1,000", |b| {
        b.iter(|| {
            for p in &batch {
                black_box(black_box(p).validate());
            }
        })
    });
    c.bench_function("check_profile 1,000", |b| {
        b.iter(|| {
            for p in &batch {
                black_box(spo_apparmor::check_profile(black_box(p)));
            }
        })
    });
    c.bench_function("render 1,000 profiles", |b| {
        b.iter(|| {
            for p in &batch {
                black_box(render_profile(black_box(p)).expect("render"));
            }
        })
    });

    let validator = ParserValidator::default();
    match validator.available() {
        Ok(()) => {
            let mut group = c.benchmark_group("apparmor_parser");
            group.sample_size(20);
            group.bench_function("render + validate one profile", |b| {
                b.iter(|| black_box(render_and_check(&validator, black_box(&batch[0])).expect("valid")))
            });
            // The tool alone, side by side: the same text and flags, started directly, output
            // thrown away. The difference to the case above is what our side adds.
            let text = render_profile(&batch[0]).expect("render").text;
            let dir = tempfile::tempdir().expect("tempdir");
            let file = dir.path().join("profile");
            std::fs::write(&file, text).expect("write profile");
            group.bench_function("apparmor_parser alone on the same text", |b| {
                b.iter(|| {
                    let status = std::process::Command::new(&validator.parser)
                        .args(["-Q", "-K", "--features-file"])
                        .arg(&validator.features_file)
                        .args(["-o", "/dev/null"])
                        .arg(&file)
                        .status()
                        .expect("apparmor_parser runs");
                    assert!(status.success(), "apparmor_parser refused the rendered profile");
                })
            });
            group.finish();
        }
        Err(reason) => eprintln!("skipped: {reason}"),
    }
    c.final_summary();
}
