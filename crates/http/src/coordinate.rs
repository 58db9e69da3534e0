//! `/v1/coordinate/*`: the network coordinates of the datacenter's servers
//! and of every catalog node, and the update agents report theirs with.

use std::sync::Arc;

use agent::Agent;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use state::{Command, Coord, NodeCoordinate, Outcome};

use crate::blocking;
use crate::catalog::tail;
use crate::error::HttpError;
use crate::params::{check_datacenter, Params};
use crate::reply;

/// Consul's `types.AreaWAN`: the one area there is without Enterprise.
const AREA_WAN: &str = "wan";

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CoordJson {
    vec: Vec<f64>,
    error: f64,
    adjustment: f64,
    height: f64,
}

impl From<&Coord> for CoordJson {
    fn from(c: &Coord) -> CoordJson {
        CoordJson {
            vec: c.vec.clone(),
            error: c.error,
            adjustment: c.adjustment,
            height: c.height,
        }
    }
}

/// Consul's `structs.Coordinate` as JSON (`Partition` is Enterprise's and
/// omitted when empty, so never shown here).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EntryJson {
    node: String,
    segment: String,
    coord: CoordJson,
}

impl From<&NodeCoordinate> for EntryJson {
    fn from(c: &NodeCoordinate) -> EntryJson {
        EntryJson {
            node: c.node.clone(),
            segment: c.segment.clone(),
            coord: CoordJson::from(&c.coord),
        }
    }
}

#[derive(Serialize)]
struct DatacenterMapJson {
    #[serde(rename = "Datacenter")]
    datacenter: String,
    #[serde(rename = "AreaID")]
    area_id: &'static str,
    #[serde(rename = "Coordinates")]
    coordinates: Vec<EntryJson>,
}

/// `GET /v1/coordinate/datacenters`: each datacenter's servers with their
/// WAN coordinates, from the WAN pool. Consul names WAN members
/// `<node>.<dc>` and strips that suffix here, so the names are plain node
/// names. Without a WAN pool (an agent on its own) the one datacenter it
/// knows lists its servers' LAN coordinates instead.
pub async fn datacenters(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["GET"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let entry = |node: String, coord| EntryJson {
        node,
        segment: String::new(),
        coord: CoordJson::from(&agent::coordinates::to_catalog(&coord)),
    };
    if let Some(federation) = agent.federation() {
        let maps: Vec<DatacenterMapJson> = federation
            .datacenter_maps()
            .into_iter()
            .map(|(datacenter, servers)| DatacenterMapJson {
                datacenter,
                area_id: AREA_WAN,
                coordinates: servers
                    .into_iter()
                    .filter_map(|s| Some(entry(s.node, s.coordinate?)))
                    .collect(),
            })
            .collect();
        return reply::ok(&maps, reply::pretty(agent.config().dev, &params));
    }
    let datacenter = agent.config().datacenter.clone();
    let mut coordinates: Vec<EntryJson> = match agent.lan() {
        Some(lan) => lan
            .servers(&datacenter)
            .iter()
            .filter_map(|server| Some(entry(server.name.clone(), lan.coordinate_of(&server.name)?)))
            .collect(),
        None => Vec::new(),
    };
    coordinates.sort_by(|a, b| a.node.cmp(&b.node));
    let maps = [DatacenterMapJson {
        datacenter,
        area_id: AREA_WAN,
        coordinates,
    }];
    reply::ok(&maps, reply::pretty(agent.config().dev, &params))
}

/// Keeps the entries of `?segment=` when it is given (even empty).
fn in_segment<'a>(params: &'a Params) -> impl Fn(&&Arc<NodeCoordinate>) -> bool + 'a {
    move |c| params.get("segment").is_none_or(|s| c.segment == s)
}

/// `GET /v1/coordinate/nodes`: every node's LAN coordinate (blocking).
pub async fn nodes(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["GET"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    blocking::respond(
        &agent,
        &params,
        |snap, ws| snap.coordinates(ws),
        |coordinates, pretty| {
            let json: Vec<EntryJson> = coordinates
                .iter()
                .filter(in_segment(&params))
                .map(|c| EntryJson::from(&**c))
                .collect();
            reply::ok(&json, pretty)
        },
    )
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

/// `GET /v1/coordinate/node/:node`: one node's coordinates, a 404 (with
/// the query headers, and no body) when it has none.
pub async fn node(State(agent): State<Arc<Agent>>, method: Method, uri: Uri) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["GET"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let name = tail(&uri, "/v1/coordinate/node/");
    blocking::respond(
        &agent,
        &params,
        |snap, ws| snap.node_coordinates(&name, ws),
        |coordinates, pretty| {
            let json: Vec<EntryJson> = coordinates
                .iter()
                .filter(in_segment(&params))
                .map(|c| EntryJson::from(&**c))
                .collect();
            if json.is_empty() {
                return StatusCode::NOT_FOUND.into_response();
            }
            reply::ok(&json, pretty)
        },
    )
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct UpdateBody {
    datacenter: String,
    node: String,
    segment: String,
    coord: Option<CoordJson>,
}

/// `PUT /v1/coordinate/update`: records a node's coordinate. Checked as
/// Consul's server checks it; an unknown node is accepted and dropped when
/// applied, as Consul does.
pub async fn update(
    State(agent): State<Arc<Agent>>,
    method: Method,
    uri: Uri,
    body: Body,
) -> Response {
    if let Some(refused) = reply::refuse_method(&method, &["PUT"]) {
        return refused;
    }
    let params = Params::parse(uri.query());
    let result = async {
        let bytes = crate::body::read(body, crate::body::MAX_DEFINITION_BODY).await?;
        let body: UpdateBody = crate::body::decode(&bytes)?;
        check_datacenter(&agent, &params)?;
        if !body.datacenter.is_empty()
            && !body
                .datacenter
                .eq_ignore_ascii_case(&agent.config().datacenter)
        {
            return Err(HttpError::internal("No path to datacenter"));
        }
        // A missing coordinate is no valid one (Consul's Go would crash).
        let coord = body.coord.map_or(
            Coord {
                vec: Vec::new(),
                error: f64::NAN,
                adjustment: 0.0,
                height: 0.0,
            },
            |c| Coord {
                vec: c.vec,
                error: c.error,
                adjustment: c.adjustment,
                height: c.height,
            },
        );
        agent
            .check_coordinate(&coord)
            .map_err(|e| HttpError::internal(e.to_string()))?;
        let update = NodeCoordinate {
            node: body.node,
            segment: body.segment,
            coord,
        };
        match agent
            .apply(Command::CoordinateBatchUpdate(vec![update]))
            .await
        {
            Ok((_, Outcome::Write(Ok(())))) => Ok(reply::empty_ok()),
            Ok((_, Outcome::Write(Err(error)))) => Err(HttpError::internal(error.0)),
            Ok((_, other)) => Err(HttpError::internal(format!(
                "unexpected outcome: {other:?}"
            ))),
            Err(error) => Err(HttpError::internal(error.to_string())),
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
