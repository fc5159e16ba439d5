//! Leases: at most one run at a time works on any account.
//!
//! Runs whose accounts overlap (the same day twice, a 1-shard and a 2-shard
//! run, a backfill beside the nightly run, a retried pod beside the one it
//! replaces) would otherwise delete each other's files, publish manifests
//! over each other and refresh the same rollups from each other's halves.
//! Shards of one Indexed Job own disjoint accounts and run side by side;
//! two runs of the same shard spec never do, because they rewrite the same
//! rollup parts and index.
//!
//! Each run writes its own lease object, `_leases/<run_id>.json` (shard,
//! accounts, days, host, expiry), and renews it every third of its TTL. The
//! protocol:
//!
//! 1. write my lease; list every lease;
//! 2. if no live lease overlaps mine: I hold the lease, work, and delete it
//!    at the end;
//! 3. if an older overlapping lease exists: delete mine, and watch (listing
//!    only, writing nothing) until no older overlapping lease is left; then
//!    go to 1;
//! 4. if only younger overlapping leases exist: keep mine and list again
//!    until they are gone (a younger one either is working, and will finish,
//!    or sees mine and backs off by rule 3).
//!
//! What must always hold: two overlapping runs never work at once. Of any
//! two, the one that lists last sees the other's lease (each writes before
//! it lists, and keeps its lease while it works), and rules 2–4 never let it
//! work beside a lease it sees. An older run never starves: a younger one
//! that backs off does not write again while the older lease exists.
//!
//! A lease whose expiry has passed belongs to a dead run (killed, lost) and
//! counts for nothing. Each host judges expiry by its own clock, so the
//! protocol assumes the hosts' clocks differ by far less than the TTL (NTP
//! keeps them within milliseconds; the default TTL is 30 s). A holder that cannot renew within two thirds of the
//! TTL closes its own write gate, so it has stopped writing before anyone
//! else may take over.

use std::time::Duration;

use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::aggregate::shard_of;
use crate::model::UnixMicros;
use crate::warehouse::gate::WriteGate;
use crate::warehouse::paths::{LeaseKey, RunId, ShardSpec};
use crate::warehouse::{self, Warehouse};

/// How long leases live and how long a run waits for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    /// A lease not renewed for this long is dead.
    pub ttl: Duration,
    /// Longest wait for overlapping runs to finish before giving up.
    pub wait: Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            ttl: Duration::from_secs(30),
            wait: Duration::from_secs(10 * 60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("reading or writing leases failed")]
    Store(#[from] warehouse::Error),
    #[error("lease {key} is not valid: {reason}")]
    Bad { key: String, reason: String },
    #[error(
        "{} holds accounts of this run (waited {}s, --lease-wait); rerun when it is done",
        .holders.join("; "), .waited.as_secs()
    )]
    Busy { holders: Vec<String>, waited: Duration },
}

/// What a lease says about its run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub run_id: RunId,
    pub shard: String,
    /// Explicit accounts (`--accounts`); `None`: every account of the shard.
    pub accounts: Option<Vec<i64>>,
    pub days: Vec<NaiveDate>,
    pub host: String,
    pub pid: u32,
    /// Unix microseconds.
    pub expires_at: UnixMicros,
}

impl LeaseRecord {
    fn shard_spec(&self) -> Option<ShardSpec> {
        self.shard.parse().ok()
    }

    /// Whether two runs may touch the same account, or the same objects of
    /// one shard spec.
    pub fn overlaps(&self, other: &LeaseRecord) -> bool {
        let (Some(a), Some(b)) = (self.shard_spec(), other.shard_spec()) else {
            return true;
        };
        let owns = |r: &LeaseRecord, spec: ShardSpec, id: i64| {
            shard_of(id, spec.count) == spec.index && r.accounts.as_ref().is_none_or(|list| list.contains(&id))
        };
        let both_own = |id: &i64| owns(self, a, *id) && owns(other, b, *id);
        // One shard spec's runs rewrite the same rollup parts and index
        // (read, change, put), whatever their accounts.
        if a == b {
            return true;
        }
        match (&self.accounts, &other.accounts) {
            // Shards of one count own disjoint accounts; of two counts they
            // share some, in any real fleet.
            (None, None) => a.count != b.count || a.index == b.index,
            (Some(list), _) | (None, Some(list)) => list.iter().any(both_own),
        }
    }

