//! Checking a recorded history.
//!
//! Default and `?consistent` reads, puts and cas go to porcupine against
//! [`KvRegisters`], one key at a time. `?stale` reads may legitimately be
//! stale, so they are left out of that and only checked for returning a
//! value that some write to the same key had already been invoked with.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use porcupine_rs::{CheckResult, Model, Operation};

use crate::history::{Action, ReadMode, Record};
use crate::model::{KeyId, KvOp, KvRegisters, ValueId, ABSENT};

/// Operation counts of a history.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub get_default: u64,
    pub get_consistent: u64,
    pub get_stale: u64,
    pub put_ok: u64,
    pub put_indeterminate: u64,
    pub cas_ok: u64,
    pub cas_fail: u64,
    pub cas_indeterminate: u64,
}

impl Counts {
    pub fn of(records: &[Record]) -> Counts {
        let mut c = Counts::default();
        for r in records {
            match &r.action {
                Action::Get { mode, .. } => match mode {
                    ReadMode::Default => c.get_default += 1,
                    ReadMode::Consistent => c.get_consistent += 1,
                    ReadMode::Stale => c.get_stale += 1,
                },
                Action::Put { .. } if r.is_indeterminate() => c.put_indeterminate += 1,
                Action::Put { .. } => c.put_ok += 1,
                Action::Cas { ok: None, .. } => c.cas_indeterminate += 1,
                Action::Cas { ok: Some(true), .. } => c.cas_ok += 1,
                Action::Cas {
                    ok: Some(false), ..
                } => c.cas_fail += 1,
            }
        }
        c
    }

    pub fn gets(&self) -> u64 {
        self.get_default + self.get_consistent + self.get_stale
    }

    pub fn puts(&self) -> u64 {
        self.put_ok + self.put_indeterminate
    }

    pub fn cases(&self) -> u64 {
        self.cas_ok + self.cas_fail + self.cas_indeterminate
    }

    /// Writes the system acknowledged (put `true`, cas `true`).
    pub fn acknowledged_writes(&self) -> u64 {
        self.put_ok + self.cas_ok
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "get {} (default {}, consistent {}, stale {}); \
             put {} (ok {}, indeterminate {}); \
             cas {} (ok {}, fail {}, indeterminate {})",
            self.gets(),
            self.get_default,
            self.get_consistent,
            self.get_stale,
            self.puts(),
            self.put_ok,
            self.put_indeterminate,
            self.cases(),
            self.cas_ok,
            self.cas_fail,
            self.cas_indeterminate
        )
    }
}

/// The outcome of porcupine's search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable,
    /// The search did not finish within the time limit.
    Unknown,
}

/// A `?stale` read that returned a value no write to its key had been
/// invoked with before the read returned.
#[derive(Clone, Debug)]
pub struct StaleViolation {
    /// Index of the read in the history.
    pub record: usize,
    pub reason: String,
}

/// A key whose sub-history is not linearizable.
#[derive(Clone, Debug)]
pub struct KeyFailure {
    pub key: String,
    /// A readable excerpt around where the search got stuck.
    pub window: String,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub counts: Counts,
    /// Verdict for default/consistent reads, puts and cas (porcupine).
    pub verdict: Verdict,
    /// Operations given to porcupine.
    pub model_ops: usize,
    /// Indeterminate writes whose value nothing observed, left out of the
    /// model (they can always be linearized last, where they change nothing).
    pub pruned_indeterminate: usize,
    pub keys: usize,
    pub stale_checked: usize,
    pub stale_violations: Vec<StaleViolation>,
    pub failures: Vec<KeyFailure>,
    pub check_time: Duration,
}

impl Report {
    /// Linearizable and no stale read of a never-written value.
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Linearizable && self.stale_violations.is_empty()
    }
}

