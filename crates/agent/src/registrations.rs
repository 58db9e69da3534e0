//! Registering the agent's own services and checks (Consul's
//! `agent.AddService`, `AddCheck` and friends): validate, record in local
//! state, start the runners. Anti-entropy then carries the result to the
//! catalog.

use state::HealthCheck;

use crate::agent::Agent;
use crate::checks::{CheckDefinition, CheckKind, CheckStatus};
use crate::go_duration::format_go_duration;
use crate::local_state::{LocalCheck, LocalService};
use crate::service_definition::ServiceDefinition;

/// Why a registration was refused, by the HTTP status Consul answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// 400: the request itself is wrong.
    #[error("{0}")]
    Invalid(String),
    /// 404: it names a service or check this agent does not have.
    #[error("{0}")]
    NotFound(String),
    /// 500: valid, but this agent will not do it.
    #[error("{0}")]
    Refused(String),
}

/// Where a definition came from: script checks need different settings,
/// and only API registrations are persisted by the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Api,
    ConfigFile,
}

/// The maintenance checks' IDs and texts, as Consul writes them.
pub const NODE_MAINTENANCE_CHECK_ID: &str = "_node_maintenance";
const NODE_MAINTENANCE_NAME: &str = "Node Maintenance Mode";
const NODE_MAINTENANCE_DEFAULT: &str =
    "Maintenance mode is enabled for this node, but no reason was provided. This is a default message.";
const SERVICE_MAINTENANCE_PREFIX: &str = "_service_maintenance:";
const SERVICE_MAINTENANCE_NAME: &str = "Service Maintenance Mode";
const SERVICE_MAINTENANCE_DEFAULT: &str =
    "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.";

fn unknown_check(id: &str) -> RegisterError {
    RegisterError::NotFound(format!(
        "Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name."
    ))
}

fn unknown_service(id: &str) -> RegisterError {
    RegisterError::NotFound(format!(
        "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
    ))
}

fn kind_name(kind: &CheckKind) -> &'static str {
    match kind {
        CheckKind::Ttl { .. } => "ttl",
        CheckKind::Http(_) => "http",
        CheckKind::Tcp(_) => "tcp",
        CheckKind::Script(_) => "script",
        CheckKind::Grpc(_) => "grpc",
    }
}

/// A check ready to add: its row, its runner and its deregistration rule.
struct PreparedCheck {
    local: LocalCheck,
    kind: CheckKind,
    definition: CheckDefinition,
}

fn duration_text(d: std::time::Duration) -> String {
    if d.is_zero() {
        String::new()
    } else {
        format_go_duration(d)
    }
}

impl Agent {
    /// Validates a check definition and turns it into its local row.
    fn prepare_check(
        &self,
        definition: CheckDefinition,
        check_id: String,
        service: Option<&state::ServiceInstance>,
        source: Source,
    ) -> Result<PreparedCheck, RegisterError> {
        let status = definition
            .initial_status()
            .map_err(|e| RegisterError::Invalid(e.to_string()))?;
        let config = self.config();
        let kind = match source {
            Source::Api => definition.kind(config.enable_script_checks),
            Source::ConfigFile => definition
                .kind_from_config(config.enable_script_checks || config.enable_local_script_checks),
        }
        .map_err(|e| {
            if e.is_invalid_check() {
                RegisterError::Invalid(format!("Invalid check: {e}"))
            } else {
                RegisterError::Refused(e.to_string())
            }
        })?;
        let check = HealthCheck {
            node: self.config().node_name.clone(),
            check_id,
            name: definition.name.clone(),
            status: status.as_str().to_owned(),
            notes: definition.notes.clone(),
            service_id: service.map(|s| s.id.clone()).unwrap_or_default(),
            service_name: service.map(|s| s.service.clone()).unwrap_or_default(),
            service_tags: service.map(|s| s.tags.clone()).unwrap_or_default(),
            check_type: kind_name(&kind).to_owned(),
            interval: duration_text(definition.interval),
            timeout: duration_text(definition.timeout),
            ..HealthCheck::default()
        };
        let deregister_after =
            Some(definition.deregister_critical_service_after).filter(|d| !d.is_zero());
        Ok(PreparedCheck {
            local: LocalCheck {
                check,
                deregister_critical_after: deregister_after,
                critical_since: (status == CheckStatus::Critical).then(std::time::Instant::now),
                ttl: match &kind {
                    CheckKind::Ttl { ttl, .. } => Some(*ttl),
                    _ => None,
                },
            },
            kind,
            definition,
        })
    }

