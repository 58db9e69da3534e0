//! The hickory [`RequestHandler`]: one catalog view per query, answered by
//! [`answer`](crate::answer), cut to size, written back.

use std::sync::Arc;

use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::Name;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};

use crate::answer::{self, Outcome, Reply};
use crate::config::{DnsConfig, Settings};
use crate::recursor;
use crate::remote::{self, OtherDatacenters};
use crate::trim::{self, Transport};
use crate::wire::{self, Sections};
use crate::{Catalog, CatalogSource, SnapshotSource};

/// Answers DNS queries from the catalog; hand it to a hickory
/// [`Server`](hickory_server::Server) (or use [`serve`](crate::serve)).
pub struct CatalogDns {
    catalogs: CatalogSource,
    settings: Settings,
    other_datacenters: Option<Arc<dyn OtherDatacenters>>,
}

impl CatalogDns {
    /// Answers from the state-store versions `snapshots` gives (a server).
    pub fn new(snapshots: SnapshotSource, config: DnsConfig) -> CatalogDns {
        let catalogs: CatalogSource = Arc::new(move || -> Arc<dyn Catalog> { snapshots() });
        CatalogDns::reading(catalogs, config)
    }

    /// Answers from whatever catalog `catalogs` gives: a client agent's
    /// reads through a server, formatted with this agent's own `config`.
    pub fn reading(catalogs: CatalogSource, config: DnsConfig) -> CatalogDns {
        CatalogDns {
            catalogs,
            settings: Settings::new(&config),
            other_datacenters: None,
        }
    }

    /// Answers names of other datacenters through `remote` (a server's
    /// WAN pool, or a client's way to its server).
    pub fn with_other_datacenters(mut self, remote: Arc<dyn OtherDatacenters>) -> CatalogDns {
        self.other_datacenters = Some(remote);
        self
    }
}

/// The header and sections of a response about to be sent.
struct Response<'a> {
    metadata: Metadata,
    edns: Option<Edns>,
    sections: Sections<'a>,
}

/// An OPT record echoing the query's UDP size, if the query had one.
fn echo_edns(request: &Request) -> Option<Edns> {
    request.edns.as_ref().map(|edns| {
        let mut echo = Edns::new();
        echo.set_max_payload(edns.max_payload().max(512));
        echo
    })
}

async fn send<R: ResponseHandler>(
    request: &Request,
    mut handle: R,
    response: Response<'_>,
) -> ResponseInfo {
    let message = wire::response(
        &request.queries,
        response.edns.as_ref(),
        response.metadata,
        response.sections,
    );
    match handle.send_response(message).await {
        Ok(info) => info,
        Err(error) => {
            tracing::warn!(%error, "could not send a DNS response");
            let mut metadata = response.metadata;
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        }
    }
}

/// A response with no records.
fn bare(request: &Request, rcode: ResponseCode, recursion_available: bool) -> Response<'static> {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = rcode;
    metadata.recursion_available = recursion_available;
    Response {
        metadata,
        edns: echo_edns(request),
        sections: Sections::default(),
    }
}

impl CatalogDns {
    async fn recurse<R: ResponseHandler>(&self, request: &Request, handle: R) -> ResponseInfo {
        if !self.settings.can_recurse() {
            // As for any name outside the domains Consul serves.
            return send(request, handle, bare(request, ResponseCode::Refused, false)).await;
        }
        let forwarded = recursor::forward(
            request.as_slice(),
            request.metadata.id,
            &self.settings.recursors,
            self.settings.recursor_timeout,
            request.protocol() == Protocol::Tcp,
        )
        .await;
        let Some(upstream) = forwarded else {
            return send(request, handle, bare(request, ResponseCode::ServFail, true)).await;
        };
        let mut metadata = upstream.metadata;
        metadata.id = request.metadata.id;
        let edns = request.edns.as_ref().map(|_| {
            let mut echo = upstream.edns.clone().unwrap_or_default();
            echo.set_max_payload(echo_edns(request).map_or(512, |e| e.max_payload()));
            echo
        });
        let response = Response {
            metadata,
            edns,
            sections: Sections {
                answers: &upstream.answers,
                authorities: &upstream.authorities,
                additionals: &upstream.additionals,
            },
        };
        send(request, handle, response).await
    }

    async fn reply<R: ResponseHandler>(
        &self,
        request: &Request,
        handle: R,
        mut reply: Reply,
    ) -> ResponseInfo {
        let edns = echo_edns(request);
        let trimmed = trim::trim(
            &mut reply,
            &Transport {
                udp: request.protocol() == Protocol::Udp,
                queries: &request.queries,
                edns: edns.as_ref(),
                udp_answer_limit: self.settings.udp_answer_limit,
            },
        );
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        metadata.recursion_available = self.settings.can_recurse();
        metadata.response_code = reply.rcode;
        metadata.truncation = trimmed && self.settings.enable_truncate;
        let response = Response {
            metadata,
            edns,
            sections: Sections {
                answers: &reply.answers,
                authorities: &reply.authorities,
                additionals: &reply.additionals,
            },
        };
        send(request, handle, response).await
    }
}

#[async_trait::async_trait]
impl RequestHandler for CatalogDns {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        handle: R,
    ) -> ResponseInfo {
        if request.metadata.op_code != OpCode::Query {
            return send(request, handle, bare(request, ResponseCode::NotImp, false)).await;
        }
        // Like Consul, answer the first question only.
        let Some(query) = request.queries.queries().first() else {
            return send(request, handle, bare(request, ResponseCode::Refused, false)).await;
        };
        let qname = Name::from(query.name());
        let catalog = (self.catalogs)();
        let outcome = answer::answer(&*catalog, &self.settings, &qname, query.query_type()).await;
        match outcome {
            Outcome::Recurse => self.recurse(request, handle).await,
            Outcome::Reply(reply) => self.reply(request, handle, reply).await,
            Outcome::Fetch(fetch) => {
                let fetched = remote::fetch(self.other_datacenters.as_deref(), &fetch.wanted).await;
                let reply = answer::answer_fetched(
                    &self.settings,
                    &qname,
                    query.query_type(),
                    &fetch,
                    fetched,
                );
                self.reply(request, handle, reply).await
            }
        }
    }
}