/// Check `records`. `timeout` bounds porcupine's search; `visualize`, when
/// given, receives porcupine's HTML visualization of any failing key.
/// Errors are histories that break this tool's own assumptions (a value
/// written twice, a read without a return time, time going backwards).
pub fn check(
    records: &[Record],
    timeout: Duration,
    visualize: Option<&Path>,
) -> Result<Report, String> {
    let started = Instant::now();
    validate(records)?;
    let counts = Counts::of(records);

    let (stale_checked, stale_violations) = check_stale_reads(records);

    let built = build_operations(records);
    let model_ops = built.ops.len();
    let pruned_indeterminate = built.pruned;
    let keys = built.key_names.len();
    let verdict = match porcupine_rs::check_operations_timeout(&built.ops, timeout) {
        CheckResult::Ok => Verdict::Linearizable,
        CheckResult::Illegal => Verdict::NotLinearizable,
        CheckResult::Unknown => Verdict::Unknown,
    };

    let mut failures = Vec::new();
    if verdict == Verdict::NotLinearizable {
        // Find the keys that fail, and where, one key at a time.
        for ops in KvRegisters::partition_operations(&built.ops) {
            let key = ops[0].op.key();
            let remaining = timeout.saturating_sub(started.elapsed());
            if porcupine_rs::check_operations_timeout(&ops, remaining) != CheckResult::Illegal {
                continue;
            }
            let remaining = timeout
                .saturating_sub(started.elapsed())
                .max(Duration::from_secs(10));
            let (_, info) = porcupine_rs::check_operations_info_timeout(&ops, remaining);
            let window = describe_failure(records, &ops, &info);
            if let Some(path) = visualize {
                if let Err(e) = porcupine_rs::visualize_path(&info, path) {
                    eprintln!("lincheck: writing {}: {e}", path.display());
                }
            }
            failures.push(KeyFailure {
                key: built.key_names[key as usize].clone(),
                window,
            });
        }
    }

    Ok(Report {
        counts,
        verdict,
        model_ops,
        pruned_indeterminate,
        keys,
        stale_checked,
        stale_violations,
        failures,
        check_time: started.elapsed(),
    })
}

fn validate(records: &[Record]) -> Result<(), String> {
    let mut written: HashSet<(&str, &str)> = HashSet::new();
    for (i, r) in records.iter().enumerate() {
        if let Some(ret) = r.ret {
            if ret < r.call {
                return Err(format!("operation {i} returns before it is invoked"));
            }
        }
        match &r.action {
            Action::Get { .. } if r.ret.is_none() => {
                return Err(format!("read {i} has no return time"));
            }
            Action::Get { .. } => {}
            Action::Put { value } | Action::Cas { value, .. } => {
                if !written.insert((&r.key, value)) {
                    return Err(format!(
                        "value {value:?} is written to {} twice (operation {i}); \
                         values must be unique",
                        r.key
                    ));
                }
                if matches!(r.action, Action::Cas { ok: Some(_), .. }) && r.ret.is_none() {
                    return Err(format!("cas {i} has an answer but no return time"));
                }
            }
        }
    }
    Ok(())
}

/// Every `?stale` read returns absent or a value that a put or a cas not
/// known to have failed wrote to the same key, invoked before the read
/// returned.
fn check_stale_reads(records: &[Record]) -> (usize, Vec<StaleViolation>) {
    let mut first_write: HashMap<(&str, &str), i64> = HashMap::new();
    for r in records {
        let value = match &r.action {
            Action::Put { value } => value,
            Action::Cas { value, ok, .. } if *ok != Some(false) => value,
            _ => continue,
        };
        let t = first_write.entry((&r.key, value)).or_insert(r.call);
        *t = (*t).min(r.call);
    }
    let mut checked = 0;
    let mut violations = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let Action::Get {
            mode: ReadMode::Stale,
            value,
        } = &r.action
        else {
            continue;
        };
        checked += 1;
        let Some(value) = value else { continue };
        let ret = r.ret.unwrap_or(i64::MAX);
        match first_write.get(&(r.key.as_str(), value.as_str())) {
            Some(&call) if call <= ret => {}
            Some(&call) => violations.push(StaleViolation {
                record: i,
                reason: format!(
                    "stale read of {} returned {value:?} at {}, but its write was only invoked at {}",
                    r.key,
                    ms(ret),
                    ms(call)
                ),
            }),
            None => violations.push(StaleViolation {
                record: i,
                reason: format!(
                    "stale read of {} returned {value:?}, which no put or cas wrote to it",
                    r.key
                ),
            }),
        }
    }
    (checked, violations)
}

