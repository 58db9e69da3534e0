//! The agent's own services and checks: what this node says it runs. The
//! catalog holds the cluster's view; anti-entropy makes it match this.

use std::collections::BTreeMap;

use state::{HealthCheck, ServiceInstance};

/// A service this agent registered.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalService {
    pub instance: ServiceInstance,
    /// The ACL token it was registered with (kept for the sync).
    pub token: String,
}

/// A check this agent owns, in the form the catalog stores it.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalCheck {
    pub check: HealthCheck,
    /// Deregister the check's service once the check has been critical
    /// this long (`deregister_critical_service_after`).
    pub deregister_critical_after: Option<std::time::Duration>,
    /// When the check last turned critical, for the rule above.
    pub critical_since: Option<std::time::Instant>,
    /// A TTL check's TTL (its reported status is saved across restarts).
    pub ttl: Option<std::time::Duration>,
}

/// Services and checks by ID. Every change bumps `version`, which tells
/// anti-entropy there is something to push.
#[derive(Default, Debug)]
pub struct LocalState {
    services: BTreeMap<String, LocalService>,
    checks: BTreeMap<String, LocalCheck>,
    version: u64,
}

impl LocalState {
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn services(&self) -> &BTreeMap<String, LocalService> {
        &self.services
    }

    pub fn checks(&self) -> &BTreeMap<String, LocalCheck> {
        &self.checks
    }

    pub fn service(&self, id: &str) -> Option<&LocalService> {
        self.services.get(id)
    }

    pub fn check(&self, id: &str) -> Option<&LocalCheck> {
        self.checks.get(id)
    }

    pub fn add_service(&mut self, service: LocalService) {
        self.services.insert(service.instance.id.clone(), service);
        self.version += 1;
    }

    /// Gives a service the tags the catalog has for it (Consul's
    /// `enable_tag_override`: tags set in the catalog win).
    pub fn adopt_service_tags(&mut self, id: &str, tags: Vec<String>) {
        if let Some(service) = self.services.get_mut(id) {
            if service.instance.tags != tags {
                service.instance.tags = tags;
                self.version += 1;
            }
        }
    }

    /// Removes a service and the checks that belong to it; returns the
    /// removed check IDs.
    pub fn remove_service(&mut self, id: &str) -> Option<Vec<String>> {
        self.services.remove(id)?;
        let owned: Vec<String> = self
            .checks
            .iter()
            .filter(|(_, c)| c.check.service_id == id)
            .map(|(k, _)| k.clone())
            .collect();
        for check_id in &owned {
            self.checks.remove(check_id);
        }
        self.version += 1;
        Some(owned)
    }

    pub fn add_check(&mut self, check: LocalCheck) {
        self.checks.insert(check.check.check_id.clone(), check);
        self.version += 1;
    }

    pub fn remove_check(&mut self, id: &str) -> bool {
        let removed = self.checks.remove(id).is_some();
        if removed {
            self.version += 1;
        }
        removed
    }

    /// Records a check's new status and output. Returns false for an
    /// unknown check; an update that changes nothing bumps nothing.
    pub fn update_check(&mut self, id: &str, status: &str, output: &str) -> bool {
        let Some(local) = self.checks.get_mut(id) else {
            return false;
        };
        if local.check.status == status && local.check.output == output {
            return true;
        }
        if status == "critical" && local.check.status != "critical" {
            local.critical_since = Some(std::time::Instant::now());
        } else if status != "critical" {
            local.critical_since = None;
        }
        local.check.status = status.to_owned();
        local.check.output = output.to_owned();
        self.version += 1;
        true
    }

    /// Services whose check has been critical past its
    /// `deregister_critical_service_after`.
    pub fn expired_services(&self, now: std::time::Instant) -> Vec<String> {
        self.checks
            .values()
            .filter_map(|c| {
                let after = c.deregister_critical_after?;
                let since = c.critical_since?;
                (now.duration_since(since) >= after && !c.check.service_id.is_empty())
                    .then(|| c.check.service_id.clone())
            })
            .collect()
    }
}
