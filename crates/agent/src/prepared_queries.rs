//! The agent's side of prepared queries: Consul's checks on a query before
//! it is logged (`parseQuery`), the ID of a new one, and the
//! create/update/delete writes.

use state::{Command, Outcome, PreparedQuery, WatchSet};

use crate::agent::{random_uuid, Agent};
use crate::go_duration::parse_go_duration;

/// What Consul shows instead of a token the reader may not see; a query
/// submitted with it was copied from such a listing.
pub const REDACTED_TOKEN: &str = "<hidden>";

/// A refused prepared-query write; the text is Consul's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

/// Consul's `parseQuery`: what a query must satisfy before it is logged.
/// Name uniqueness, the session and the template are checked when the
/// command is applied, where the state they depend on is.
pub fn check_query(query: &PreparedQuery) -> Result<(), String> {
    if query.name.is_empty() && !query.is_template() && query.session.is_empty() {
        return Err("Must be bound to a session".into());
    }
    if query.token == REDACTED_TOKEN {
        return Err(format!(
            "Bad Token '{}', it looks like a query definition with a redacted token was submitted",
            query.token
        ));
    }
    let service = &query.service;
    if service.service.is_empty() {
        return Err("Must provide a Service name to query".into());
    }
    let failover = &service.failover;
    if failover.nearest_n < 0 {
        return Err(format!(
            "Bad NearestN '{}', must be >= 0",
            failover.nearest_n
        ));
    }
    if (failover.nearest_n != 0 || !failover.datacenters.is_empty()) && !failover.targets.is_empty()
    {
        return Err("Targets cannot be populated with NearestN or Datacenters".into());
    }
    if !query.dns.ttl.is_empty() {
        let ttl = parse_go_duration(&query.dns.ttl)
            .map_err(|e| format!("Bad DNS TTL '{}': {e}", query.dns.ttl))?;
        if ttl < 0 {
            return Err(format!("DNS TTL '{ttl}', must be >=0"));
        }
    }
    Ok(())
}

impl Agent {
    /// Creates a query; returns its new ID.
    pub async fn create_prepared_query(&self, query: PreparedQuery) -> Result<String, QueryError> {
        if !query.id.is_empty() {
            return Err(QueryError(
                "ID must be empty when creating a new prepared query".into(),
            ));
        }
        let id = random_uuid();
        self.write_prepared_query(PreparedQuery {
            id: id.clone(),
            ..query
        })
        .await?;
        Ok(id)
    }

    /// Replaces the query with `query.id`, which must exist.
    pub async fn update_prepared_query(&self, query: PreparedQuery) -> Result<(), QueryError> {
        self.require_prepared_query(&query.id)?;
        self.write_prepared_query(query).await
    }

    /// Deletes a query, which must exist.
    pub async fn delete_prepared_query(&self, id: &str) -> Result<(), QueryError> {
        self.require_prepared_query(id)?;
        self.apply_query_command(Command::PreparedQueryDelete { id: id.to_owned() })
            .await
    }

    fn require_prepared_query(&self, id: &str) -> Result<(), QueryError> {
        let (_, found) = self
            .store()
            .snapshot()
            .prepared_query(id, &mut WatchSet::new());
        match found {
            Some(_) => Ok(()),
            None => Err(QueryError(format!(
                "Cannot modify non-existent prepared query: '{id}'"
            ))),
        }
    }

    async fn write_prepared_query(&self, query: PreparedQuery) -> Result<(), QueryError> {
        check_query(&query).map_err(|e| QueryError(format!("Invalid prepared query: {e}")))?;
        self.apply_query_command(Command::PreparedQuerySet(Box::new(query)))
            .await
    }

    async fn apply_query_command(&self, command: Command) -> Result<(), QueryError> {
        match self.apply(command).await {
            Ok((_, Outcome::Write(Ok(())))) => Ok(()),
            Ok((_, Outcome::Write(Err(e)))) => Err(QueryError(format!("raft apply failed: {e}"))),
            Ok((_, other)) => Err(QueryError(format!("unexpected outcome: {other:?}"))),
            Err(e) => Err(QueryError(format!("raft apply failed: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str, service: &str) -> PreparedQuery {
        PreparedQuery {
            name: name.into(),
            service: state::ServiceQuery {
                service: service.into(),
                ..state::ServiceQuery::default()
            },
            ..PreparedQuery::default()
        }
    }

    #[test]
    fn checks_queries_as_consul_does() {
        assert_eq!(
            check_query(&named("", "web")).unwrap_err(),
            "Must be bound to a session"
        );
        assert_eq!(
            check_query(&named("q", "")).unwrap_err(),
            "Must provide a Service name to query"
        );
        let mut q = named("q", "web");
        q.service.failover.nearest_n = -1;
        assert_eq!(
            check_query(&q).unwrap_err(),
            "Bad NearestN '-1', must be >= 0"
        );
        let mut q = named("q", "web");
        q.dns.ttl = "soon".into();
        assert_eq!(
            check_query(&q).unwrap_err(),
            "Bad DNS TTL 'soon': time: invalid duration \"soon\""
        );
        let mut q = named("q", "web");
        q.dns.ttl = "10s".into();
        assert!(check_query(&q).is_ok());
    }
}