struct Built {
    ops: Vec<Operation<KvRegisters>>,
    key_names: Vec<String>,
    /// Indeterminate writes left out because nothing observed their value.
    pruned: usize,
}

/// Porcupine operations for every record except `?stale` reads. Values and
/// keys are interned; an indeterminate write returns after everything else.
fn build_operations<'a>(records: &'a [Record]) -> Built {
    let end = records
        .iter()
        .map(|r| r.ret.unwrap_or(r.call))
        .max()
        .unwrap_or(0)
        .saturating_add(1);

    let mut key_ids: BTreeMap<&str, KeyId> = BTreeMap::new();
    for r in records {
        let next = key_ids.len() as KeyId;
        key_ids.entry(&r.key).or_insert(next);
    }
    let mut key_names = vec![String::new(); key_ids.len()];
    for (name, id) in &key_ids {
        key_names[*id as usize] = name.to_string();
    }

    let mut values: HashMap<&str, ValueId> = HashMap::new();
    let intern = |v: Option<&'a str>, values: &mut HashMap<&'a str, ValueId>| -> ValueId {
        match v {
            None => ABSENT,
            Some(v) => {
                let next = values.len() as ValueId + 1;
                *values.entry(v).or_insert(next)
            }
        }
    };
    // Values some operation in the model observed (read, or expected by a
    // cas). An indeterminate write of any other value that no failed cas
    // follows can be linearized after everything else, where it changes
    // nothing: leaving it out gives the same verdict and spares the search
    // a pending operation. A failed cas is the exception: an unseen value
    // written just before it, then overwritten, is what explains it.
    let mut observed: HashSet<(&str, &str)> = HashSet::new();
    for r in records {
        match &r.action {
            Action::Get {
                mode: ReadMode::Default | ReadMode::Consistent,
                value: Some(v),
            }
            | Action::Cas {
                expected: Some(v), ..
            } => {
                observed.insert((&r.key, v));
            }
            _ => {}
        }
    }

    // Per key, when the last failed cas returned.
    let mut last_failed_cas: HashMap<&str, i64> = HashMap::new();
    for r in records {
        if let (
            Action::Cas {
                ok: Some(false), ..
            },
            Some(ret),
        ) = (&r.action, r.ret)
        {
            let last = last_failed_cas.entry(r.key.as_str()).or_insert(ret);
            *last = (*last).max(ret);
        }
    }

    let mut ops = Vec::with_capacity(records.len());
    let mut pruned = 0;
    for (i, r) in records.iter().enumerate() {
        let key = key_ids[r.key.as_str()];
        if let Some(v) = r.action.written_value() {
            let may_explain_a_failed_cas = last_failed_cas
                .get(r.key.as_str())
                .is_some_and(|&ret| ret > r.call);
            if r.is_indeterminate()
                && !observed.contains(&(r.key.as_str(), v))
                && !may_explain_a_failed_cas
            {
                pruned += 1;
                continue;
            }
        }
        let op = match &r.action {
            Action::Get {
                mode: ReadMode::Stale,
                ..
            } => continue,
            Action::Get { value, .. } => KvOp::Get {
                key,
                value: intern(value.as_deref(), &mut values),
            },
            Action::Put { value } => KvOp::Put {
                key,
                value: intern(Some(value), &mut values),
            },
            Action::Cas {
                expected,
                value,
                ok,
            } => KvOp::Cas {
                key,
                expected: intern(expected.as_deref(), &mut values),
                value: intern(Some(value), &mut values),
                ok: *ok,
            },
        };
        ops.push(Operation {
            client_id: Some(r.client),
            call_time: r.call,
            return_time: r.ret.unwrap_or(end),
            op,
            metadata: Some(i),
        });
    }
    Built {
        ops,
        key_names,
        pruned,
    }
}