    fn start_checks(&self, prepared: Vec<PreparedCheck>) {
        let mut scheduler = self.check_scheduler();
        for p in prepared {
            scheduler.start(
                p.local.check.check_id.clone(),
                p.kind,
                p.definition.thresholds(),
            );
        }
    }

    /// Registers (or replaces) a service and its checks.
    pub fn add_service(
        &self,
        definition: &ServiceDefinition,
        replace_existing_checks: bool,
        source: Source,
    ) -> Result<(), RegisterError> {
        definition
            .validate()
            .map_err(|e| RegisterError::Invalid(e.to_string()))?;
        let instance = definition.instance();
        // HCL blocks may arrive as one-element lists; flatten them.
        let bodies: Vec<&serde_json::Value> = definition
            .check
            .iter()
            .chain(definition.checks.iter().flatten())
            .flat_map(|v| match v {
                serde_json::Value::Array(items) => items.iter().collect::<Vec<_>>(),
                other => vec![other],
            })
            .collect();
        let numbered = bodies.len() > 1;
        let mut prepared = Vec::with_capacity(bodies.len());
        for (n, body) in bodies.into_iter().enumerate() {
            let mut check: CheckDefinition = crate::decode::from_value(body.clone())
                .map_err(|e| RegisterError::Invalid(format!("Request decode failed: {e}")))?;
            if !check.status.is_empty() && check.status.parse::<CheckStatus>().is_err() {
                return Err(RegisterError::Invalid(
                    "Status for checks must 'passing', 'warning', 'critical'".into(),
                ));
            }
            // A service check is named by its CheckID; without one, by the
            // service (and its position, when there are several).
            let given = [&check.check_id, &check.id]
                .into_iter()
                .find(|s| !s.is_empty());
            let id = match given {
                Some(id) => id.clone(),
                None if numbered => format!("service:{}:{}", instance.id, n + 1),
                None => format!("service:{}", instance.id),
            };
            if check.name.is_empty() {
                check.name = format!("Service '{}' check", instance.service);
            }
            prepared.push(self.prepare_check(check, id, Some(&instance), source)?);
        }
        let new_ids: Vec<String> = prepared
            .iter()
            .map(|p| p.local.check.check_id.clone())
            .collect();
        let service_id = instance.id.clone();
        let dropped = self.update_local(|local| {
            let mut dropped = Vec::new();
            if replace_existing_checks {
                let stale: Vec<String> = local
                    .checks()
                    .values()
                    .filter(|c| {
                        c.check.service_id == service_id && !new_ids.contains(&c.check.check_id)
                    })
                    .map(|c| c.check.check_id.clone())
                    .collect();
                for id in stale {
                    local.remove_check(&id);
                    dropped.push(id);
                }
            }
            local.add_service(LocalService {
                instance,
                token: definition.token.clone(),
            });
            for p in &prepared {
                local.add_check(p.local.clone());
            }
            dropped
        });
        {
            let mut scheduler = self.check_scheduler();
            for id in dropped {
                scheduler.stop(&id);
            }
        }
        self.start_checks(prepared);
        Ok(())
    }

    /// Removes a service and its checks; returns the removed checks' IDs,
    /// or `None` if there is no such service.
    pub fn remove_service(&self, id: &str) -> Option<Vec<String>> {
        let removed = self.update_local(|local| local.remove_service(id))?;
        let mut scheduler = self.check_scheduler();
        for check_id in &removed {
            scheduler.stop(check_id);
        }
        Some(removed)
    }

    /// Registers a check of the node, or of one of this agent's services.
    pub fn add_check(
        &self,
        definition: CheckDefinition,
        source: Source,
    ) -> Result<(), RegisterError> {
        if definition.name.is_empty() {
            return Err(RegisterError::Invalid("Missing check name".into()));
        }
        if !definition.status.is_empty() && definition.status.parse::<CheckStatus>().is_err() {
            return Err(RegisterError::Invalid("Bad check status".into()));
        }
        let service = if definition.service_id.is_empty() {
            None
        } else {
            let local = self.local_state();
            match local.service(&definition.service_id) {
                Some(s) => Some(s.instance.clone()),
                None => {
                    return Err(RegisterError::NotFound(format!(
                        "ServiceID {:?} does not exist",
                        definition.service_id
                    )))
                }
            }
        };
        let id = definition.effective_id().to_owned();
        let prepared = self.prepare_check(definition, id, service.as_ref(), source)?;
        self.update_local(|local| local.add_check(prepared.local.clone()));
        self.start_checks(vec![prepared]);
        Ok(())
    }

