//! Upload throughput: 200 MiB through veil's streaming uploader (encrypted spill segments of
//! one part each → S3 multipart with a SHA-256 per part → confirmation → shred) against
//! `aws s3 cp` of the same bytes with the same part size, to the same server, in one run.
//! Run by `scripts/bench-upload.sh`, which starts Garage and sets the environment
//! (AWS_* with the write-only key, BENCH_BUCKET, BENCH_FILE).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use veil::spill::SpillKey;
use veil::upload::stream::{ObjectStream, RetryPolicy};
use veil::upload::Destination;

const MIB: usize = 1 << 20;

fn main() {
    let bucket = std::env::var("BENCH_BUCKET").expect("BENCH_BUCKET");
    let file = std::env::var("BENCH_FILE").expect("BENCH_FILE");
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(2);
    let data = std::fs::read(&file).expect("BENCH_FILE readable");
    let spill = tempfile::tempdir().expect("spill dir");
    let mut dest = Destination::parse(&format!("s3://{bucket}/bench/")).expect("destination");
    dest.set_part_size(8 * MIB);
    let mb = data.len() as f64 / MIB as f64;
    println!("{:<8} {:>8} {:>10}", "tool", "wall_s", "MiB/s");
    let (mut veil_s, mut aws_s) = (0.0, 0.0);
    for round in 0..rounds {
        let key = SpillKey::generate().expect("spill key");
        let object = format!("bench/veil-{round}.bin");
        let t = Instant::now();
        let d = dest.clone();
        let k = object.clone();
        let mut s = ObjectStream::start(
            Box::new(move || d.begin(&k, "application/octet-stream")),
            (dest.first_part_size(), dest.part_size()),
            spill.path(),
            &key,
            RetryPolicy::default(),
            Arc::new(AtomicBool::new(false)),
        );
        // As the muxer would: 64 KiB writes, sealed into the spill every 256 KiB.
        for chunk in data.chunks(64 * 1024) {
            s.write(chunk).expect("write");
            if s.buffered() >= 256 * 1024 {
                s.flush().expect("flush");
            }
        }
        let stored = s.finish().expect("upload confirmed");
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(stored.size as usize, data.len());
        println!("{:<8} {:>8.2} {:>10.1}", "veil", secs, mb / secs);
        veil_s += secs;

        let t = Instant::now();
        let st = std::process::Command::new("aws")
            .args(["s3", "cp", "--only-show-errors", &file, &format!("s3://{bucket}/bench/aws-{round}.bin")])
            .status()
            .expect("aws cli");
        assert!(st.success(), "aws s3 cp failed");
        let secs = t.elapsed().as_secs_f64();
        println!("{:<8} {:>8.2} {:>10.1}", "aws-cli", secs, mb / secs);
        aws_s += secs;
    }
    println!(
        "mean over {rounds} rounds of {mb:.0} MiB: veil {:.1} MiB/s, aws s3 cp {:.1} MiB/s; ratio veil/aws throughput {:.2}",
        mb * rounds as f64 / veil_s,
        mb * rounds as f64 / aws_s,
        aws_s / veil_s
    );
}
