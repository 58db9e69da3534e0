use super::*;
use std::fs;
use tempfile::TempDir;

fn write(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    fs::write(&path, text).unwrap();
    path
}

/// Flags with a data dir and a node name, so only what a test sets varies.
fn flags(dir: &TempDir) -> AgentFlags {
    AgentFlags {
        data_dir: Some(dir.path().to_owned()),
        node: Some("n1".into()),
        ..AgentFlags::default()
    }
}

fn load_files(dir: &TempDir, files: &[&Path]) -> Result<Loaded, ConfigError> {
    load(&AgentFlags {
        config_file: files.iter().map(|p| p.to_path_buf()).collect(),
        ..flags(dir)
    })
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const JSON: &str = r#"{
    "node_name": "alpha",
    "datacenter": "East-1",
    "server": true,
    "bootstrap_expect": 3,
    "client_addr": "0.0.0.0 ::1",
    "bind_addr": "10.0.0.5",
    "advertise_addr": "192.168.1.5",
    "log_level": "warning",
    "ports": {"http": 8080, "dns": -1, "grpc": 8502, "serf_lan": 9301},
    "addresses": {"http": "127.0.0.1"},
    "performance": {"raft_multiplier": 2, "leave_drain_time": "2s"},
    "limits": {"kv_max_value_size": 1024},
    "ui_config": {"enabled": true},
    "enable_script_checks": true
}"#;

const HCL: &str = r#"
node_name = "alpha"
datacenter = "East-1"
server = true
bootstrap_expect = 3
client_addr = "0.0.0.0 ::1"
bind_addr = "10.0.0.5"
advertise_addr = "192.168.1.5"
log_level = "warning"
ports {
  http = 8080
  dns = -1
  grpc = 8502
  serf_lan = 9301
}
addresses = { http = "127.0.0.1" }
performance = { raft_multiplier = 2, leave_drain_time = "2s" }
limits { kv_max_value_size = 1024 }
ui_config { enabled = true }
enable_script_checks = true
"#;

#[test]
fn json_and_hcl_files_give_the_same_config() {
    let dir = TempDir::new().unwrap();
    let flags = AgentFlags {
        node: None,
        ..flags(&dir)
    };
    for (name, text) in [("a.json", JSON), ("a.hcl", HCL)] {
        let path = write(&dir, name, text);
        let loaded = load(&AgentFlags {
            config_file: vec![path],
            ..flags.clone()
        })
        .unwrap();
        let c = loaded.config;
        let want = Config {
            node_name: "alpha".into(),
            datacenter: "east-1".into(),
            server: true,
            bootstrap_expect: Some(3),
            client_addrs: vec![ip("0.0.0.0"), ip("::1")],
            bind_addr: ip("10.0.0.5"),
            advertise_addr: Some(ip("192.168.1.5")),
            log_level: LogLevel::Warn,
            ports: Ports {
                http: Some(8080),
                dns: None,
                grpc: Some(8502),
                serf_lan: 9301,
                ..Ports::default()
            },
            addresses: Addresses {
                http: Some(vec![ip("127.0.0.1")]),
                ..Addresses::default()
            },
            raft_multiplier: 2,
            leave_drain_time: Duration::from_secs(2),
            kv_max_value_size: 1024,
            ui: true,
            enable_script_checks: true,
            data_dir: Some(dir.path().to_owned()),
            leave_on_terminate: false,
            ..Config::default()
        };
        assert_eq!(c, want, "{name}");
        assert_eq!(c.http_addrs(), ["127.0.0.1:8080".parse().unwrap()]);
        assert!(c.dns_addrs().is_empty(), "ports.dns = -1 disables DNS");
        assert_eq!(
            c.grpc_addrs(),
            [
                "0.0.0.0:8502".parse().unwrap(),
                "[::1]:8502".parse().unwrap()
            ]
        );
        assert_eq!(
            loaded.warnings,
            ["bootstrap_expect > 0: expecting 3 servers"],
            "{name}"
        );
    }
}