    fn is_live(&self, now: UnixMicros) -> bool {
        self.expires_at > now
    }

    fn describe(&self) -> String {
        let days = match (self.days.first(), self.days.last()) {
            (Some(first), Some(last)) if first != last => format!("{first}..{last}"),
            (Some(first), _) => first.to_string(),
            _ => "no days".into(),
        };
        format!(
            "run {} (shard {}, days {days}, host {} pid {})",
            self.run_id, self.shard, self.host, self.pid
        )
    }
}

fn now_micros() -> UnixMicros {
    Utc::now().timestamp_micros()
}

/// A held lease: renewed in the background until released.
pub struct Lease {
    key: String,
    renewer: tokio::task::JoinHandle<()>,
    /// Closed when the lease could not be renewed in time.
    pub lost: WriteGate,
    warehouse: Warehouse,
}

impl Lease {
    /// Stops renewing and deletes the lease.
    pub async fn release(self) {
        self.renewer.abort();
        if let Err(e) = self.warehouse.delete(&self.key).await {
            tracing::warn!(key = %self.key, error = %e, "Releasing the lease failed; it expires by itself.");
        }
    }
}

async fn write(warehouse: &Warehouse, record: &mut LeaseRecord, ttl: Duration) -> Result<(), Error> {
    record.expires_at = now_micros() + ttl.as_micros() as i64;
    let key = LeaseKey {
        run_id: record.run_id.clone(),
    };
    let json = serde_json::to_vec_pretty(record).expect("leases serialize");
    warehouse.put(&key.relative(), json.into()).await?;
    Ok(())
}

