//! speedup-paged vs redb, heed (LMDB), and std's `HashMap` / `Vec` as the in-memory limit.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use heed::types::{Str, U64};
use heed::{CommitOrAbort, EnvOpenOptions};
use redb::{ReadableDatabase, TableDefinition};
use speedup_paged::{DiskDict, DiskList, Options};

use crate::harness::{Config, key, keys, rate, report, timed};
use crate::memory::{self, Rss};

const U64_TABLE: TableDefinition<'_, u64, u64> = TableDefinition::new("t");
const STR_TABLE: TableDefinition<'_, u64, &str> = TableDefinition::new("t");
type Be = heed::byteorder::BigEndian;

trait Store {
    const NAME: &'static str;
    /// Bulk insert, then one durable commit; returns the time it all took.
    fn load(dir: &std::path::Path, keys: &[u64], value: &dyn Fn(u64) -> Value) -> (Self, Duration)
    where
        Self: Sized;
    /// Random point reads; returns how many were found (so nothing is optimized away).
    fn gets(&self, keys: &[u64]) -> u64;
}

#[derive(Clone)]
enum Value {
    U64(u64),
    Str(String),
}

fn value_u64(k: u64) -> Value {
    Value::U64(k.wrapping_mul(3))
}

fn value_str(k: u64) -> Value {
    Value::Str(format!("{k:0>100}"))
}

struct Ours(Option<DiskDict<u64, u64>>, Option<DiskDict<u64, String>>);

impl Store for Ours {
    const NAME: &'static str = "speedup-paged";
    fn load(dir: &std::path::Path, keys: &[u64], value: &dyn Fn(u64) -> Value) -> (Self, Duration) {
        let opts = Options::new().location(dir);
        match value(0) {
            Value::U64(_) => {
                let mut d = DiskDict::open_with("bench", &opts).unwrap();
                let ((), took) = timed(|| {
                    for &k in keys {
                        let Value::U64(v) = value(k) else { unreachable!() };
                        d.insert(k, v).unwrap();
                    }
                    d.flush().unwrap();
                });
                (Ours(Some(d), None), took)
            }
            Value::Str(_) => {
                let mut d = DiskDict::open_with("bench", &opts).unwrap();
                let ((), took) = timed(|| {
                    for &k in keys {
                        let Value::Str(v) = value(k) else { unreachable!() };
                        d.insert(k, v).unwrap();
                    }
                    d.flush().unwrap();
                });
                (Ours(None, Some(d)), took)
            }
        }
    }
    fn gets(&self, keys: &[u64]) -> u64 {
        let mut found = 0;
        if let Some(d) = &self.0 {
            for k in keys {
                found += u64::from(d.get_archived(k).unwrap().is_some_and(|v| *v == k.wrapping_mul(3)));
            }
        }
        if let Some(d) = &self.1 {
            for k in keys {
                found += u64::from(d.get_archived(k).unwrap().is_some_and(|v| v.len() == 100));
            }
        }
        found
    }
}

struct Redb(redb::Database, bool);

impl Store for Redb {
    const NAME: &'static str = "redb";
    fn load(dir: &std::path::Path, keys: &[u64], value: &dyn Fn(u64) -> Value) -> (Self, Duration) {
        let db = redb::Database::create(dir.join("bench.redb")).unwrap();
        let is_u64 = matches!(value(0), Value::U64(_));
        let ((), took) = timed(|| {
            let tx = db.begin_write().unwrap();
            {
                if is_u64 {
                    let mut t = tx.open_table(U64_TABLE).unwrap();
                    for &k in keys {
                        let Value::U64(v) = value(k) else { unreachable!() };
                        t.insert(k, v).unwrap();
                    }
                } else {
                    let mut t = tx.open_table(STR_TABLE).unwrap();
                    for &k in keys {
                        let Value::Str(v) = value(k) else { unreachable!() };
                        t.insert(k, v.as_str()).unwrap();
                    }
                }
            }
            tx.commit().unwrap();
        });
        (Redb(db, is_u64), took)
    }
    fn gets(&self, keys: &[u64]) -> u64 {
        let tx = self.0.begin_read().unwrap();
        let mut found = 0;
        if self.1 {
            let t = tx.open_table(U64_TABLE).unwrap();
            for &k in keys {
                found += u64::from(t.get(k).unwrap().is_some_and(|v| v.value() == k.wrapping_mul(3)));
            }
        } else {
            let t = tx.open_table(STR_TABLE).unwrap();
            for &k in keys {
                found += u64::from(t.get(k).unwrap().is_some_and(|v| v.value().len() == 100));
            }
        }
        found
    }
}