#[test]
fn defaults_match_consul() {
    let dir = TempDir::new().unwrap();
    let c = load(&flags(&dir)).unwrap().config;
    assert_eq!(c.datacenter, "dc1");
    assert_eq!(c.http_addrs(), ["127.0.0.1:8500".parse().unwrap()]);
    assert_eq!(c.dns_addrs(), ["127.0.0.1:8600".parse().unwrap()]);
    assert!(c.https_addrs().is_empty() && c.grpc_addrs().is_empty());
    assert_eq!(
        (c.ports.server, c.ports.serf_lan, c.ports.serf_wan),
        (8300, 8301, Some(8302))
    );
    assert_eq!(c.raft_multiplier, 5);
    assert_eq!(c.kv_max_value_size, 524288);
    assert_eq!(c.txn_max_req_len, 524288);
    assert!(
        c.leave_on_terminate,
        "clients leave on terminate by default"
    );
    assert_eq!(c.log_level, LogLevel::Info);
}

#[test]
fn dev_mode_defaults() {
    let c = load(&AgentFlags {
        dev: true,
        ..AgentFlags::default()
    })
    .map(|l| l.config);
    // The host name may be missing in odd sandboxes; then the error is Consul's.
    let c = match c {
        Ok(c) => c,
        Err(e) => return assert_eq!(e.to_string(), "node_name cannot be empty"),
    };
    assert!(c.dev && c.server && c.bootstrap && c.ui);
    assert!(!c.node_name.is_empty());
    assert_eq!(c.bind_addr, ip("127.0.0.1"));
    assert_eq!(c.client_addrs, [ip("127.0.0.1")]);
    assert_eq!(c.raft_multiplier, 1);
    assert_eq!(c.ports.grpc, Some(8502));
    assert_eq!(c.log_level, LogLevel::Debug);
    assert_eq!(c.data_dir, None);
    assert!(!c.leave_on_terminate);
}

#[test]
fn node_name_defaults_to_the_host_name() {
    let dir = TempDir::new().unwrap();
    let f = AgentFlags {
        node: None,
        ..flags(&dir)
    };
    let c = load_with_hostname(&f, || Some("box".into()))
        .unwrap()
        .config;
    assert_eq!(c.node_name, "box");
    let err = load_with_hostname(&f, || None).unwrap_err();
    assert_eq!(err.to_string(), "node_name cannot be empty");
}

