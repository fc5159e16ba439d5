//! Sorted runs of aggregate entries spilled to local files, and read back
//! for the merge.
//!
//! A run file is a sequence of blocks of up to [`BLOCK`] entries, each a
//! little-endian `u32` byte length and then its entries, and ends with a
//! length of zero, so that a file cut at a block's end is known to be cut
//! rather than read as a shorter run. Every field of an entry (key
//! `[i64; 4]`, then value `[i64; 2]`) as the zigzag LEB128 varint of its
//! difference from the same field of the entry before (of zero, for a
//! block's first). In a sorted run the ids and instants change little from
//! entry to entry, so an entry takes about a quarter of its 48 bytes in
//! memory: the 8M-message day of `bench/run_vs_copy.sh` spills 104 MB
//! instead of 408, and on a cluster just seeded, as the benchmarks' are,
//! writing those files into the page cache cost the job more than the
//! coding does (`bench/RESULTS.md`, session 31).
//!
//! What must always hold: a day's folder is removed when the day is done or
//! has failed, or, when its process was killed, by the next run that uses
//! the same spill folder; a folder whose process lives is never touched by
//! another (its lock file says so, see [`SpillFolder`]).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::aggregate::Entry;

/// Entries a block holds at most: a reader keeps one block's bytes, and a
/// big day merges a few hundred runs at once.
const BLOCK: usize = 256;
/// The most bytes an entry's six varints can take.
const MAX_ENTRY_BYTES: usize = 6 * 10;
/// The length that ends a run, after its last block.
const END: u32 = 0;

/// One sorted run of entries, spilled or in memory, as the merge takes it.
pub type EntryRun = Box<dyn Iterator<Item = Entry> + Send>;

/// The folder a day spills under. Each `SpillRuns` removes only its own
/// subfolder, so the day's folder itself goes on drop, when the day is done
/// or has failed: a spilling run leaves nothing behind.
///
/// A killed process drops nothing, so the folder also holds a lock file,
/// locked (`flock`) for as long as the folder is in use: the OS releases it
/// when its process dies, however it dies, and [`remove_abandoned`] then
/// knows the folder is nobody's. Runs of other warehouses may share the
/// spill folder, so a lease (kept in a warehouse) could not say the same.
pub struct SpillFolder {
    path: PathBuf,
    /// Held until the folder is removed (fields drop after `Drop::drop`).
    _lock: Option<File>,
}

/// The name every day's spill folder starts with.
pub const FOLDER_PREFIX: &str = "account-usage-spill-";
const LOCK: &str = ".lock";

impl SpillFolder {
    /// The folder at `path` (named with [`FOLDER_PREFIX`]), created and
    /// locked now. Without a lock (an unwritable spill folder is an error
    /// only once a day spills) it is never removed by another run.
    pub fn new(path: PathBuf) -> Self {
        let lock = Self::lock(&path)
            .inspect_err(|e| tracing::debug!(path = %path.display(), error = %e, "The spill folder is not locked."))
            .ok();
        SpillFolder { path, _lock: lock }
    }