/// An excerpt of a failing key's history around the first operation (in
/// invoke order) that the longest partial linearization could not place.
fn describe_failure(
    records: &[Record],
    ops: &[Operation<KvRegisters>],
    info: &porcupine_rs::LinearizationInfo<KvRegisters>,
) -> String {
    let longest: Vec<usize> = info
        .partial_linearizations
        .first()
        .and_then(|seqs| seqs.iter().max_by_key(|s| s.len()).cloned())
        .unwrap_or_default();
    let mut state = KvRegisters::init();
    for &i in &longest {
        state = KvRegisters::step(&state, &ops[i].op).1;
    }
    let placed: HashSet<usize> = longest.iter().copied().collect();
    let state_text = last_value_text(records, ops, &longest, state);

    let mut order: Vec<usize> = (0..ops.len()).collect();
    order.sort_by_key(|&i| (ops[i].call_time, i));
    let stuck = order.iter().position(|i| !placed.contains(i)).unwrap_or(0);
    let from = stuck.saturating_sub(10);
    let to = (stuck + 10).min(order.len());

    let mut out = String::new();
    let _ = writeln!(
        out,
        "  longest linearizable prefix: {} of {} operations; value after it: {state_text}",
        longest.len(),
        ops.len()
    );
    let _ = writeln!(
        out,
        "  operations {from}..{to} in invoke order (times in ms; '=>' first unplaced, 'x' not placed):"
    );
    for (pos, &i) in order.iter().enumerate().take(to).skip(from) {
        let mark = if pos == stuck {
            "=>"
        } else if placed.contains(&i) {
            "  "
        } else {
            " x"
        };
        let rec = ops[i].metadata.map(|m| &records[m]);
        let _ = writeln!(
            out,
            "  {mark} {}",
            rec.map(describe_record).unwrap_or_default()
        );
    }
    out
}

fn last_value_text(
    records: &[Record],
    ops: &[Operation<KvRegisters>],
    longest: &[usize],
    state: ValueId,
) -> String {
    if state == ABSENT {
        return "absent".to_string();
    }
    // Find the write placed last that wrote the current state.
    for &i in longest.iter().rev() {
        let wrote = match ops[i].op {
            KvOp::Put { value, .. } | KvOp::Cas { value, .. } => value == state,
            KvOp::Get { .. } => false,
        };
        if wrote {
            if let Some(v) = ops[i]
                .metadata
                .and_then(|m| records[m].action.written_value())
            {
                return format!("{v:?}");
            }
        }
    }
    KvRegisters::describe_state(&state)
}

/// One line for a record: times, client, endpoint, operation and outcome.
pub fn describe_record(r: &Record) -> String {
    let ret = r.ret.map(ms).unwrap_or_else(|| "?".to_string());
    let show = |v: &Option<String>| match v {
        None => "absent".to_string(),
        Some(v) => format!("{v:?}"),
    };
    let what = match &r.action {
        Action::Get { mode, value } => format!("get({}) -> {}", mode.name(), show(value)),
        Action::Put { value } => {
            let out = if r.is_indeterminate() { "?" } else { "ok" };
            format!("put({value:?}) -> {out}")
        }
        Action::Cas {
            expected,
            value,
            ok,
        } => {
            let out = match ok {
                Some(true) => "ok",
                Some(false) => "fail",
                None => "?",
            };
            format!("cas({} -> {value:?}) -> {out}", show(expected))
        }
    };
    let note = r
        .note
        .as_deref()
        .map(|n| format!("  [{n}]"))
        .unwrap_or_default();
    format!(
        "[{:>10} .. {:>10}] c{} @{} {}{note}",
        ms(r.call),
        ret,
        r.client,
        r.endpoint,
        what
    )
}