#[test]
fn data_dir_is_required_outside_dev_mode() {
    let err = load(&AgentFlags {
        node: Some("n".into()),
        ..AgentFlags::default()
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "data_dir cannot be empty");
}

#[test]
fn later_files_win_and_flags_win_over_files() {
    let dir = TempDir::new().unwrap();
    let a = write(
        &dir,
        "a.json",
        r#"{"datacenter": "a", "ports": {"http": 1}, "log_level": "err"}"#,
    );
    let b = write(&dir, "b.hcl", r#"datacenter = "b""#);
    let c = load_files(&dir, &[&b, &a]).unwrap().config;
    assert_eq!((c.datacenter.as_str(), c.ports.http), ("a", Some(1)));
    let c = load_files(&dir, &[&a, &b]).unwrap().config;
    assert_eq!((c.datacenter.as_str(), c.ports.http), ("b", Some(1)));

    let c = load(&AgentFlags {
        config_file: vec![a, b],
        datacenter: Some("flag".into()),
        http_port: Some(-1),
        log_level: Some("TRACE".into()),
        ..flags(&dir)
    })
    .unwrap()
    .config;
    assert_eq!(c.datacenter, "flag");
    assert!(c.http_addrs().is_empty());
    assert_eq!(c.log_level, LogLevel::Trace);
}

#[test]
fn config_dir_reads_json_and_hcl_in_lexical_order() {
    let dir = TempDir::new().unwrap();
    let conf = dir.path().join("conf.d");
    fs::create_dir(&conf).unwrap();
    fs::write(conf.join("20-b.hcl"), r#"datacenter = "second""#).unwrap();
    fs::write(
        conf.join("10-a.json"),
        r#"{"datacenter": "first", "server": true}"#,
    )
    .unwrap();
    fs::write(conf.join("30-c.txt"), "not config at all {").unwrap();
    fs::write(conf.join("consul.env"), "X=1").unwrap();
    fs::create_dir(conf.join("99-sub.json")).unwrap();
    let loaded = load(&AgentFlags {
        config_dir: vec![conf.clone()],
        ..flags(&dir)
    })
    .unwrap();
    assert_eq!(loaded.config.datacenter, "second");
    assert!(loaded.config.server);
    let skipped: Vec<_> = loaded
        .warnings
        .iter()
        .filter(|w| w.starts_with("skipping file"))
        .collect();
    assert_eq!(skipped.len(), 2, "{:?}", loaded.warnings);
    assert!(skipped[0].contains("30-c.txt"));
}

#[test]
fn unknown_key_names_file_and_key() {
    let dir = TempDir::new().unwrap();
    let f = write(&dir, "b.hcl", "prots { http = 1 }\n");
    let err = load_files(&dir, &[&f]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: unknown configuration key \"prots\"", f.display())
    );
    let g = write(&dir, "c.json", r#"{"ports": {"htpp": 1}}"#);
    let err = load_files(&dir, &[&g]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: unknown configuration key \"ports.htpp\"", g.display())
    );
}

#[test]
fn bad_value_names_file_key_and_expectation() {
    let dir = TempDir::new().unwrap();
    let f = write(&dir, "a.json", r#"{"ports": {"http": "abc"}}"#);
    let err = load_files(&dir, &[&f]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: key \"ports.http\": expected an integer port 0-65535 or -1, found \"abc\"",
            f.display()
        )
    );
    let g = write(&dir, "b.hcl", "bind_addr = \"nowhere\"\n");
    let err = load_files(&dir, &[&g]).unwrap_err().to_string();
    assert!(
        err.ends_with("key \"bind_addr\": expected an IP address, found \"nowhere\""),
        "{err}"
    );
}

#[test]
fn bad_flag_value_names_the_flag() {
    let dir = TempDir::new().unwrap();
    let err = load(&AgentFlags {
        http_port: Some(70000),
        ..flags(&dir)
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "flag -http-port: key \"ports.http\": expected an integer port 0-65535 or -1, found 70000"
    );
}

#[test]
fn serf_wan_minus_one_turns_the_wan_pool_off() {
    let dir = TempDir::new().unwrap();
    let f = write(
        &dir,
        "wan.json",
        r#"{"server": true, "ports": {"serf_wan": -1}}"#,
    );
    let c = load_files(&dir, &[&f]).unwrap().config;
    assert_eq!(c.ports.serf_wan, None);
    let c = load(&AgentFlags {
        serf_wan_port: Some(-1),
        ..flags(&dir)
    })
    .unwrap()
    .config;
    assert_eq!(c.ports.serf_wan, None);
    let c = load(&AgentFlags {
        serf_wan_port: Some(9302),
        ..flags(&dir)
    })
    .unwrap()
    .config;
    assert_eq!(c.ports.serf_wan, Some(9302));
    // The LAN pool and the server port cannot be turned off.
    let f = write(&dir, "lan.json", r#"{"ports": {"serf_lan": -1}}"#);
    assert!(load_files(&dir, &[&f]).is_err());
}

#[test]
fn raft_multiplier_out_of_range_is_refused() {
    let dir = TempDir::new().unwrap();
    for bad in ["0", "11", "-1"] {
        let f = write(
            &dir,
            "p.hcl",
            &format!("performance {{ raft_multiplier = {bad} }}"),
        );
        let err = load_files(&dir, &[&f]).unwrap_err().to_string();
        assert!(
            err.ends_with(&format!(
                "key \"performance.raft_multiplier\": expected an integer between 1 and 10, found {bad}"
            )),
            "{err}"
        );
    }
}

#[test]
fn known_unimplemented_key_warns_once() {
    let dir = TempDir::new().unwrap();
    let f = write(
        &dir,
        "f.hcl",
        r#"
acl {
  enabled = true
  tokens { initial_management = "x" }
}
datacenter = "dc2"
"#,
    );
    let loaded = load_files(&dir, &[&f]).unwrap();
    assert_eq!(
        loaded.warnings,
        [format!(
            "config key \"acl\" in {} is accepted but not yet implemented by praetor; it has no effect",
            f.display()
        )]
    );
    assert_eq!(loaded.config.datacenter, "dc2");
}

#[test]
fn syntax_error_names_the_file() {
    let dir = TempDir::new().unwrap();
    let f = write(&dir, "broken.hcl", "ports {\n  http = \n");
    let err = load_files(&dir, &[&f]).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}: syntax error: line ", f.display())),
        "{err}"
    );
    let g = write(&dir, "broken.json", "{\"server\": tru}");
    let err = load_files(&dir, &[&g]).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}: syntax error: ", g.display())),
        "{err}"
    );
}

