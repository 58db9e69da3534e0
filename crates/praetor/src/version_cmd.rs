//! `praetor version`, in Consul's two formats.

use agent::{CONSUL_COMPATIBLE_VERSION, PRAETOR_VERSION};

pub fn run(format: &str) -> u8 {
    match format {
        "pretty" => {
            println!("Praetor v{PRAETOR_VERSION}");
            println!("Consul API compatibility v{CONSUL_COMPATIBLE_VERSION}");
            println!("Protocol 2 spoken by default, understands 2 to 3");
            0
        }
        "json" => {
            let body = serde_json::json!({
                "Version": CONSUL_COMPATIBLE_VERSION,
                "Revision": "",
                "Prerelease": "",
                "BuildDate": "",
                "Praetor": PRAETOR_VERSION,
                "RPC": {"Default": 2, "Min": 2, "Max": 3},
            });
            match serde_json::to_string_pretty(&body) {
                Ok(text) => {
                    println!("{text}");
                    0
                }
                Err(error) => {
                    eprintln!("{error}");
                    1
                }
            }
        }
        other => {
            eprintln!("Unknown format: {other}");
            1
        }
    }
}