    /// Removes a check; false if there is no such check.
    pub fn remove_check(&self, id: &str) -> bool {
        let removed = self.update_local(|local| local.remove_check(id));
        if removed {
            self.check_scheduler().stop(id);
        }
        removed
    }

    /// An application's report for a TTL check.
    pub fn update_ttl(
        &self,
        id: &str,
        status: CheckStatus,
        output: String,
    ) -> Result<(), RegisterError> {
        if self.local_state().check(id).is_none() {
            return Err(unknown_check(id));
        }
        let Some(update) = self.check_scheduler().ttl_record(id, status, output) else {
            return Err(RegisterError::Refused(format!(
                "CheckID {id:?} does not have associated TTL"
            )));
        };
        self.update_local(|local| local.update_check(id, update.status.as_str(), &update.output));
        self.remember_ttl_status(id, status, update.output);
        Ok(())
    }

    /// Turns node maintenance on (a critical check that fails every
    /// service on the node) or off.
    pub fn set_node_maintenance(&self, enable: bool, reason: &str) {
        if !enable {
            self.update_local(|local| local.remove_check(NODE_MAINTENANCE_CHECK_ID));
            return;
        }
        if self
            .local_state()
            .check(NODE_MAINTENANCE_CHECK_ID)
            .is_some()
        {
            return;
        }
        let notes = if reason.is_empty() {
            NODE_MAINTENANCE_DEFAULT
        } else {
            reason
        };
        let check = HealthCheck {
            node: self.config().node_name.clone(),
            check_id: NODE_MAINTENANCE_CHECK_ID.to_owned(),
            name: NODE_MAINTENANCE_NAME.to_owned(),
            notes: notes.to_owned(),
            status: "critical".to_owned(),
            check_type: "maintenance".to_owned(),
            ..HealthCheck::default()
        };
        self.update_local(|local| {
            local.add_check(LocalCheck {
                check,
                deregister_critical_after: None,
                critical_since: None,
                ttl: None,
            })
        });
    }

    /// Service maintenance, as above for one service.
    pub fn set_service_maintenance(
        &self,
        service_id: &str,
        enable: bool,
        reason: &str,
    ) -> Result<(), RegisterError> {
        let Some(service) = self
            .local_state()
            .service(service_id)
            .map(|s| s.instance.clone())
        else {
            return Err(unknown_service(service_id));
        };
        let check_id = format!("{SERVICE_MAINTENANCE_PREFIX}{service_id}");
        if !enable {
            self.update_local(|local| local.remove_check(&check_id));
            return Ok(());
        }
        if self.local_state().check(&check_id).is_some() {
            return Ok(());
        }
        let notes = if reason.is_empty() {
            SERVICE_MAINTENANCE_DEFAULT
        } else {
            reason
        };
        let check = HealthCheck {
            node: self.config().node_name.clone(),
            check_id,
            name: SERVICE_MAINTENANCE_NAME.to_owned(),
            notes: notes.to_owned(),
            status: "critical".to_owned(),
            service_id: service.id.clone(),
            service_name: service.service.clone(),
            service_tags: service.tags.clone(),
            check_type: "maintenance".to_owned(),
            ..HealthCheck::default()
        };
        self.update_local(|local| {
            local.add_check(LocalCheck {
                check,
                deregister_critical_after: None,
                critical_since: None,
                ttl: None,
            })
        });
        Ok(())
    }

    /// Consul's 404 for an unknown service ID, for callers that check first.
    pub fn unknown_service_error(id: &str) -> RegisterError {
        unknown_service(id)
    }
}

impl Agent {
    /// Registers the services and checks of the config files. A bad one
    /// stops the agent from starting, as in Consul.
    pub fn load_config_definitions(&self) -> Result<(), RegisterError> {
        for raw in &self.config().services {
            let definition: ServiceDefinition =
                crate::decode::from_value(raw.clone()).map_err(|e| {
                    RegisterError::Invalid(format!("Failed to decode service definition: {e}"))
                })?;
            self.add_service(&definition, false, Source::ConfigFile)
                .map_err(|e| {
                    RegisterError::Invalid(format!(
                        "Failed to register service {:?}: {e}",
                        definition.name
                    ))
                })?;
        }
        for raw in &self.config().checks {
            let definition: CheckDefinition =
                crate::decode::from_value(raw.clone()).map_err(|e| {
                    RegisterError::Invalid(format!("Failed to decode check definition: {e}"))
                })?;
            let name = definition.name.clone();
            self.add_check(definition, Source::ConfigFile)
                .map_err(|e| {
                    RegisterError::Invalid(format!("Failed to register check {name:?}: {e}"))
                })?;
        }
        Ok(())
    }
}