#[test]
fn named_file_needs_a_known_extension() {
    let dir = TempDir::new().unwrap();
    let f = write(&dir, "consul.env", "X=1");
    let err = load_files(&dir, &[&f]).unwrap_err();
    assert!(matches!(err, ConfigError::UnknownExtension { .. }), "{err}");
}

#[test]
fn key_names_are_case_insensitive() {
    let dir = TempDir::new().unwrap();
    let f = write(
        &dir,
        "a.json",
        r#"{"Ports": {"HTTP": 0}, "DataCenter": "x"}"#,
    );
    let c = load_files(&dir, &[&f]).unwrap().config;
    assert_eq!((c.ports.http, c.datacenter.as_str()), (None, "x"));
}

#[test]
fn missing_file_is_a_read_error() {
    let dir = TempDir::new().unwrap();
    let err = load_files(&dir, &[&dir.path().join("nope.json")]).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
}

#[test]
fn bootstrap_rules_follow_consul() {
    let dir = TempDir::new().unwrap();
    let f = write(&dir, "c.json", r#"{"bootstrap_expect": 3}"#);
    let err = load_files(&dir, &[&f]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "'bootstrap_expect > 0' requires server mode"
    );

    let loaded = load(&AgentFlags {
        server: true,
        bootstrap_expect: Some(1),
        ..flags(&dir)
    })
    .unwrap();
    assert!(loaded.config.bootstrap);
    assert_eq!(loaded.config.bootstrap_expect, None);
}

#[test]
fn every_schema_key_reaches_a_field() {
    use serde_json::{json, Value};
    for (key, kind) in schema::SCHEMA {
        let samples = match kind {
            schema::Kind::Str => vec![json!("x")],
            schema::Kind::Uuid => vec![json!("ADF4238A-882B-9DDC-4A9D-5B6758E4159E")],
            schema::Kind::Bool => vec![json!(true), json!(false)],
            schema::Kind::Int { max, .. } => vec![json!(max)],
            schema::Kind::Size | schema::Kind::Port | schema::Kind::PortOrOff => vec![json!(7)],
            schema::Kind::Ip | schema::Kind::Addrs => vec![json!("10.1.2.3")],
            schema::Kind::Duration => vec![json!("3s"), json!("0s")],
            schema::Kind::DurationAtLeast { .. } => vec![json!("9h")],
            schema::Kind::DurationMap => vec![json!({"*": "5s"})],
            schema::Kind::LogLevel => vec![json!("err")],
            schema::Kind::StrList => vec![json!(["1.1.1.1"])],
            schema::Kind::Definitions => vec![json!({"name": "web"})],
        };
        let mut changed = false;
        for sample in samples {
            let Value::Object(tree) = key.rsplit('.').fold(sample, |v, part| json!({ part: v }))
            else {
                unreachable!("fold ends in an object")
            };
            let mut walked = schema::walk(&tree).unwrap().settings;
            assert_eq!(walked.len(), 1, "{key}");
            let (k, v) = walked.remove(0);
            let mut c = Config::default();
            assert!(c.apply(k, v), "{k} has no field");
            changed |= c != Config::default();
        }
        assert!(changed, "{key} changed nothing");
    }
}

#[test]
fn wan_joins_come_from_flags_and_files() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("wan.json");
    std::fs::write(
        &file,
        r#"{"retry_join_wan": ["10.0.0.9"], "retry_interval_wan": "5s", "start_join_wan": ["10.0.0.8"]}"#,
    )
    .unwrap();
    let c = load(&AgentFlags {
        config_file: vec![file],
        join_wan: vec!["10.0.0.7".into()],
        retry_join_wan: vec!["10.0.0.6:8302".into()],
        ..flags(&dir)
    })
    .unwrap()
    .config;
    assert_eq!(c.start_join_wan, ["10.0.0.8", "10.0.0.7"]);
    assert_eq!(c.retry_join_wan, ["10.0.0.9", "10.0.0.6:8302"]);
    assert_eq!(c.retry_interval_wan, Duration::from_secs(5));
    assert_eq!(c.retry_interval, Duration::from_secs(30));
}

