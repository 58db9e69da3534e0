//! Consul v1 HTTP API.
