//! The fleet's policy, sans IO: from what the store counts (live replicas, tracking sessions)
//! and what this replica holds, how many sessions to claim and how many to hand back. The
//! coordinator task does the IO around it.

/// Largest batch of sessions claimed at once.
pub(crate) const CLAIM_BATCH: usize = 1000;
/// Sessions a replica may hold beyond an even share before it hands some back.
pub(crate) const SHARE_SLACK: usize = 8;

/// How long a lease lasts on a store only one process uses (SQLite).
pub(crate) const SINGLE_NODE_HOLD: std::time::Duration = std::time::Duration::from_secs(3600);

/// How long this replica's leases last. In a fleet, the configured lease: a dead replica's
/// sessions are taken over that soon. On a store of one process no other can take a session
/// over (the file is locked, and a crashed predecessor's leases are released at start), so a
/// lease lasts an hour and its renewal (a write per held session) comes every twenty minutes
/// instead of every few seconds; the heartbeat alone keeps the lease's own cadence.
pub(crate) fn hold(lease: std::time::Duration, several_processes: bool) -> std::time::Duration {
    if several_processes {
        lease
    } else {
        lease.max(SINGLE_NODE_HOLD)
    }
}

/// What the store says of the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FleetCount {
    /// Replicas whose heartbeat is recent (this one included).
    pub(crate) live: usize,
    /// Sessions still tracking, held or not.
    pub(crate) tracking: usize,
}

/// What to do with this replica's holdings now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Plan {
    /// Unheld sessions to claim (one batch at most).
    pub(crate) claim: usize,
    /// Held sessions to hand back to the others.
    pub(crate) hand_back: usize,
}

/// This replica's fair share of the tracking sessions: all of them alone (or on a store of one
/// process), an even part of them plus a little slack among live replicas; `None` when the
/// store did not answer (then nothing is claimed or handed back on stale information).
pub(crate) fn share(fleet: Option<FleetCount>, several_processes: bool) -> Option<usize> {
    let fleet = fleet?;
    if !several_processes || fleet.live <= 1 {
        return Some(usize::MAX);
    }
    Some(fleet.tracking.div_ceil(fleet.live) + SHARE_SLACK)
}

/// The plan for a replica holding `held` sessions with this `share`.
pub(crate) fn plan(share: Option<usize>, held: usize) -> Plan {
    let Some(share) = share else {
        return Plan::default();
    };
    Plan {
        claim: share.saturating_sub(held).min(CLAIM_BATCH),
        hand_back: held.saturating_sub(share),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(live: usize, tracking: usize) -> Option<FleetCount> {
        Some(FleetCount { live, tracking })
    }

    #[test]
    fn one_process_holds_for_an_hour_a_fleet_for_its_lease() {
        let lease = std::time::Duration::from_secs(30);
        assert_eq!(hold(lease, true), lease);
        assert_eq!(hold(lease, false), SINGLE_NODE_HOLD);
        let long = std::time::Duration::from_secs(7200);
        assert_eq!(hold(long, false), long);
    }

    #[test]
    fn alone_or_on_one_process_a_replica_takes_everything_a_batch_at_a_time() {
        assert_eq!(share(count(1, 5000), true), Some(usize::MAX));
        // A dead predecessor's heartbeat on SQLite does not halve the share.
        assert_eq!(share(count(2, 5000), false), Some(usize::MAX));
        let first = plan(share(count(1, 5000), true), 0);
        assert_eq!(
            first,
            Plan {
                claim: CLAIM_BATCH,
                hand_back: 0
            }
        );
        assert_eq!(plan(share(count(1, 5000), true), 4990).claim, CLAIM_BATCH);
    }

    #[test]
    fn replicas_share_evenly_with_slack_and_hand_back_the_excess() {
        let even = share(count(3, 300), true);
        assert_eq!(even, Some(100 + SHARE_SLACK));
        assert_eq!(
            plan(even, 0),
            Plan {
                claim: 108,
                hand_back: 0
            }
        );
        assert_eq!(plan(even, 108), Plan::default());
        // Within the slack: nothing moves (no churn around the even share).
        assert_eq!(plan(even, 105).hand_back, 0);
        // A replica that held everything before two others joined hands back the excess.
        assert_eq!(
            plan(even, 300),
            Plan {
                claim: 0,
                hand_back: 192
            }
        );
    }

    #[test]
    fn a_silent_store_changes_nothing() {
        assert_eq!(share(None, true), None);
        assert_eq!(plan(None, 0), Plan::default());
        assert_eq!(plan(None, 10_000), Plan::default());
    }

    #[test]
    fn an_uneven_count_rounds_up_so_every_session_has_a_replica() {
        let share = share(count(3, 10), true).unwrap_or_default();
        assert!(share * 3 >= 10);
    }
}
