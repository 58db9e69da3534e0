//! What a server answers for its client agents: their HTTP API calls with
//! its own router and their DNS interface's catalog reads from its own
//! state store; and the catalog reads of other datacenters' servers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use agent::Agent;
use consensus::{ApiReply, ApiRequest, DcRead, DcReadReply, DnsRead, DnsRows, ForwardedCalls};

pub struct ServerSide {
    pub api: http_api::forward::ServerApi,
    pub agent: Arc<Agent>,
}

impl ForwardedCalls for ServerSide {
    fn api(&self, request: ApiRequest) -> Pin<Box<dyn Future<Output = ApiReply> + Send>> {
        let api = self.api.clone();
        Box::pin(async move { api.answer(request).await })
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