#[test]
fn reconnect_timeouts_follow_consul() {
    let dir = TempDir::new().unwrap();
    let loaded = load(&flags(&dir)).unwrap().config;
    let three_days = Duration::from_secs(72 * 3600);
    assert_eq!(
        (loaded.reconnect_timeout, loaded.reconnect_timeout_wan),
        (three_days, three_days)
    );
    assert_eq!(loaded.advertise_reconnect_timeout, None);

    let f = write(
        &dir,
        "r.hcl",
        "reconnect_timeout = \"8h\"\nreconnect_timeout_wan = \"100h\"\nadvertise_reconnect_timeout = \"5s\"\n",
    );
    let c = load_files(&dir, &[&f]).unwrap().config;
    assert_eq!(c.reconnect_timeout, Duration::from_secs(8 * 3600));
    assert_eq!(c.reconnect_timeout_wan, Duration::from_secs(100 * 3600));
    // A client may advertise less than the eight-hour floor.
    assert_eq!(c.advertise_reconnect_timeout, Some(Duration::from_secs(5)));

    for (key, name) in [
        ("reconnect_timeout", "ReconnectTimeoutLan"),
        ("reconnect_timeout_wan", "ReconnectTimeoutWan"),
    ] {
        let f = write(&dir, "short.json", &format!(r#"{{"{key}": "4h"}}"#));
        assert_eq!(
            load_files(&dir, &[&f]).unwrap_err().to_string(),
            format!(
                "{}: key \"{key}\": expected a duration of at least 8h ({name} must be >= 8h0m0s), found \"4h\"",
                f.display()
            )
        );
    }

    // Only a client advertises its own timeout; 0 means unset.
    let f = write(
        &dir,
        "s.json",
        r#"{"server": true, "advertise_reconnect_timeout": "1m"}"#,
    );
    assert_eq!(
        load_files(&dir, &[&f]).unwrap_err().to_string(),
        "advertise_reconnect_timeout can only be used on a client"
    );
    let f = write(
        &dir,
        "z.json",
        r#"{"server": true, "advertise_reconnect_timeout": "0s"}"#,
    );
    assert_eq!(
        load_files(&dir, &[&f])
            .unwrap()
            .config
            .advertise_reconnect_timeout,
        None
    );
}

#[test]
fn dns_service_ttl_and_soa_are_read_and_maps_merge() {
    let dir = TempDir::new().unwrap();
    let a = write(
        &dir,
        "a.json",
        r#"{"dns_config": {"service_ttl": {"*": "5s", "db": "1m"}, "soa": {"refresh": 60, "min_ttl": 7}}}"#,
    );
    let b = write(
        &dir,
        "b.hcl",
        "dns_config {\n  service_ttl = { \"db\" = \"2m\", \"web*\" = \"3s\" }\n}\n",
    );
    let dns = load_files(&dir, &[&a, &b]).unwrap().config.dns;
    let secs = Duration::from_secs;
    assert_eq!(
        dns.service_ttl,
        BTreeMap::from([
            ("*".to_owned(), secs(5)),
            ("db".to_owned(), secs(120)),
            ("web*".to_owned(), secs(3)),
        ])
    );
    assert_eq!(
        dns.soa,
        SoaSettings {
            refresh: 60,
            retry: 600,
            expire: 86400,
            min_ttl: 7,
        }
    );
    let bad = write(
        &dir,
        "c.json",
        r#"{"dns_config": {"service_ttl": {"web": 5}}}"#,
    );
    let err = load_files(&dir, &[&bad]).unwrap_err().to_string();
    assert!(
        err.ends_with(
            "key \"dns_config.service_ttl\": expected an object of durations such as {\"*\": \"10s\"}, found an object"
        ),
        "{err}"
    );
}
