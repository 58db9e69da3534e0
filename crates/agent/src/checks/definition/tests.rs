use super::*;

fn parse(json: &str) -> CheckDefinition {
    serde_json::from_str(json).expect("definition decodes")
}

#[test]
fn decodes_consul_json_with_go_durations() {
    let definition = parse(
        r#"{
            "ID": "api", "Name": "API health", "ServiceID": "web",
            "HTTP": "http://127.0.0.1:8080/health", "Method": "POST",
            "Header": {"X-Token": ["a", "b"]}, "Body": "{}",
            "TLSSkipVerify": true, "Interval": "1m30s", "Timeout": 500000000,
            "DeregisterCriticalServiceAfter": "90m",
            "SuccessBeforePassing": 2, "FailuresBeforeCritical": 3
        }"#,
    );
    assert_eq!(definition.effective_id(), "api");
    assert_eq!(definition.interval, Duration::from_secs(90));
    assert_eq!(definition.timeout, Duration::from_millis(500));
    assert_eq!(
        definition.deregister_critical_service_after,
        Duration::from_secs(5400)
    );
    let Ok(CheckKind::Http(http)) = definition.kind(false) else {
        panic!("expected an HTTP check");
    };
    assert_eq!(http.method, "POST");
    assert_eq!(http.headers["X-Token"], vec!["a", "b"]);
    assert!(http.tls_skip_verify);
    assert_eq!(http.timeout, Duration::from_millis(500));
    assert_eq!(http.output_max_size, DEFAULT_OUTPUT_MAX_SIZE);
    assert_eq!(
        definition.thresholds(),
        Thresholds {
            success_before_passing: 2,
            failures_before_warning: 0,
            failures_before_critical: 3,
        }
    );
}

#[test]
fn args_alias_and_check_id() {
    let definition = parse(r#"{"CheckID": "disk", "Args": ["true"], "Interval": "10s"}"#);
    assert_eq!(definition.effective_id(), "disk");
    assert_eq!(definition.script_args, vec!["true"]);
    let definition = parse(r#"{"Name": "n", "ScriptArgs": ["true"], "Interval": "10s"}"#);
    assert_eq!(definition.effective_id(), "n");
}

#[test]
fn bad_durations_are_decode_errors() {
    assert!(serde_json::from_str::<CheckDefinition>(r#"{"TTL": "10"}"#).is_err());
    assert!(serde_json::from_str::<CheckDefinition>(r#"{"TTL": "soon"}"#).is_err());
}

#[test]
fn validation_uses_consul_messages_in_consul_order() {
    let cases = [
        (r#"{}"#, "TTL must be > 0 for TTL checks"),
        (
            r#"{"TTL": "10s", "Interval": "10s"}"#,
            "Interval and TTL cannot both be specified",
        ),
        (
            r#"{"HTTP": "http://x"}"#,
            "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks",
        ),
        (
            r#"{"TCP": "x:1", "Interval": "-5s"}"#,
            "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks",
        ),
        (
            r#"{"TCP": "x:1", "Interval": "5s", "AliasService": "web"}"#,
            "Interval cannot be set for Alias checks",
        ),
        (
            r#"{"AliasService": "web", "TTL": "5s"}"#,
            "TTL must be not be set for Alias checks",
        ),
        (
            r#"{"TTL": "5s", "OutputMaxSize": -1}"#,
            "MaxOutputMaxSize must be positive",
        ),
        (
            r#"{"TTL": "5s", "FailuresBeforeWarning": 3, "FailuresBeforeCritical": 2}"#,
            "FailuresBeforeWarning can't be higher than FailuresBeforeCritical",
        ),
    ];
    for (json, message) in cases {
        let error = parse(json).kind(true).expect_err(json);
        assert_eq!(error.to_string(), message, "{json}");
        assert!(error.is_invalid_check());
    }
}

#[test]
fn script_checks_need_the_agent_switch() {
    let definition = parse(r#"{"Args": ["/bin/true"], "Interval": "10s"}"#);
    let remote = definition.kind(false).expect_err("scripts are off");
    assert_eq!(
        remote.to_string(),
        "Scripts are disabled on this agent from remote calls; to enable, configure 'enable_script_checks' to true"
    );
    assert!(!remote.is_invalid_check());
    assert_eq!(
        definition.kind_from_config(false),
        Err(CheckDefinitionError::LocalScriptsDisabled)
    );
    let Ok(CheckKind::Script(script)) = definition.kind(true) else {
        panic!("expected a script check");
    };
    assert_eq!(script.timeout, Duration::from_secs(30));
}

#[test]
fn kinds_follow_consul_precedence_and_defaults() {
    let both = parse(r#"{"HTTP": "http://x", "TCP": "x:1", "Interval": "5s"}"#);
    assert!(matches!(both.kind(false), Ok(CheckKind::Http(_))));

    let ttl = parse(r#"{"TTL": "15s", "OutputMaxSize": 100}"#);
    assert_eq!(
        ttl.kind(false),
        Ok(CheckKind::Ttl {
            ttl: Duration::from_secs(15),
            output_max_size: 100
        })
    );

    let tcp = parse(r#"{"TCP": "db:5432", "Interval": "200ms"}"#);
    assert_eq!(
        tcp.kind(false),
        Ok(CheckKind::Tcp(TcpCheck {
            address: "db:5432".into(),
            interval: MIN_INTERVAL,
            timeout: Duration::from_secs(10),
        }))
    );

    let grpc = parse(r#"{"GRPC": "db:9000/health", "GRPCUseTLS": true, "Interval": "5s"}"#);
    let Ok(CheckKind::Grpc(grpc)) = grpc.kind(false) else {
        panic!("expected a gRPC check");
    };
    assert!(grpc.use_tls);
    assert_eq!(grpc.target, "db:9000/health");

    for (json, kind) in [
        (r#"{"UDP": "x:53", "Interval": "5s"}"#, "UDP"),
        (r#"{"H2PING": "x:1", "Interval": "5s"}"#, "H2PING"),
        (r#"{"OSService": "sshd", "Interval": "5s"}"#, "OSService"),
        (r#"{"AliasService": "web"}"#, "Alias"),
        (
            r#"{"Args": ["true"], "DockerContainerID": "f00", "Interval": "5s"}"#,
            "Docker",
        ),
    ] {
        assert_eq!(
            parse(json).kind(true),
            Err(CheckDefinitionError::Unsupported(kind)),
            "{json}"
        );
    }
}

#[test]
fn initial_status_defaults_to_critical() {
    assert_eq!(parse("{}").initial_status(), Ok(CheckStatus::Critical));
    assert_eq!(
        parse(r#"{"Status": "passing"}"#).initial_status(),
        Ok(CheckStatus::Passing)
    );
    assert_eq!(
        parse(r#"{"Status": "ok"}"#).initial_status(),
        Err(CheckDefinitionError::BadStatus)
    );
}