    /// Locks a file under another name and only then renames it to the
    /// lock's: a lock file that exists is always locked while its owner lives.
    fn lock(path: &Path) -> std::io::Result<File> {
        std::fs::create_dir_all(path)?;
        let staged = path.join(".lock-staged");
        let file = File::create(&staged)?;
        file.lock()?;
        std::fs::rename(&staged, path.join(LOCK))?;
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SpillFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Removes the day folders under `spill_dir` whose process is gone (a
/// SIGKILL, an OOM kill): those whose lock file can be locked. Folders
/// without a lock file are left alone. Returns the folders removed.
pub fn remove_abandoned(spill_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(spill_dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = entry.file_name().to_str().is_some_and(|n| n.starts_with(FOLDER_PREFIX));
        if !ours || !path.is_dir() {
            continue;
        }
        let Ok(lock) = File::open(path.join(LOCK)) else {
            continue;
        };
        // Held while removing, so that two runs sweeping do not both try.
        if lock.try_lock().is_ok() && std::fs::remove_dir_all(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// The spilled runs of one aggregate of one day. The folder is removed on drop.
pub struct SpillRuns {
    dir: PathBuf,
    files: Vec<PathBuf>,
}

impl SpillRuns {
    pub fn new(dir: PathBuf) -> Self {
        SpillRuns { dir, files: Vec::new() }
    }

    /// Whether no run was spilled.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn spill(&mut self, run: &[Entry]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(format!("run-{:05}.bin", self.files.len()));
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        let mut block = Vec::with_capacity(BLOCK * MAX_ENTRY_BYTES);
        for entries in run.chunks(BLOCK) {
            block.clear();
            encode_block(entries, &mut block);
            let len = u32::try_from(block.len()).expect("a block is far below 4 GiB");
            out.write_all(&len.to_le_bytes())?;
            out.write_all(&block)?;
        }
        out.write_all(&END.to_le_bytes())?;
        out.flush()?;
        self.files.push(path);
        Ok(())
    }

    /// Readers over every spilled run. A read error ends its run early and
    /// is left in `error` for the caller to check after the merge.
    pub fn readers(&self, error: &Arc<Mutex<Option<std::io::Error>>>) -> std::io::Result<Vec<RunReader>> {
        self.files
            .iter()
            .map(|p| {
                Ok(RunReader {
                    file: File::open(p)?,
                    started: false,
                    block: Vec::new(),
                    end: 0,
                    at: 0,
                    next_len: None,
                    previous: [0; 6],
                    error: error.clone(),
                })
            })
            .collect()
    }
}

impl Drop for SpillRuns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Entries kept as sorted runs without a map: for an aggregate whose keys
/// arrive already distinct (the day's counted resolves, one a
/// conversation), a buffer sorted when full costs less than a hash map's
/// inserts and drain. A key that did repeat would still be combined by the
/// merge.
pub struct SortedRuns {
    buffer: Vec<Entry>,
    spills: SpillRuns,
    pub failure: Option<std::io::Error>,
    budget: usize,
}

impl SortedRuns {
    pub fn new(dir: PathBuf, budget: usize) -> Self {
        SortedRuns {
            buffer: Vec::new(),
            spills: SpillRuns::new(dir),
            failure: None,
            budget,
        }
    }

    /// Adds an entry, spilling the buffer as a sorted run once it holds the
    /// budget. A failure is kept (the caller's callback cannot return it).
    pub fn push(&mut self, entry: Entry) {
        self.buffer.push(entry);
        if self.buffer.len() >= self.budget {
            self.buffer.sort_unstable_by_key(|(k, _)| *k);
            if self.failure.is_none()
                && let Err(e) = self.spills.spill(&self.buffer)
            {
                self.failure = Some(e);
            }
            self.buffer.clear();
        }
    }

    /// Every run: the spilled ones, then the buffer's, sorted. The spilled
    /// files stay until `self` is dropped.
    pub fn runs(&mut self, error: &Arc<Mutex<Option<std::io::Error>>>) -> std::io::Result<Vec<EntryRun>> {
        let mut runs: Vec<EntryRun> = Vec::new();
        for reader in self.spills.readers(error)? {
            runs.push(Box::new(reader));
        }
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.sort_unstable_by_key(|(k, _)| *k);
        runs.push(Box::new(buffer.into_iter()));
        Ok(runs)
    }
}

/// Appends `entries` as one block's bytes (without its length).
fn encode_block(entries: &[Entry], out: &mut Vec<u8>) {
    let mut previous = [0i64; 6];
    for (k, v) in entries {
        let fields = [k[0], k[1], k[2], k[3], v[0], v[1]];
        for (field, before) in fields.iter().zip(previous.iter_mut()) {
            let delta = field.wrapping_sub(*before);
            let mut zigzag = ((delta << 1) ^ (delta >> 63)) as u64;
            while zigzag >= 0x80 {
                out.push(zigzag as u8 | 0x80);
                zigzag >>= 7;
            }
            out.push(zigzag as u8);
            *before = *field;
        }
    }
}

/// One varint of `bytes` at `*at`, which it moves past; `None` if it is cut
/// short or longer than a `u64`.
#[inline]
fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

/// Reads a run a block at a time, each read taking the block's entries and
/// the next block's length together: no buffer beyond the block itself,
/// as a big day merges a few hundred runs at once.
pub struct RunReader {
    file: File,
    started: bool,
    /// The current block's entries (`..end`), the next block's length after.
    block: Vec<u8>,
    end: usize,
    /// Where the block's next entry starts.
    at: usize,
    /// The next block's length; `None` once the last block is read.
    next_len: Option<usize>,
    /// The fields of the block's entry before.
    previous: [i64; 6],
    error: Arc<Mutex<Option<std::io::Error>>>,
}

impl RunReader {
    /// Reads the next block; `Ok(false)` at the end of the run.
    fn next_block(&mut self) -> std::io::Result<bool> {
        let len = if self.started {
            match self.next_len {
                Some(len) => len,
                None => return Ok(false),
            }
        } else {
            self.started = true;
            let mut first = [0u8; 4];
            if read_full(&mut self.file, &mut first)? < first.len() {
                return Err(cut());
            }
            match block_len(first)? {
                Some(len) => len,
                None => return Ok(false),
            }
        };
        self.block.resize(len + 4, 0);
        if read_full(&mut self.file, &mut self.block)? < len + 4 {
            return Err(cut());
        }
        self.next_len = block_len(self.block[len..].try_into().expect("four bytes"))?;
        self.end = len;
        self.at = 0;
        self.previous = [0; 6];
        Ok(true)
    }

    fn decode(&mut self) -> std::io::Result<Option<Entry>> {
        if self.at == self.end && !self.next_block()? {
            return Ok(None);
        }
        let entries = &self.block[..self.end];
        let mut fields = [0i64; 6];
        for (field, before) in fields.iter_mut().zip(self.previous.iter_mut()) {
            let zigzag = varint(entries, &mut self.at).ok_or_else(|| corrupt("an entry is cut short"))?;
            let delta = (zigzag >> 1) as i64 ^ -((zigzag & 1) as i64);
            *field = before.wrapping_add(delta);
            *before = *field;
        }
        let [k0, k1, k2, k3, v0, v1] = fields;
        Ok(Some(([k0, k1, k2, k3], [v0, v1])))
    }
}

/// Fills `buf` as far as the file goes; the bytes read.
fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// A block's length, or `None` for the run's end.
fn block_len(bytes: [u8; 4]) -> std::io::Result<Option<usize>> {
    let len = u32::from_le_bytes(bytes);
    if len == END {
        return Ok(None);
    }
    if len as usize > BLOCK * MAX_ENTRY_BYTES {
        return Err(corrupt("a block's length is out of range"));
    }
    Ok(Some(len as usize))
}

fn cut() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "spilled run is cut short")
}

fn corrupt(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("spilled run is corrupt: {what}"),
    )
}

/// A read error ends the run early and is left in the shared slot.
impl Iterator for RunReader {
    type Item = Entry;

    #[inline]
    fn next(&mut self) -> Option<Entry> {
        match self.decode() {
            Ok(entry) => entry,
            Err(e) => {
                *self.error.lock().expect("spill error slot") = Some(e);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spilled_runs_read_back_exactly_and_are_removed() {
        let dir = std::env::temp_dir().join(format!("account-usage-spill-test-{}", std::process::id()));
        // Several blocks; fields at both ends of i64 and jumping between
        // them, so deltas wrap; and random values.
        let mut rng = crate::seed::rng::Rng::new(7);
        let run: Vec<Entry> = (0..1000)
            .map(|i| {
                let wild = if i % 3 == 0 { i64::MIN } else { i64::MAX - i };
                ([i, -i, wild, i64::MIN], [rng.range(-1 << 40, 1 << 40), -7])
            })
            .collect();
        let error = Arc::new(Mutex::new(None));
        {
            let mut spills = SpillRuns::new(dir.clone());
            spills.spill(&run).unwrap();
            spills.spill(&run[..10]).unwrap();
            spills.spill(&run[..BLOCK]).unwrap();
            let readers = spills.readers(&error).unwrap();
            let back: Vec<Vec<Entry>> = readers.into_iter().map(|r| r.collect()).collect();
            assert_eq!(back, vec![run.clone(), run[..10].to_vec(), run[..BLOCK].to_vec()]);
            // Coded, an entry of this run takes well under its 48 bytes.
            let size = std::fs::metadata(&spills.files[0]).unwrap().len();
            assert!(size < 1000 * 40, "{size} bytes");
        }
        assert!(error.lock().unwrap().is_none());
        assert!(!dir.exists());
    }

    #[test]
    fn a_cut_run_ends_early_with_an_error() {
        let dir = std::env::temp_dir().join(format!("account-usage-spill-cut-test-{}", std::process::id()));
        let run: Vec<Entry> = (0..600).map(|i| ([i, 1, 2, 3], [i * 1000, 5])).collect();
        let mut spills = SpillRuns::new(dir.clone());
        spills.spill(&run).unwrap();
        let size = std::fs::metadata(&spills.files[0]).unwrap().len();
        let bytes = std::fs::read(&spills.files[0]).unwrap();
        let first_block = u64::from(u32::from_le_bytes(bytes[..4].try_into().unwrap()));
        // In the end marker, at the last block's end, in the last block,
        // in a block's entries, in the length after a block, at a block's
        // end, in the first length, before anything.
        for cut in [
            size - 1,
            size - 4,
            size - 5,
            size - 40,
            4 + first_block + 2,
            4 + first_block,
            3,
            0,
        ] {
            let file = std::fs::OpenOptions::new().write(true).open(&spills.files[0]).unwrap();
            file.set_len(cut).unwrap();
            let error = Arc::new(Mutex::new(None));
            let back: Vec<Entry> = spills.readers(&error).unwrap().remove(0).collect();
            assert!(
                (back.len() < run.len() || cut >= size - 4) && back[..] == run[..back.len()],
                "cut at {cut}"
            );
            let error = error.lock().unwrap().take().expect("the cut is reported");
            assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof, "cut at {cut}: {error}");
        }
        drop(spills);
        assert!(!dir.exists());
    }

    /// Property: whatever the budget, the runs merge to exactly the sorted,
    /// combined entries pushed (a key pushed twice is combined, not lost).
    #[test]
    fn sorted_runs_merge_to_every_entry_pushed() {
        use crate::aggregate::{Merge, merge_sorted_runs};
        use crate::seed::rng::Rng;
        use std::collections::BTreeMap;
        let dir = std::env::temp_dir().join(format!("account-usage-sorted-runs-test-{}", std::process::id()));
        for seed in 0..40 {
            let mut rng = Rng::new(seed);
            let budget = rng.range(1, 40) as usize;
            let mut oracle: BTreeMap<[i64; 4], [i64; 2]> = BTreeMap::new();
            let error = Arc::new(Mutex::new(None));
            let mut runs = SortedRuns::new(dir.join(seed.to_string()), budget);
            let pushed = rng.range(0, 300);
            for _ in 0..pushed {
                let key = [rng.range(0, 5), rng.range(-3, 3), rng.range(0, 100), 0];
                let value = [rng.range(0, 1000), rng.range(0, 1000)];
                oracle
                    .entry(key)
                    .and_modify(|v| Merge::Earliest.combine(v, value))
                    .or_insert(value);
                runs.push((key, value));
            }
            assert!(runs.failure.is_none());
            assert_eq!(runs.spills.files.len(), pushed as usize / budget, "seed {seed}");
            let merged: Vec<Entry> = merge_sorted_runs(runs.runs(&error).unwrap(), Merge::Earliest).collect();
            assert_eq!(merged, oracle.into_iter().collect::<Vec<_>>(), "seed {seed}");
            assert!(error.lock().unwrap().is_none());
            drop(runs);
            assert!(!dir.join(seed.to_string()).exists());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_folders_whose_process_is_gone_are_swept() {
        let dir = std::env::temp_dir().join(format!("account-usage-sweep-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let live = SpillFolder::new(dir.join(format!("{FOLDER_PREFIX}live")));
        // What a killed process leaves: its lock file, no longer locked.
        let dead = dir.join(format!("{FOLDER_PREFIX}dead"));
        std::fs::create_dir_all(dead.join("messages")).unwrap();
        File::create(dead.join(LOCK)).unwrap();
        // Without a lock file (an unwritable folder, or another program's).
        let unlocked = dir.join(format!("{FOLDER_PREFIX}unlocked"));
        std::fs::create_dir_all(&unlocked).unwrap();
        let other = dir.join("other");
        std::fs::create_dir_all(&other).unwrap();
        File::create(other.join(LOCK)).unwrap();

        assert_eq!(remove_abandoned(&dir), vec![dead.clone()]);
        assert!(!dead.exists());
        assert!(live.path().join(LOCK).exists() && unlocked.exists() && other.exists());
        drop(live);
        assert!(remove_abandoned(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_day_folder_goes_with_the_runs_under_it() {
        let root = std::env::temp_dir().join(format!("account-usage-spill-day-test-{}", std::process::id()));
        {
            let day = SpillFolder::new(root.clone());
            let mut spills = SpillRuns::new(day.path().join("messages").join("0"));
            spills.spill(&[([1, 2, 3, 4], [5, 6])]).unwrap();
            drop(spills);
            // What `SpillRuns` leaves behind: its parent.
            assert!(root.join("messages").exists());
        }
        assert!(!root.exists());
    }
}
