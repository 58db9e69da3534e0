//! Consul's service definition: the body of `/v1/agent/service/register`
//! and the `service`/`services` blocks of config files.

use std::collections::BTreeMap;

use serde::Deserialize;
use state::{ServiceAddress, ServiceInstance};

/// Why a definition was refused; the text is Consul's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DefinitionError(pub String);

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "PascalCase", default)]
pub struct AddressDefinition {
    pub address: String,
    pub port: u16,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "PascalCase", default)]
pub struct WeightsDefinition {
    pub passing: i64,
    pub warning: i64,
}

impl Default for WeightsDefinition {
    fn default() -> Self {
        WeightsDefinition {
            passing: 1,
            warning: 1,
        }
    }
}

/// The body of `/v1/agent/service/register` (Consul's `ServiceDefinition`).
#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceDefinition {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub kind: String,
    pub tags: Option<Vec<String>>,
    pub address: String,
    pub tagged_addresses: Option<BTreeMap<String, AddressDefinition>>,
    pub meta: Option<BTreeMap<String, String>>,
    pub port: u16,
    pub socket_path: String,
    pub weights: Option<WeightsDefinition>,
    pub enable_tag_override: bool,
    pub token: String,
    pub check: Option<serde_json::Value>,
    pub checks: Option<Vec<serde_json::Value>>,
}

impl ServiceDefinition {
    /// Validates as Consul's agent does, in its order and with its words.
    pub fn validate(&self) -> Result<(), DefinitionError> {
        if self.name.is_empty() {
            return Err(DefinitionError("Missing service name".into()));
        }
        if self
            .address
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified())
        {
            return Err(DefinitionError("Invalid service address".into()));
        }
        if let Some(w) = &self.weights {
            if w.passing <= 0 {
                return Err(DefinitionError(
                    "Invalid Weights: Passing must be greater than 0".into(),
                ));
            }
            if w.warning < 0 {
                return Err(DefinitionError(
                    "Invalid Weights: Warning must be greater or equal than 0".into(),
                ));
            }
            if w.passing > 65535 || w.warning > 65535 {
                return Err(DefinitionError(
                    "Invalid Weights: DNS Weight must be between 0 and 65535".into(),
                ));
            }
        }
        if let Some(meta) = &self.meta {
            validate_meta(meta)?;
        }
        Ok(())
    }

    /// The service ID: `ID`, or the name when no ID is given.
    pub fn effective_id(&self) -> &str {
        if self.id.is_empty() {
            &self.name
        } else {
            &self.id
        }
    }

    /// The instance this definition registers (on no node yet).
    pub fn instance(&self) -> ServiceInstance {
        let mut instance = ServiceInstance {
            kind: self.kind.clone(),
            id: self.effective_id().to_owned(),
            service: self.name.clone(),
            tags: self.tags.clone().unwrap_or_default(),
            address: self.address.clone(),
            meta: self.meta.clone().unwrap_or_default(),
            port: self.port,
            socket_path: self.socket_path.clone(),
            enable_tag_override: self.enable_tag_override,
            ..ServiceInstance::default()
        };
        if let Some(w) = &self.weights {
            instance.weights = state::Weights {
                passing: u32::try_from(w.passing).unwrap_or(1),
                warning: u32::try_from(w.warning).unwrap_or(0),
            };
        }
        if let Some(tagged) = &self.tagged_addresses {
            instance.tagged_addresses = tagged
                .iter()
                .map(|(k, a)| {
                    (
                        k.clone(),
                        ServiceAddress {
                            address: a.address.clone(),
                            port: a.port,
                        },
                    )
                })
                .collect();
        }
        // Like Consul's agent: a service with an IP address is reachable
        // there on LAN and WAN unless told otherwise.
        if let Ok(ip) = self.address.parse::<std::net::IpAddr>() {
            let family = if ip.is_ipv4() { "ipv4" } else { "ipv6" };
            for tag in [format!("lan_{family}"), format!("wan_{family}")] {
                instance
                    .tagged_addresses
                    .entry(tag)
                    .or_insert_with(|| ServiceAddress {
                        address: self.address.clone(),
                        port: self.port,
                    });
            }
        }
        instance
    }
}

/// Consul's rules for service and node metadata.
fn validate_meta(meta: &BTreeMap<String, String>) -> Result<(), DefinitionError> {
    if meta.len() > 64 {
        return Err(DefinitionError(
            "Invalid Service Meta: Node metadata cannot contain more than 64 key/value pairs"
                .into(),
        ));
    }
    for (k, v) in meta {
        let reason = if k.is_empty() {
            Some("Key cannot be blank")
        } else if !k
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            Some("Key contains invalid characters")
        } else if k.len() > 128 {
            Some("Key is too long (limit: 128 characters)")
        } else if k.starts_with("consul-") {
            Some("Key prefix 'consul-' is reserved for internal use")
        } else if v.len() > 512 {
            Some("Value is too long (limit: 512 characters)")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(DefinitionError(format!(
                "Invalid Service Meta: Couldn't load metadata pair ('{k}', '{v}'): {reason}"
            )));
        }
    }
    Ok(())
}
