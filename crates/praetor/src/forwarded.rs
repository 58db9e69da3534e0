//! What a server answers for its client agents: their HTTP API calls with
//! its own router, their DNS interface's catalog reads from its own state
//! store (and whole DNS queries with its own DNS server); and the catalog
//! reads of other datacenters' servers, from its own state.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use agent::Agent;
use consensus::{
    ApiReply, ApiRequest, DcRead, DcReadReply, DnsQuery, DnsRead, DnsReply, DnsRows, ForwardedCalls,
};
use dns::CatalogDns;

pub struct ServerSide {
    pub api: http_api::forward::ServerApi,
    pub dns: Arc<CatalogDns>,
    pub agent: Arc<Agent>,
}

impl ForwardedCalls for ServerSide {
    fn api(&self, request: ApiRequest) -> Pin<Box<dyn Future<Output = ApiReply> + Send>> {
        let api = self.api.clone();
        Box::pin(async move { api.answer(request).await })
    }

    fn dns(&self, query: DnsQuery) -> Pin<Box<dyn Future<Output = DnsReply> + Send>> {
        let dns = Arc::clone(&self.dns);
        Box::pin(async move {
            // A client that sent no usable address still gets an answer.
            let from = query
                .from
                .parse()
                .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
            DnsReply {
                message: dns::relay::answer_raw(&dns, query.message, from, query.tcp).await,
            }
        })
    }

    fn dc_read(&self, read: DcRead) -> Pin<Box<dyn Future<Output = DcReadReply> + Send>> {
        let agent = Arc::clone(&self.agent);
        Box::pin(async move { agent.answer_dc_read(read).await })
    }

    fn dns_read(&self, read: DnsRead) -> Pin<Box<dyn Future<Output = DnsRows> + Send>> {
        let agent = Arc::clone(&self.agent);
        Box::pin(async move { crate::dns_reads::answer_read(&agent, read).await })
    }
}
