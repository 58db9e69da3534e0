use agent::{CONSUL_COMPATIBLE_VERSION, PRAETOR_VERSION};

pub fn run() -> u8 {
    println!("Praetor v{PRAETOR_VERSION}");
    println!("Consul API compatibility v{CONSUL_COMPATIBLE_VERSION}");
    println!("Protocol 2 spoken by default, understands 2 to 3");
    0
}