enum HeedDb {
    U64(heed::Database<'static, U64<Be>, U64<Be>>),
    Str(heed::Database<'static, U64<Be>, Str>),
}

struct Heed(&'static heed::Env, HeedDb);

impl Store for Heed {
    const NAME: &'static str = "heed (LMDB)";
    fn load(dir: &std::path::Path, keys: &[u64], value: &dyn Fn(u64) -> Value) -> (Self, Duration) {
        // SAFETY: the environment's folder is a fresh temporary folder only this process opens.
        let env = unsafe { EnvOpenOptions::new().map_size(16 << 30).max_dbs(1).open(dir).unwrap() };
        // Leaked so that the databases can be 'static; a handful per benchmark run.
        let env: &'static heed::Env = Box::leak(Box::new(env));
        let is_u64 = matches!(value(0), Value::U64(_));
        let ((), took);
        let db = if is_u64 {
            let wtxn = env.write_txn().unwrap();
            let db = env
                .create_databases_and_commit(wtxn, |o, w| {
                    o.create_database::<U64<Be>, U64<Be>>(w, Some("t")).map(CommitOrAbort::<_, ()>::Commit)
                })
                .unwrap()
                .unwrap_commit();
            ((), took) = timed(|| {
                let mut w = env.write_txn().unwrap();
                for &k in keys {
                    let Value::U64(v) = value(k) else { unreachable!() };
                    db.put(&mut w, &k, &v).unwrap();
                }
                w.commit().unwrap();
            });
            HeedDb::U64(db)
        } else {
            let wtxn = env.write_txn().unwrap();
            let db = env
                .create_databases_and_commit(wtxn, |o, w| {
                    o.create_database::<U64<Be>, Str>(w, Some("t")).map(CommitOrAbort::<_, ()>::Commit)
                })
                .unwrap()
                .unwrap_commit();
            ((), took) = timed(|| {
                let mut w = env.write_txn().unwrap();
                for &k in keys {
                    let Value::Str(v) = value(k) else { unreachable!() };
                    db.put(&mut w, &k, &v).unwrap();
                }
                w.commit().unwrap();
            });
            HeedDb::Str(db)
        };
        (Heed(env, db), took)
    }
    fn gets(&self, keys: &[u64]) -> u64 {
        let r = self.0.read_txn().unwrap();
        let mut found = 0;
        match &self.1 {
            HeedDb::U64(db) => {
                for k in keys {
                    found += u64::from(db.get(&r, k).unwrap().is_some_and(|v| v == k.wrapping_mul(3)));
                }
            }
            HeedDb::Str(db) => {
                for k in keys {
                    found += u64::from(db.get(&r, k).unwrap().is_some_and(|v| v.len() == 100));
                }
            }
        }
        found
    }
}

struct Fjall(fjall::Database, fjall::Keyspace, bool);

impl Store for Fjall {
    const NAME: &'static str = "fjall (LSM)";
    fn load(dir: &std::path::Path, keys: &[u64], value: &dyn Fn(u64) -> Value) -> (Self, Duration) {
        let db = fjall::Database::builder(dir.join("fjall")).open().unwrap();
        let ks = db.keyspace("t", fjall::KeyspaceCreateOptions::default).unwrap();
        let is_u64 = matches!(value(0), Value::U64(_));
        let ((), took) = timed(|| {
            for &k in keys {
                match value(k) {
                    Value::U64(v) => ks.insert(k.to_be_bytes(), v.to_le_bytes()).unwrap(),
                    Value::Str(v) => ks.insert(k.to_be_bytes(), v.as_bytes()).unwrap(),
                }
            }
            db.persist(fjall::PersistMode::SyncAll).unwrap();
        });
        (Fjall(db, ks, is_u64), took)
    }
    fn gets(&self, keys: &[u64]) -> u64 {
        let mut found = 0;
        for &k in keys {
            let v = self.1.get(k.to_be_bytes()).unwrap();
            found += u64::from(v.is_some_and(|v| if self.2 { v.len() == 8 } else { v.len() == 100 }));
        }
        let _ = &self.0;
        found
    }
}

struct Memory(HashMap<u64, Value>);

impl Store for Memory {
    const NAME: &'static str = "std HashMap (RAM)";
    fn load(_: &std::path::Path, keys: &[u64], value: &dyn Fn(u64) -> Value) -> (Self, Duration) {
        let (m, took) = timed(|| keys.iter().map(|&k| (k, value(k))).collect::<HashMap<_, _>>());
        (Memory(m), took)
    }
    fn gets(&self, keys: &[u64]) -> u64 {
        keys.iter().filter(|k| self.0.contains_key(k)).count() as u64
    }
}

/// Which keys a workload inserts: random 64-bit keys, or `0..n` in order (ids, counters,
/// timestamps: what many users load).
#[derive(Clone, Copy)]
enum Keys {
    Random,
    Sequential,
}

fn bench_store<S: Store>(c: &Config, label: &str, n: usize, value: &dyn Fn(u64) -> Value) {
    bench_keys::<S>(c, label, n, value, Keys::Random);
}

fn bench_keys<S: Store>(c: &Config, label: &str, n: usize, value: &dyn Fn(u64) -> Value, pattern: Keys) {
    let inserted = match pattern {
        Keys::Random => keys(n, 1),
        Keys::Sequential => (0..n as u64).collect(),
    };
    let mut probe = inserted.clone();
    // Shuffle the probe order deterministically.
    let order = keys(n, 2);
    for i in (1..n).rev() {
        probe.swap(i, (order[i] % (i as u64 + 1)) as usize);
    }
    let mut last = None;
    let insert = rate(c.runs, || {
        let dir = tempfile::tempdir().unwrap();
        let (store, took) = S::load(dir.path(), &inserted, value);
        last = Some((store, dir));
        (n as u64, took)
    });
    report("paged", &format!("{label}: bulk insert + commit"), S::NAME, insert, "ops/s", c.runs, true);
    let (store, _dir) = last.unwrap();
    let get = rate(c.runs, || {
        let (found, took) = timed(|| store.gets(&probe));
        assert_eq!(found, n as u64, "{} lost entries", S::NAME);
        (n as u64, took)
    });
    report("paged", &format!("{label}: random get"), S::NAME, get, "ops/s", c.runs, true);
}

fn bench_list(c: &Config) {
    let n = c.size(10_000_000);
    let probe: Vec<usize> = keys(n, 3).into_iter().map(|k| (k % n as u64) as usize).collect();
    let mut kept = None;
    let push = rate(c.runs, || {
        let dir = tempfile::tempdir().unwrap();
        let mut l: DiskList<u64> =
            DiskList::open_with("bench", &Options::new().location(dir.path())).unwrap();
        let ((), took) = timed(|| {
            for i in 0..n as u64 {
                l.push(i).unwrap();
            }
            l.flush().unwrap();
        });
        kept = Some((l, dir));
        (n as u64, took)
    });
    report("paged", "DiskList<u64>: push + flush", "speedup-paged", push, "ops/s", c.runs, true);
    let (l, _dir) = kept.unwrap();
    let get = rate(c.runs, || {
        let (sum, took) =
            timed(|| probe.iter().map(|&i| u64::from(*l.get_archived(i).unwrap().unwrap())).sum::<u64>());
        black_box(sum);
        (n as u64, took)
    });
    report("paged", "DiskList<u64>: random get", "speedup-paged", get, "ops/s", c.runs, true);

    let push = rate(c.runs, || {
        let (v, took) = timed(|| {
            let mut v = Vec::new();
            for i in 0..n as u64 {
                v.push(i);
            }
            v
        });
        black_box(v);
        (n as u64, took)
    });
    report("paged", "DiskList<u64>: push + flush", "std Vec (RAM)", push, "ops/s", c.runs, true);
    let v: Vec<u64> = (0..n as u64).collect();
    let get = rate(c.runs, || {
        let (sum, took) = timed(|| probe.iter().map(|&i| v[black_box(i)]).sum::<u64>());
        black_box(sum);
        (n as u64, took)
    });
    report("paged", "DiskList<u64>: random get", "std Vec (RAM)", get, "ops/s", c.runs, true);
}

pub(crate) fn run(c: &Config) {
    eprintln!("speedup-paged ({} runs each)", c.runs);
    let n = c.size(1_000_000);
    let u64_label = format!("{}k u64 -> u64", n / 1000);
    let str_label = format!("{}k u64 -> 100-byte String", n / 1000);
    bench_store::<Ours>(c, &u64_label, n, &value_u64);
    bench_store::<Redb>(c, &u64_label, n, &value_u64);
    bench_store::<Heed>(c, &u64_label, n, &value_u64);
    bench_store::<Fjall>(c, &u64_label, n, &value_u64);
    bench_store::<Memory>(c, &u64_label, n, &value_u64);
    let sequential = format!("{}k u64 -> u64, sequential keys 0..n", n / 1000);
    bench_keys::<Ours>(c, &sequential, n, &value_u64, Keys::Sequential);
    bench_keys::<Redb>(c, &sequential, n, &value_u64, Keys::Sequential);
    bench_keys::<Heed>(c, &sequential, n, &value_u64, Keys::Sequential);
    bench_store::<Ours>(c, &str_label, n, &value_str);
    bench_store::<Redb>(c, &str_label, n, &value_str);
    bench_store::<Heed>(c, &str_label, n, &value_str);
    bench_store::<Fjall>(c, &str_label, n, &value_str);
    bench_store::<Memory>(c, &str_label, n, &value_str);
    bench_list(c);
    if !c.quick {
        memory_run(10_000_000);
    }
}

/// Memory of a 10M-entry load + reads, each store in its own process: peak RssAnon and
/// RssFile of the workload (as the `memory` module counts them), and the process's peak RSS
/// (the kernel's VmHWM, start-up included: exact, where sampling can miss a short spike).
fn memory_run(n: usize) {
    let label = format!("{}M u64 -> u64", n / 1_000_000);
    let mut peaks: Vec<(&str, Rss)> = Vec::new();
    for name in ["speedup-paged", "redb", "heed (LMDB)"] {
        let out = memory::run_child(&["memory", name, &n.to_string()]);
        let hwm = out
            .lines()
            .find_map(|l| l.strip_prefix("hwm-mib "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN);
        report("paged", &format!("{label}: peak RSS"), name, (hwm, hwm, hwm), "MiB", 1, false);
        peaks.push((name, Rss::parse(&out)));
    }
    memory::report_rows("paged", &label, &peaks);
}

/// `--child memory NAME N`: load N entries into NAME, read them all back, print the peaks.
pub(crate) fn child(args: &[String]) {
    let (name, n) = (args[1].as_str(), args[2].parse::<usize>().unwrap());
    let dir = tempfile::tempdir().unwrap();
    // Keys are computed, not stored: the measurement is the store's memory, not ours.
    let ks = (0..n as u64).map(|i| key(1, i));
    let ((), peaks) = memory::peak(|| match name {
        "speedup-paged" => {
            let mut d: DiskDict<u64, u64> =
                DiskDict::open_with("mem", &Options::new().location(dir.path())).unwrap();
            for k in ks.clone() {
                d.insert(k, k).unwrap();
            }
            d.flush().unwrap();
            for k in ks {
                assert!(d.get_archived(&k).unwrap().is_some());
            }
        }
        "redb" => {
            let db = redb::Database::create(dir.path().join("m.redb")).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut t = tx.open_table(U64_TABLE).unwrap();
                for k in ks.clone() {
                    t.insert(k, k).unwrap();
                }
            }
            tx.commit().unwrap();
            let r = db.begin_read().unwrap();
            let t = r.open_table(U64_TABLE).unwrap();
            for k in ks {
                assert!(t.get(k).unwrap().is_some());
            }
        }
        _ => {
            // SAFETY: a fresh temporary folder only this process opens.
            let env =
                unsafe { EnvOpenOptions::new().map_size(64 << 30).max_dbs(1).open(dir.path()).unwrap() };
            let wtxn = env.write_txn().unwrap();
            let db = env
                .create_databases_and_commit(wtxn, |o, w| {
                    o.create_database::<U64<Be>, U64<Be>>(w, Some("t")).map(CommitOrAbort::<_, ()>::Commit)
                })
                .unwrap()
                .unwrap_commit();
            let mut w = env.write_txn().unwrap();
            for k in ks.clone() {
                db.put(&mut w, &k, &k).unwrap();
            }
            w.commit().unwrap();
            let r = env.read_txn().unwrap();
            for k in ks {
                assert!(db.get(&r, &k).unwrap().is_some());
            }
        }
    });
    println!("hwm-mib {}", memory::status_kib("VmHWM:").map_or(f64::NAN, |kib| kib as f64 / 1024.0));
    println!("{peaks}");
}
