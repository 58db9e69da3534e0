//! Times `check_service_nodes` over a catalog the size of the discovery
//! benchmark: `cargo run --release -p state --example catalog_reads`.

use std::time::Instant;

use state::{Command, HealthCheck, Node, Registration, ServiceInstance, Store, WatchSet};

fn main() {
    let store = Store::new();
    let mut index = 0;
    for s in 0..1000 {
        for k in 0..10 {
            let n = (s * 10 + k) % 500;
            index += 1;
            let id = format!("svc-{s}-{k}");
            let reg = Registration {
                node: Node {
                    name: format!("node-{n}"),
                    address: format!("10.0.{}.{}", n / 256, n % 256),
                    ..Node::default()
                },
                service: Some(ServiceInstance {
                    id: id.clone(),
                    service: format!("svc-{s}"),
                    port: 8000,
                    ..ServiceInstance::default()
                }),
                checks: vec![HealthCheck {
                    check_id: format!("check-{id}"),
                    service_id: id,
                    status: "passing".into(),
                    ..HealthCheck::default()
                }],
                ..Registration::default()
            };
            store
                .apply(index, &Command::Register(Box::new(reg)))
                .unwrap();
        }
    }
    let snap = store.snapshot();
    let rounds = 100_000;
    let start = Instant::now();
    let mut total = 0;
    for i in 0..rounds {
        let (_, found) =
            snap.check_service_nodes(&format!("svc-{}", i % 1000), &mut WatchSet::new());
        total += found.len();
    }
    let each = start.elapsed() / rounds;
    println!("check_service_nodes: {each:?} per call ({total} instances)");
}
