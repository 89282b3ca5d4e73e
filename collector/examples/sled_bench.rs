//! Compares ways of writing 1,000-entry batches to sled (for choosing the journal's write path).
use sled::Transactional;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = sled::open(dir.path())?;
    let value = vec![7u8; 280];
    let n = 200_000u64;
    for mode in ["transaction", "batch", "insert"] {
        let t = db.open_tree(mode)?;
        let d = db.open_tree(format!("{mode}-d"))?;
        let start = Instant::now();
        let mut seq = 0u64;
        while seq < n {
            match mode {
                "transaction" => {
                    (&t, &d)
                        .transaction(|(t, d)| {
                            for i in 0..1000u64 {
                                t.insert(&(seq + i).to_be_bytes(), value.as_slice())?;
                            }
                            d.insert(b"k", &(seq + 1000).to_be_bytes())?;
                            Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
                        })
                        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                }
                "batch" => {
                    let mut b = sled::Batch::default();
                    for i in 0..1000u64 {
                        b.insert(&(seq + i).to_be_bytes(), value.as_slice());
                    }
                    b.insert(&[0xff, b'd'], &(seq + 1000).to_be_bytes());
                    t.apply_batch(b)?;
                }
                _ => {
                    for i in 0..1000u64 {
                        t.insert((seq + i).to_be_bytes(), value.as_slice())?;
                    }
                }
            }
            db.flush()?;
            seq += 1000;
        }
        let s = start.elapsed().as_secs_f64();
        println!("{mode:12} {n} entries: {s:.2} s, {:.0}/s", n as f64 / s);
    }
    Ok(())
}