fn ms(ns: i64) -> String {
    format!("{:.3}", ns as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);

    fn rec(client: u32, key: &str, call: i64, ret: Option<i64>, action: Action) -> Record {
        Record {
            client,
            endpoint: 0,
            key: key.to_string(),
            call,
            ret,
            action,
            note: None,
        }
    }

    fn put(c: u32, call: i64, ret: Option<i64>, v: &str) -> Record {
        rec(c, "k", call, ret, Action::Put { value: v.into() })
    }

    fn get_mode(c: u32, call: i64, ret: i64, mode: ReadMode, v: Option<&str>) -> Record {
        rec(
            c,
            "k",
            call,
            Some(ret),
            Action::Get {
                mode,
                value: v.map(String::from),
            },
        )
    }

    fn get(c: u32, call: i64, ret: i64, v: Option<&str>) -> Record {
        get_mode(c, call, ret, ReadMode::Consistent, v)
    }

    fn cas(
        c: u32,
        call: i64,
        ret: Option<i64>,
        exp: Option<&str>,
        v: &str,
        ok: Option<bool>,
    ) -> Record {
        rec(
            c,
            "k",
            call,
            ret,
            Action::Cas {
                expected: exp.map(String::from),
                value: v.into(),
                ok,
            },
        )
    }

    fn passes(records: &[Record]) -> bool {
        check(records, T, None).unwrap().passed()
    }

    #[test]
    fn sequential_history_passes() {
        let h = [
            get(0, 0, 1, None),
            put(0, 2, Some(3), "a"),
            get(1, 4, 5, Some("a")),
            put(1, 6, Some(7), "b"),
            get(0, 8, 9, Some("b")),
        ];
        let report = check(&h, T, None).unwrap();
        assert_eq!(report.verdict, Verdict::Linearizable);
        assert_eq!(report.counts.put_ok, 2);
        assert_eq!(report.counts.get_consistent, 3);
        assert!(report.passed());
    }

    #[test]
    fn read_of_an_overwritten_value_fails_for_default_and_consistent_reads() {
        for mode in [ReadMode::Default, ReadMode::Consistent] {
            let h = [
                put(0, 0, Some(1), "a"),
                put(0, 2, Some(3), "b"),
                get_mode(1, 4, 5, mode, Some("a")),
            ];
            let report = check(&h, T, None).unwrap();
            assert_eq!(report.verdict, Verdict::NotLinearizable, "{mode:?}");
            assert_eq!(report.failures.len(), 1);
            assert_eq!(report.failures[0].key, "k");
            assert!(
                report.failures[0].window.contains("=>"),
                "{}",
                report.failures[0].window
            );
        }
    }

    #[test]
    fn the_same_read_is_allowed_when_stale() {
        let h = [
            put(0, 0, Some(1), "a"),
            put(0, 2, Some(3), "b"),
            get_mode(1, 4, 5, ReadMode::Stale, Some("a")),
            get_mode(1, 6, 7, ReadMode::Stale, None),
        ];
        let report = check(&h, T, None).unwrap();
        assert!(report.passed());
        assert_eq!(report.stale_checked, 2);
        assert_eq!(report.model_ops, 2);
    }

    #[test]
    fn overlapping_operations_that_can_be_ordered_pass() {
        let h = [
            // A read invoked before a concurrent put may see it...
            get(1, 0, 10, Some("a")),
            put(0, 5, Some(6), "a"),
            // ...and two reads overlapping a put may see old then new.
            put(0, 20, Some(40), "b"),
            get(1, 21, 22, Some("a")),
            get(2, 23, 30, Some("b")),
            get(1, 31, 32, Some("b")),
            // Two concurrent puts may land in either order.
            put(0, 50, Some(60), "c"),
            put(1, 51, Some(59), "d"),
            get(2, 61, 62, Some("c")),
        ];
        assert!(passes(&h));
    }

    #[test]
    fn going_back_in_time_fails() {
        let h = [
            put(0, 0, Some(40), "b"),
            get(1, 1, 2, Some("b")),
            get(2, 3, 4, None),
        ];
        assert!(!passes(&h));
    }

    #[test]
    fn an_indeterminate_put_may_take_effect_late_or_never() {
        // Read long after the put timed out.
        let h = [put(0, 0, None, "a"), get(1, 100, 101, Some("a"))];
        assert!(passes(&h));
        // Never observed.
        let h = [put(0, 0, None, "a"), get(1, 100, 101, None)];
        assert!(passes(&h));
        // Observed, then overwritten, in order.
        let h = [
            put(0, 0, None, "a"),
            get(1, 100, 101, Some("a")),
            put(1, 102, Some(103), "b"),
            get(1, 104, 105, Some("b")),
        ];
        assert!(passes(&h));
        // But once observed it cannot be undone.
        let h = [
            put(0, 0, None, "a"),
            get(1, 100, 101, Some("a")),
            get(1, 102, 103, None),
        ];
        assert!(!passes(&h));
        // And it cannot take effect before it was invoked.
        let h = [get(1, 0, 1, Some("a")), put(0, 2, None, "a")];
        assert!(!passes(&h));
    }

    #[test]
    fn unobserved_indeterminate_writes_are_left_out_without_changing_the_verdict() {
        // A leaderless stretch: many writes with unknown outcome, one of
        // which turns out to have been applied.
        let mut h = vec![put(0, 0, Some(1), "a")];
        for i in 0..300 {
            h.push(put(1 + i % 4, 10 + i as i64, None, &format!("lost{i}")));
        }
        h.push(cas(1, 400, None, Some("a"), "maybe", None));
        h.push(get(0, 1000, 1001, Some("lost7")));
        let report = check(&h, T, None).unwrap();
        assert!(report.passed());
        assert_eq!(report.pruned_indeterminate, 300);
        assert_eq!(report.model_ops, 3);

        // The same stretch followed by a read going back to "a" after
        // "lost7" was seen: still caught.
        h.push(get(0, 1002, 1003, Some("a")));
        let report = check(&h, T, None).unwrap();
        assert_eq!(report.verdict, Verdict::NotLinearizable);
    }

    #[test]
    fn an_unobserved_indeterminate_write_can_explain_a_failed_cas() {
        // The shape of a failure seen under partitions: a put timed out
        // (outcome unknown) and was applied later; the cas operations that
        // then failed saw its value, which a put overwrote before anyone
        // read it. Leaving the put out would wrongly call this a violation.
        let h = [
            put(0, 0, Some(1), "a"),
            put(1, 2, None, "lost"),
            get(2, 10, 11, Some("a")),
            cas(2, 12, Some(20), Some("a"), "b", Some(false)),
            cas(3, 13, Some(21), Some("a"), "c", Some(false)),
            put(0, 30, Some(31), "d"),
            get(2, 32, 33, Some("d")),
        ];
        let report = check(&h, T, None).unwrap();
        assert!(report.passed(), "{:?}", report.verdict);
        assert_eq!(report.pruned_indeterminate, 0);

        // Without the lost put the failed cas operations are violations.
        let without: Vec<Record> = h
            .iter()
            .filter(|r| r.action.written_value() != Some("lost"))
            .cloned()
            .collect();
        assert!(!passes(&without));

        // A write invoked after every failed cas returned cannot explain
        // any of them: it is still left out.
        let mut late = without.clone();
        late.push(put(1, 25, None, "late"));
        let report = check(&late, T, None).unwrap();
        assert_eq!(report.pruned_indeterminate, 1);
        assert!(!report.passed());
    }

    #[test]
    fn cas_is_compare_and_set_on_the_value() {
        let h = [
            cas(0, 0, Some(1), None, "a", Some(true)),
            cas(1, 2, Some(3), None, "b", Some(false)),
            cas(1, 4, Some(5), Some("a"), "c", Some(true)),
            cas(0, 6, Some(7), Some("a"), "d", Some(false)),
            get(2, 8, 9, Some("c")),
        ];
        assert!(passes(&h));

        // A cas that succeeded although the value had changed.
        let h = [
            put(0, 0, Some(1), "a"),
            put(0, 2, Some(3), "b"),
            cas(1, 4, Some(5), Some("a"), "c", Some(true)),
        ];
        assert!(!passes(&h));

        // A cas that failed although the value matched.
        let h = [
            put(0, 0, Some(1), "a"),
            cas(1, 2, Some(3), Some("a"), "c", Some(false)),
        ];
        assert!(!passes(&h));

        // A create-if-absent that succeeded on an existing key.
        let h = [
            put(0, 0, Some(1), "a"),
            cas(1, 2, Some(3), None, "c", Some(true)),
        ];
        assert!(!passes(&h));
    }

    #[test]
    fn an_indeterminate_cas_takes_the_outcome_the_state_implies() {
        let h = [
            put(0, 0, Some(1), "a"),
            cas(1, 2, None, Some("a"), "b", None),
            get(2, 10, 11, Some("b")),
        ];
        assert!(passes(&h));
        let h = [
            put(0, 0, Some(1), "a"),
            cas(1, 2, None, Some("a"), "b", None),
            get(2, 10, 11, Some("a")),
        ];
        assert!(passes(&h));
        // It cannot have succeeded when the value never matched.
        let h = [
            put(0, 0, Some(1), "x"),
            cas(1, 2, None, Some("a"), "b", None),
            get(2, 10, 11, Some("b")),
        ];
        assert!(!passes(&h));
    }

    #[test]
    fn a_read_of_a_value_never_written_fails_in_every_mode() {
        for mode in [ReadMode::Default, ReadMode::Consistent, ReadMode::Stale] {
            let h = [
                put(0, 0, Some(1), "a"),
                get_mode(1, 2, 3, mode, Some("zzz")),
            ];
            assert!(!passes(&h), "{mode:?}");
        }
        let report = check(
            &[
                put(0, 0, Some(1), "a"),
                get_mode(1, 2, 3, ReadMode::Stale, Some("zzz")),
            ],
            T,
            None,
        )
        .unwrap();
        assert_eq!(report.verdict, Verdict::Linearizable);
        assert_eq!(report.stale_violations.len(), 1);
        assert_eq!(report.stale_violations[0].record, 1);
    }

    #[test]
    fn a_stale_read_cannot_see_a_write_invoked_after_it_returned() {
        let h = [
            get_mode(1, 0, 1, ReadMode::Stale, Some("a")),
            put(0, 5, Some(6), "a"),
        ];
        let report = check(&h, T, None).unwrap();
        assert_eq!(
            report.stale_violations.len(),
            1,
            "{:?}",
            report.stale_violations
        );
        // Nor a value only a failed cas tried to write.
        let h = [
            put(0, 0, Some(1), "a"),
            cas(0, 2, Some(3), None, "b", Some(false)),
            get_mode(1, 4, 5, ReadMode::Stale, Some("b")),
        ];
        assert!(!passes(&h));
    }

    #[test]
    fn keys_are_checked_independently_and_the_failing_one_is_named() {
        let mut h = vec![
            put(0, 0, Some(1), "a"),
            get(1, 2, 3, Some("a")),
            put(0, 4, Some(5), "b"),
            get(1, 6, 7, Some("a")), // stale on "k"
        ];
        for (i, r) in [
            put(2, 0, Some(1), "x"),
            get(3, 2, 3, Some("x")),
            put(2, 4, Some(5), "y"),
            get(3, 6, 7, Some("y")),
        ]
        .into_iter()
        .enumerate()
        {
            h.push(Record {
                key: "other".into(),
                client: 2 + i as u32 % 2,
                ..r
            });
        }
        h.sort_by_key(|r| r.call);
        let report = check(&h, T, None).unwrap();
        assert_eq!(report.keys, 2);
        assert_eq!(report.verdict, Verdict::NotLinearizable);
        let failing: Vec<&str> = report.failures.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(failing, ["k"]);
    }

    #[test]
    fn a_value_written_twice_is_a_malformed_history() {
        let h = [put(0, 0, Some(1), "a"), put(1, 2, Some(3), "a")];
        assert!(check(&h, T, None).is_err());
        let h = [get(0, 5, 4, None)];
        assert!(check(&h, T, None).is_err());
    }

    #[test]
    fn history_round_trips_through_json() {
        let history = crate::history::History {
            run_id: "r".into(),
            records: vec![
                put(0, 0, None, "a"),
                cas(1, 1, Some(2), None, "b", Some(false)),
                get_mode(2, 3, 4, ReadMode::Stale, None),
            ],
            ..Default::default()
        };
        let text = serde_json::to_string(&history).unwrap();
        assert!(text.contains(r#""op":"cas""#), "{text}");
        let back: crate::history::History = serde_json::from_str(&text).unwrap();
        assert_eq!(back.records, history.records);
    }

    #[test]
    fn many_concurrent_clients_check_quickly() {
        // Five clients over one key, each op overlapping its neighbours:
        // a put by client c at step i, then a read of it.
        let mut h = Vec::new();
        let mut t = 0;
        for i in 0..2000 {
            let c = i % 5;
            let v = format!("c{c}-{i}");
            h.push(put(c, t, Some(t + 30), &v));
            h.push(get((c + 1) % 5, t + 31, t + 40, Some(&v)));
            if i % 50 == 0 {
                h.push(put(c, t + 1, None, &format!("lost{i}")));
            }
            t += 35;
        }
        h.sort_by_key(|r| r.call);
        let started = Instant::now();
        assert!(passes(&h));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
