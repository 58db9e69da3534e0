//! Network coordinates between Serf and the catalog: the agent reports its
//! own LAN coordinate periodically (Consul's `sendCoordinate`), updates are
//! checked as Consul's `Coordinate.Update` checks them, and estimated round
//! trips are computed for `?near` sorting and `rtt`.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use state::{Command, Coord, NodeCoordinate, Outcome};

use crate::Agent;

/// Consul's `sync_coordinate_interval_min`: no agent reports more often.
pub const SYNC_INTERVAL_MIN: Duration = Duration::from_secs(15);

/// Consul's `sync_coordinate_rate_target`: updates per second the servers
/// should see from the whole cluster; larger clusters report less often.
pub const SYNC_RATE_TARGET: f64 = 64.0;

/// The first report goes out soon after start, so a fresh agent (and a
/// test) sees its node's coordinate without waiting a full interval.
const FIRST_SYNC: Duration = Duration::from_millis(500);

/// Until a report has landed (a server's node registers only once there is
/// a leader, and updates for unknown nodes are dropped), retry this soon.
const UNTIL_STORED: Duration = Duration::from_secs(1);

/// Why `PUT /v1/coordinate/update` refused a coordinate (Consul's texts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordinateError {
    #[error("invalid coordinate")]
    Invalid,
    #[error("incompatible coordinate")]
    Incompatible,
}

/// The catalog's form of a Serf coordinate.
pub fn to_catalog(c: &coordinate::Coordinate) -> Coord {
    Coord {
        vec: c.vec.clone(),
        error: c.error,
        adjustment: c.adjustment,
        height: c.height,
    }
}

fn from_catalog(c: &Coord) -> coordinate::Coordinate {
    coordinate::Coordinate {
        vec: c.vec.clone(),
        error: c.error,
        adjustment: c.adjustment,
        height: c.height,
    }
}

/// Estimated round trip between two coordinates, in seconds; `None` when
/// their dimensions differ (Consul's Go would panic there; we treat it as
/// unknown).
pub fn estimated_rtt(a: &Coord, b: &Coord) -> Option<f64> {
    from_catalog(a).distance_to(&from_catalog(b))
}

/// Consul's `RateScaledInterval`: one report per member at `rate` per
/// second across the cluster, but never more often than `min`.
pub fn scaled_interval(rate: f64, min: Duration, members: usize) -> Duration {
    let scaled = Duration::from_secs_f64(members as f64 / rate);
    scaled.max(min)
}

impl Agent {
    /// This agent's LAN coordinate as Serf holds it (the origin of a fresh
    /// Vivaldi client when there is no pool yet).
    pub fn lan_coordinate(&self) -> coordinate::Coordinate {
        self.lan()
            .and_then(|lan| lan.coordinate_of(&self.config().node_name))
            .unwrap_or_else(|| coordinate::Coordinate::new(&coordinate::Config::default()))
    }

    /// Checks a coordinate sent to `/v1/coordinate/update` as Consul's
    /// server does: finite values, and as many dimensions as ours.
    pub fn check_coordinate(&self, coord: &Coord) -> Result<(), CoordinateError> {
        if !coord.is_valid() {
            return Err(CoordinateError::Invalid);
        }
        if coord.vec.len() != self.lan_coordinate().vec.len() {
            return Err(CoordinateError::Incompatible);
        }
        Ok(())
    }

    /// Whether the catalog holds this node's coordinate: this agent's own
    /// store on a server, a server's answer on a client.
    async fn coordinate_stored(&self) -> bool {
        let node = &self.config().node_name;
        let Some(router) = self.router() else {
            return self.store().snapshot().coordinate(node, "").is_some();
        };
        let request = consensus::ApiRequest {
            method: "GET".to_owned(),
            uri: format!("/v1/coordinate/node/{node}?stale"),
            headers: Vec::new(),
            body: Vec::new(),
        };
        router
            .api(&request)
            .await
            .is_ok_and(|reply| reply.status == 200)
    }

    /// Sends one report of this node's coordinate.
    async fn send_coordinate(&self) {
        let update = NodeCoordinate {
            node: self.config().node_name.clone(),
            segment: String::new(),
            coord: to_catalog(&self.lan_coordinate()),
        };
        match self
            .apply(Command::CoordinateBatchUpdate(vec![update]))
            .await
        {
            Ok((_, Outcome::Write(Ok(())))) => {}
            Ok((_, other)) => tracing::warn!(?other, "coordinate update refused"),
            Err(error) => tracing::warn!(%error, "coordinate update error"),
        }
    }
}

/// Reports this agent's coordinate until it stops: first shortly after
/// start (again each second until one is stored), then every interval scaled to the pool's size, plus a random
/// stagger of up to one interval so agents do not report in step.
pub async fn run(agent: Arc<Agent>) {
    let mut wait = FIRST_SYNC;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = agent.stopping() => return,
        }
        agent.send_coordinate().await;
        if !agent.coordinate_stored().await {
            wait = UNTIL_STORED;
            continue;
        }
        let members = agent.lan().map_or(1, |lan| lan.members().len());
        let interval = scaled_interval(SYNC_RATE_TARGET, SYNC_INTERVAL_MIN, members);
        let stagger = rand::rng().random_range(0.0..1.0);
        wait = interval + interval.mul_f64(stagger);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_grows_with_the_cluster_past_the_minimum() {
        let min = SYNC_INTERVAL_MIN;
        assert_eq!(scaled_interval(SYNC_RATE_TARGET, min, 1), min);
        assert_eq!(scaled_interval(SYNC_RATE_TARGET, min, 960), min);
        assert_eq!(
            scaled_interval(SYNC_RATE_TARGET, min, 6400),
            Duration::from_secs(100)
        );
    }

    #[test]
    fn rtt_is_estimated_and_incompatible_dimensions_give_none() {
        let a = Coord {
            vec: vec![0.0, 0.0],
            error: 1.5,
            adjustment: 0.0,
            height: 0.001,
        };
        let b = Coord {
            vec: vec![0.003, 0.004],
            ..a.clone()
        };
        let rtt = estimated_rtt(&a, &b).unwrap();
        assert!((rtt - 0.007).abs() < 1e-12, "{rtt}");
        let c = Coord {
            vec: vec![0.0; 3],
            ..a.clone()
        };
        assert_eq!(estimated_rtt(&a, &c), None);
    }
}
