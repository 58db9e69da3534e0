//! Prepared-query failover (Consul's `queryFailover`): when a query finds
//! no healthy instance in this datacenter, the server running it asks the
//! datacenters the query names, one after another, to run it there, and
//! answers with the first that finds something.
//!
//! The datacenters tried are the query's `NearestN` nearest by WAN round
//! trip, then its `Datacenters` (or the `Datacenter` of each of its
//! `Targets`) in order, skipping any not known in the WAN pool (this one
//! included) and any already taken from the nearest. A datacenter that
//! cannot be reached is passed over, but still counts in `Failovers`.

use state::{ExecuteOptions, Execution, PreparedQuery, QueryFailover, Snapshot};

use crate::agent::Agent;
use crate::coordinates::estimated_rtt;
use crate::federation::Federation;

/// The datacenters to try, in order, given the other datacenters of the
/// WAN pool nearest first (`nearest`, which never holds this one).
pub fn failover_datacenters(failover: &QueryFailover, nearest: &[String]) -> Vec<String> {
    let take = usize::try_from(failover.nearest_n.max(0)).unwrap_or(usize::MAX);
    let mut chosen: Vec<String> = nearest.iter().take(take).cloned().collect();
    let from_nearest = chosen.len();
    // `Datacenters` wins over `Targets`; a query holds only one of them.
    let listed: Vec<&str> = if failover.datacenters.is_empty() {
        failover
            .targets
            .iter()
            .map(|t| t.datacenter.as_str())
            .filter(|dc| !dc.is_empty())
            .collect()
    } else {
        failover.datacenters.iter().map(String::as_str).collect()
    };
    for datacenter in listed {
        if !nearest.iter().any(|known| known == datacenter) {
            tracing::debug!(%datacenter, "skipping unknown datacenter in prepared query");
            continue;
        }
        // Only the nearest ones are deduplicated against, as in Consul.
        if !chosen[..from_nearest].iter().any(|dc| dc == datacenter) {
            chosen.push(datacenter.to_owned());
        }
    }
    chosen
}

impl Federation {
    /// `query` found nothing healthy here (`run`): tries the datacenters
    /// it fails over to until one finds instances. The answer is the last
    /// datacenter's that answered (this one's `run` if none did), with
    /// `failovers` the number of datacenters tried.
    pub async fn fail_over(
        &self,
        query: &PreparedQuery,
        limit: usize,
        run: Execution,
    ) -> Execution {
        let targets = failover_datacenters(
            &query.service.failover,
            &self.other_datacenters_by_distance(),
        );
        let mut answer = run;
        let mut failovers: u32 = 0;
        for datacenter in targets {
            failovers += 1;
            match self.execute_remote(&datacenter, query, limit).await {
                Ok(remote) => {
                    answer = remote;
                    if !answer.nodes.is_empty() {
                        break;
                    }
                }
                Err(error) => tracing::warn!(
                    service = %query.service.service,
                    %datacenter,
                    %error,
                    "failed querying for service in datacenter"
                ),
            }
        }
        answer.failovers = failovers;
        answer
    }
}

impl Agent {
    /// Consul's `PreparedQuery.Execute` on a server: `query` run against
    /// `snapshot` as `options` say and, when nothing healthy is found
    /// here, failed over to other datacenters through the WAN pool.
    pub async fn execute_prepared_query(
        &self,
        snapshot: &Snapshot,
        query: &PreparedQuery,
        options: &ExecuteOptions<'_>,
    ) -> Execution {
        let run = snapshot.execute_prepared_query(query, options, &estimated_rtt);
        self.fail_over_if_empty(query, options.limit, run).await
    }

    /// Fails `query` over when `run`, this datacenter's, found nothing; a
    /// server without a WAN pool has nowhere to go.
    pub async fn fail_over_if_empty(
        &self,
        query: &PreparedQuery,
        limit: usize,
        run: Execution,
    ) -> Execution {
        match self.federation() {
            Some(federation) if run.nodes.is_empty() => {
                federation.fail_over(query, limit, run).await
            }
            _ => run,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use state::FailoverTarget;

    fn dcs(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn failover(nearest_n: i64, datacenters: &[&str]) -> QueryFailover {
        QueryFailover {
            nearest_n,
            datacenters: dcs(datacenters),
            targets: Vec::new(),
        }
    }

    #[test]
    fn nearest_first_then_the_listed_ones_in_order() {
        let nearest = dcs(&["near", "mid", "far"]);
        assert_eq!(
            failover_datacenters(&failover(2, &[]), &nearest),
            ["near", "mid"]
        );
        assert_eq!(
            failover_datacenters(&failover(0, &["far", "near"]), &nearest),
            ["far", "near"]
        );
        assert_eq!(
            failover_datacenters(&failover(1, &["far", "near", "mid"]), &nearest),
            ["near", "far", "mid"]
        );
        // More asked for than there are: all of them.
        assert_eq!(
            failover_datacenters(&failover(9, &[]), &nearest),
            ["near", "mid", "far"]
        );
        assert!(failover_datacenters(&failover(0, &[]), &nearest).is_empty());
    }

    #[test]
    fn unknown_and_local_datacenters_are_skipped() {
        // `nearest` never holds the local datacenter, so naming it skips it.
        let nearest = dcs(&["dc2", "dc3"]);
        assert_eq!(
            failover_datacenters(&failover(0, &["dc1", "nowhere", "dc3", "DC2"]), &nearest),
            ["dc3"]
        );
        assert!(failover_datacenters(&failover(3, &["dc9"]), &[]).is_empty());
    }

    #[test]
    fn a_nearest_datacenter_is_not_tried_twice() {
        let nearest = dcs(&["dc2", "dc3"]);
        assert_eq!(
            failover_datacenters(&failover(1, &["dc2", "dc3"]), &nearest),
            ["dc2", "dc3"]
        );
        // Listed twice is tried twice, as Consul does.
        assert_eq!(
            failover_datacenters(&failover(0, &["dc3", "dc3"]), &nearest),
            ["dc3", "dc3"]
        );
    }

    #[test]
    fn targets_name_datacenters_and_peers_are_passed_over() {
        let nearest = dcs(&["dc2", "dc3"]);
        let targets = QueryFailover {
            nearest_n: 0,
            datacenters: Vec::new(),
            targets: vec![
                FailoverTarget {
                    peer: "cluster-b".into(),
                    datacenter: String::new(),
                },
                FailoverTarget {
                    peer: String::new(),
                    datacenter: "dc3".into(),
                },
                FailoverTarget {
                    peer: String::new(),
                    datacenter: "gone".into(),
                },
                FailoverTarget {
                    peer: String::new(),
                    datacenter: "dc2".into(),
                },
            ],
        };
        assert_eq!(failover_datacenters(&targets, &nearest), ["dc3", "dc2"]);
    }
}