/// Every other live lease that overlaps `mine`. Dead leases are deleted on
/// the way (best effort: a dead run cannot do it).
async fn overlapping(warehouse: &Warehouse, mine: &LeaseRecord) -> Result<Vec<LeaseRecord>, Error> {
    let now = now_micros();
    let mut out = Vec::new();
    for key in warehouse.list(LeaseKey::FOLDER).await? {
        let Ok(parsed) = LeaseKey::parse(&key) else { continue };
        if parsed.run_id == mine.run_id {
            continue;
        }
        // Released between the listing and this read.
        let Some(bytes) = warehouse.get(&key).await? else {
            continue;
        };
        let record: LeaseRecord = serde_json::from_slice(&bytes).map_err(|e| Error::Bad {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        if !record.is_live(now) {
            let _ = warehouse.delete(&key).await;
            continue;
        }
        if record.overlaps(mine) {
            out.push(record);
        }
    }
    Ok(out)
}

/// Takes the lease of `record`'s run (see the module docs), waiting up to
/// `settings.wait` for overlapping runs. `warehouse` must not be gated by
/// the run's stop gate: a stopped run still releases its lease.
pub async fn acquire(warehouse: &Warehouse, mut record: LeaseRecord, settings: LeaseSettings) -> Result<Lease, Error> {
    let started = std::time::Instant::now();
    let key = LeaseKey {
        run_id: record.run_id.clone(),
    }
    .relative();
    let mut pause = Duration::from_millis(100);
    let mut announced = false;
    loop {
        write(warehouse, &mut record, settings.ttl).await?;
        let mut others = overlapping(warehouse, &record).await?;
        if others.is_empty() {
            break;
        }
        if others.iter().any(|o| o.run_id < record.run_id) {
            // Rule 3: back off, and write nothing while an older one lives.
            warehouse.delete(&key).await?;
            while others.iter().any(|o| o.run_id < record.run_id) {
                if started.elapsed() >= settings.wait {
                    return Err(busy(&others, started.elapsed()));
                }
                if !announced {
                    tracing::info!(holders = %describe_all(&others), "Waiting for overlapping runs to finish.");
                    announced = true;
                }
                tokio::time::sleep(jittered(pause)).await;
                pause = (pause * 2).min(Duration::from_secs(2));
                others = overlapping(warehouse, &record).await?;
            }
            continue;
        }
        // Rule 4: only younger ones; keep mine (renewed by the next write).
        if started.elapsed() >= settings.wait {
            warehouse.delete(&key).await?;
            return Err(busy(&others, started.elapsed()));
        }
        if !announced {
            tracing::info!(holders = %describe_all(&others), "Waiting for overlapping runs to finish.");
            announced = true;
        }
        tokio::time::sleep(jittered(pause).min(settings.ttl / 3)).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
    tracing::debug!(%key, waited_ms = started.elapsed().as_millis() as u64, "Lease taken.");

    let lost = WriteGate::new();
    let renewer = {
        let (warehouse, lost, ttl) = (warehouse.clone(), lost.clone(), settings.ttl);
        let mut record = record.clone();
        tokio::spawn(async move {
            let mut renewed = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(ttl / 3).await;
                let attempt = tokio::time::timeout(ttl / 3, write(&warehouse, &mut record, ttl)).await;
                match attempt {
                    Ok(Ok(())) => renewed = tokio::time::Instant::now(),
                    Ok(Err(e)) => tracing::warn!(error = %e, "Renewing the lease failed; retrying."),
                    Err(_) => tracing::warn!("Renewing the lease timed out; retrying."),
                }
                if renewed.elapsed() >= ttl * 2 / 3 {
                    tracing::error!("The lease could not be renewed in time: stopping all writes.");
                    lost.close();
                    return;
                }
            }
        })
    };
    Ok(Lease {
        key,
        renewer,
        lost,
        warehouse: warehouse.clone(),
    })
}

fn describe_all(records: &[LeaseRecord]) -> String {
    records.iter().map(LeaseRecord::describe).collect::<Vec<_>>().join("; ")
}

fn busy(others: &[LeaseRecord], waited: Duration) -> Error {
    Error::Busy {
        holders: others.iter().map(LeaseRecord::describe).collect(),
        waited,
    }
}

/// 75–125% of `d`, so that runs that wait together do not poll together.
fn jittered(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    d.mul_f64(0.75 + f64::from(nanos % 1000) / 2000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(shard: &str, accounts: Option<Vec<i64>>) -> LeaseRecord {
        LeaseRecord {
            run_id: RunId::new(Utc::now(), 1),
            shard: shard.into(),
            accounts,
            days: vec![],
            host: "h".into(),
            pid: 1,
            expires_at: 0,
        }
    }

    #[test]
    fn overlap_follows_the_accounts_each_run_owns() {
        let whole = record("s0of1", None);
        assert!(whole.overlaps(&record("s0of1", None)));
        assert!(whole.overlaps(&record("s1of2", None)));
        assert!(record("s0of2", None).overlaps(&record("s0of2", None)));
        assert!(!record("s0of2", None).overlaps(&record("s1of2", None)));
        // Explicit accounts overlap where both runs would take one.
        let a: Vec<i64> = (1..50).filter(|id| shard_of(*id, 2) == 0).collect();
        let b: Vec<i64> = (1..50).filter(|id| shard_of(*id, 2) == 1).collect();
        // Disjoint accounts of one spec still share its rollup parts and index.
        assert!(record("s0of1", Some(a.clone())).overlaps(&record("s0of1", Some(b.clone()))));
        assert!(!record("s0of2", Some(a.clone())).overlaps(&record("s0of1", Some(b.clone()))));
        assert!(record("s0of1", Some(a.clone())).overlaps(&record("s0of1", Some(vec![a[0]]))));
        assert!(!record("s0of1", Some(a.clone())).overlaps(&record("s1of2", None)));
        assert!(record("s0of1", Some(b.clone())).overlaps(&record("s1of2", None)));
        assert!(record("s1of2", None).overlaps(&record("s0of1", Some(b.clone()))));
        assert!(!record("s0of2", Some(b.clone())).overlaps(&record("s0of1", None)));
    }

    #[tokio::test]
    async fn an_overlapping_run_waits_then_gives_up_naming_the_holder_and_a_disjoint_one_does_not_wait() {
        let temp = crate::warehouse::testing::TempWarehouse::new("lease");
        let wh = temp.wh.clone();
        let settings = LeaseSettings {
            ttl: Duration::from_secs(5),
            wait: Duration::from_millis(300),
        };
        let first = acquire(&wh, record("s0of2", None), settings).await.unwrap();
        let mut second = record("s0of1", None);
        second.run_id = RunId::new(Utc::now() + chrono::Duration::seconds(1), 2);
        let err = acquire(&wh, second.clone(), settings).await.err().expect("busy");
        assert!(err.to_string().contains("shard s0of2"), "{err}");
        let disjoint = acquire(&wh, record("s1of2", None), settings).await.unwrap();
        first.release().await;
        disjoint.release().await;
        acquire(&wh, second, settings).await.unwrap().release().await;
        assert!(wh.list(LeaseKey::FOLDER).await.unwrap().is_empty());

        // A dead run's lease (expired) counts for nothing, though older.
        let mut dead = record("s0of1", None);
        dead.run_id = RunId::new(Utc::now() - chrono::Duration::minutes(1), 9);
        dead.expires_at = now_micros() - 1;
        let key = LeaseKey {
            run_id: dead.run_id.clone(),
        }
        .relative();
        wh.put(&key, serde_json::to_vec(&dead).unwrap().into()).await.unwrap();
        acquire(&wh, record("s0of1", None), settings)
            .await
            .unwrap()
            .release()
            .await;
    }

    /// Rule 4 and rule 3 of the module docs, one after the other: an older
    /// run waits for a younger holder, a younger run for an older one, and
    /// either, when its turn comes, works under a lease of its own (which
    /// the next overlapping run must see).
    #[tokio::test]
    async fn a_run_waits_for_an_overlapping_holder_older_or_younger_and_then_holds_its_own_lease() {
        let temp = crate::warehouse::testing::TempWarehouse::new("lease-turns");
        let wh = temp.wh.clone();
        let settings = LeaseSettings {
            ttl: Duration::from_secs(5),
            wait: Duration::from_secs(20),
        };
        let now = Utc::now();
        let aged = |seconds: i64, random: u32| {
            let mut r = record("s0of1", None);
            r.run_id = RunId::new(now + chrono::Duration::seconds(seconds), random);
            r
        };
        let key = |r: &LeaseRecord| {
            LeaseKey {
                run_id: r.run_id.clone(),
            }
            .relative()
        };
        for (holder, waiter) in [(aged(10, 1), aged(0, 2)), (aged(0, 3), aged(10, 4))] {
            let held = acquire(&wh, holder, settings).await.unwrap();
            let waiting = tokio::spawn({
                let (wh, waiter) = (wh.clone(), waiter.clone());
                async move { acquire(&wh, waiter, settings).await }
            });
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(!waiting.is_finished(), "{} worked beside a holder", waiter.run_id);
            held.release().await;
            let lease = tokio::time::timeout(Duration::from_secs(10), waiting)
                .await
                .expect("the waiter's turn came")
                .unwrap()
                .unwrap();
            assert_eq!(
                wh.list(LeaseKey::FOLDER).await.unwrap(),
                vec![key(&waiter)],
                "the waiter works under its own lease"
            );
            lease.release().await;
        }
    }

    /// A holder's lease never comes near its expiry while the store takes
    /// the renewals; once it refuses them, the run's `lost` gate closes
    /// before the last renewal expires, so before anyone may take over.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_held_lease_is_renewed_ahead_of_its_expiry_and_one_that_cannot_be_closes_the_gate() {
        let temp = crate::warehouse::testing::TempWarehouse::new("lease-renew");
        let store_gate = WriteGate::new();
        let ttl = Duration::from_millis(900);
        let settings = LeaseSettings {
            ttl,
            wait: Duration::from_secs(1),
        };
        let mine = record("s0of1", None);
        let key = LeaseKey {
            run_id: mine.run_id.clone(),
        }
        .relative();
        let lease = acquire(&temp.wh.clone().gated(&store_gate), mine, settings)
            .await
            .unwrap();
        let watched = std::time::Instant::now();
        while watched.elapsed() < ttl * 3 {
            let bytes = temp
                .wh
                .get(&key)
                .await
                .unwrap()
                .expect("the held lease is in the store");
            let stored: LeaseRecord = serde_json::from_slice(&bytes).unwrap();
            let left = Duration::from_micros(u64::try_from(stored.expires_at - now_micros()).unwrap_or(0));
            assert!(left >= ttl / 3, "the lease had {left:?} left of {ttl:?}");
            assert!(!lease.lost.is_closed());
            tokio::time::sleep(ttl / 30).await;
        }
        store_gate.close();
        tokio::time::timeout(ttl * 2, lease.lost.closed())
            .await
            .expect("a lease that cannot be renewed closes the run's gate");
        let closed_at = now_micros();
        let bytes = temp
            .wh
            .get(&key)
            .await
            .unwrap()
            .expect("the last renewal is in the store");
        let stored: LeaseRecord = serde_json::from_slice(&bytes).unwrap();
        assert!(
            closed_at < stored.expires_at,
            "the gate closed {} µs after the lease expired",
            closed_at - stored.expires_at
        );
        lease.release().await;
    }
}
