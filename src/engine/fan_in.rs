//! Fan-in: deciding what happens when the last task of a stage ends.
//!
//! Exactly-once detection lives in SQL (`task_complete.sql`): every terminal task decrements its
//! shard of `app.stage_counters`; the completion that takes a shard to zero decrements
//! `app.job_stages.shards_left`; the one that takes that to zero is the last task of the stage.
//! Both decrements are `UPDATE ... RETURNING` on a single row, serialised by its row lock and
//! re-evaluated against the latest committed version, so each zero is observed by exactly one
//! transaction. Spreading tasks over shards keeps concurrent completions off a single hot row.

use crate::jobs::StagePolicy;

pub use crate::store::stages::StageCounts;

/// What a finished stage leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageOutcome {
    /// Queue the next stage.
    Advance {
        /// The next stage number.
        next_stage: i32,
    },
    /// Run finalize and complete the job.
    Finalize,
    /// Fail the job.
    Fail {
        /// Why.
        reason: String,
    },
}

/// Decides the outcome of stage `stage` of `total_stages` under `policy`.
pub fn decide(policy: StagePolicy, stage: i32, total_stages: i32, c: StageCounts) -> StageOutcome {
    let next = || {
        if stage < total_stages {
            StageOutcome::Advance {
                next_stage: stage + 1,
            }
        } else {
            StageOutcome::Finalize
        }
    };
    match policy {
        StagePolicy::FailFast if c.failed > 0 => StageOutcome::Fail {
            reason: format!("stage {stage}: {} of {} tasks failed", c.failed, c.total),
        },
        // The budget of MaxFailures is checked before (it counts earlier stages too).
        StagePolicy::FailFast | StagePolicy::TolerateFailures | StagePolicy::MaxFailures { .. } => {
            next()
        }
        StagePolicy::MinSuccess { k } if c.completed >= k as i64 => next(),
        StagePolicy::MinSuccess { k } => StageOutcome::Fail {
            reason: format!(
                "stage {stage}: only {} of {} tasks succeeded, at least {k} required",
                c.completed, c.total
            ),
        },
    }
}

/// Decides the outcome of a stage like [`decide`], after the job's failure budget was checked:
/// `over_budget` (why the job's failed tasks exceed it) fails the job whatever the policy says.
pub fn decide_with_budget(
    policy: StagePolicy,
    stage: i32,
    total_stages: i32,
    c: StageCounts,
    over_budget: Option<String>,
) -> StageOutcome {
    match over_budget {
        Some(reason) => StageOutcome::Fail { reason },
        None => decide(policy, stage, total_stages, c),
    }
}

/// How many counter shards a stage of `n` tasks gets (1 for small stages, at most 16).
pub fn shard_count(n: usize) -> i16 {
    (n / 64).clamp(1, 16) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(total: i64, completed: i64, failed: i64) -> StageCounts {
        StageCounts {
            total,
            completed,
            failed,
            cancelled: 0,
        }
    }

    #[test]
    fn policies() {
        assert_eq!(
            decide(StagePolicy::FailFast, 1, 2, c(3, 3, 0)),
            StageOutcome::Advance { next_stage: 2 }
        );
        assert_eq!(
            decide(StagePolicy::FailFast, 2, 2, c(3, 3, 0)),
            StageOutcome::Finalize
        );
        assert!(matches!(
            decide(StagePolicy::FailFast, 1, 2, c(3, 2, 1)),
            StageOutcome::Fail { .. }
        ));
        assert_eq!(
            decide(StagePolicy::TolerateFailures, 1, 2, c(3, 0, 3)),
            StageOutcome::Advance { next_stage: 2 }
        );
        let k = StagePolicy::MinSuccess { k: 2 };
        assert!(matches!(
            decide(k, 1, 1, c(3, 1, 2)),
            StageOutcome::Fail { .. }
        ));
        assert_eq!(decide(k, 1, 1, c(3, 2, 1)), StageOutcome::Finalize);
    }

    #[test]
    fn a_job_over_its_failure_budget_fails_whatever_the_stage_counts_say() {
        let budget = StagePolicy::MaxFailures {
            param: "max_failures",
        };
        for (over, counts, want) in [
            (None, c(3, 2, 1), StageOutcome::Advance { next_stage: 2 }),
            (None, c(3, 0, 3), StageOutcome::Advance { next_stage: 2 }),
            (
                Some("3 failed task(s)"),
                c(3, 0, 3),
                StageOutcome::Fail {
                    reason: "3 failed task(s)".into(),
                },
            ),
            (
                Some("1 failed task(s)"),
                c(3, 3, 0),
                StageOutcome::Fail {
                    reason: "1 failed task(s)".into(),
                },
            ),
        ] {
            assert_eq!(
                decide_with_budget(budget, 1, 2, counts, over.map(str::to_string)),
                want
            );
        }
        assert_eq!(
            decide_with_budget(StagePolicy::FailFast, 2, 2, c(3, 3, 0), None),
            StageOutcome::Finalize
        );
    }

    #[test]
    fn shards_never_exceed_tasks() {
        assert_eq!(shard_count(1), 1);
        assert_eq!(shard_count(200), 3);
        assert_eq!(shard_count(100_000), 16);
        for n in 1..2000 {
            assert!(shard_count(n) as usize <= n);
        }
    }
}
