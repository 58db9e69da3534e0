//! A server's answers to the reads servers of other datacenters make of
//! its catalog ([`DcRead`]): for their DNS names of this datacenter and
//! their prepared queries failing over here. Each is answered from this
//! server's own state, as a stale read (Consul's DNS asks with
//! `AllowStale`).

use consensus::{DcRead, DcReadReply};

use crate::agent::Agent;

impl Agent {
    /// Answers `read` from this server's catalog.
    pub async fn answer_dc_read(&self, read: DcRead) -> DcReadReply {
        let snapshot = self.store().snapshot();
        let datacenter = &self.config().datacenter;
        match read {
            DcRead::ServiceHealth { service } => DcReadReply::Instances(
                snapshot
                    .service_health(&service)
                    .map(|view| view.to_vec())
                    .unwrap_or_default(),
            ),
            DcRead::Node { name } => DcReadReply::Node(snapshot.node(&name).map(|n| (*n).clone())),
            DcRead::ExecuteQuery { id_or_name } => {
                let query = match snapshot.resolve_prepared_query(&id_or_name) {
                    Ok(Some(query)) => query,
                    Ok(None) => return DcReadReply::Execution(None),
                    // Consul's `ErrQueryNotFound` for an empty name.
                    Err(reason) if reason == "Missing query ID" => {
                        return DcReadReply::Execution(None)
                    }
                    Err(reason) => return DcReadReply::Failed(reason),
                };
                // The asker is elsewhere: nothing here is near it.
                let run = snapshot.execute_prepared_query_for_elsewhere(&query, datacenter, 0);
                let run = self.fail_over_if_empty(&query, 0, run).await;
                DcReadReply::Execution(Some(Box::new(run)))
            }
            DcRead::ExecuteRemote { query, limit } => {
                let limit = usize::try_from(limit).unwrap_or(usize::MAX);
                let run = snapshot.execute_prepared_query_for_elsewhere(&query, datacenter, limit);
                DcReadReply::Execution(Some(Box::new(run)))
            }
        }
    }
}
