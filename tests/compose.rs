//! `compose.yaml` and the `Dockerfile`, checked as far as they can be
//! without a container engine: the file parses (with its YAML merge keys),
//! has the whole stack, every RTMAS service's command is one the binary
//! takes, and every RTMAS service's environment loads as a configuration
//! that reads the DAGs the image ships.

mod support;

use support::{OutputText, rtmas};

fn repo(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

/// The compose file as JSON, read by PyYAML (which the test command
/// installs with moto), which resolves `<<:` merges as compose does.
async fn compose() -> serde_json::Value {
    let out = tokio::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
            &repo("compose.yaml"),
        ])
        .output()
        .await
        .expect("python3 with PyYAML (scripts/test installs it)");
    assert!(out.status.success(), "{}", out.stderr_text());
    serde_json::from_str(&out.stdout_text()).expect("JSON")
}

#[tokio::test]
async fn the_stack_has_every_part_and_its_rtmas_services_run_real_commands() {
    let compose = compose().await;
    let services = compose["services"].as_object().expect("services");
    for name in [
        "postgres",
        "kafka",
        "minio",
        "bucket",
        "migrate",
        "scheduler",
        "worker",
        "web",
    ] {
        assert!(services.contains_key(name), "no `{name}` service");
    }
    let rtmas_services: Vec<_> = services
        .iter()
        .filter(|(_, s)| s["image"] == "rtmas:latest")
        .collect();
    let names: Vec<&str> = rtmas_services.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["migrate", "producer", "scheduler", "web", "worker"]);
    assert_eq!(
        services["migrate"]["command"],
        serde_json::json!(["db", "migrate"])
    );
    assert_eq!(
        services["scheduler"]["depends_on"]["migrate"]["condition"],
        "service_completed_successfully"
    );

    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).expect("Dockerfile");
    assert!(dockerfile.contains("COPY dags /etc/rtmas/dags"));
    assert!(dockerfile.contains("ENV RTMAS_DAGS_DIR=/etc/rtmas/dags"));

    for (name, service) in rtmas_services {
        let command: Vec<&str> = service["command"]
            .as_array()
            .unwrap_or_else(|| panic!("`{name}` has a command list"))
            .iter()
            .map(|a| a.as_str().expect("text"))
            .collect();
        // The subcommand and its flags exist (clap refuses unknown ones
        // before it prints help).
        let help = rtmas()
            .args(&command)
            .arg("--help")
            .output()
            .await
            .expect("rtmas");
        assert!(
            help.status.success(),
            "`{name}`: {command:?}: {}",
            help.stderr_text()
        );

        // Its environment is a configuration the binary loads, with the
        // example DAGs (where the image puts them) valid under it.
        let env = service["environment"].as_object().expect("environment");
        let mut check = rtmas();
        check
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        for (key, value) in env {
            let value = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            check.env(key, value);
        }
        check.env("RTMAS_DAGS_DIR", repo("dags"));
        let out = check
            .args(["dags", "validate"])
            .output()
            .await
            .expect("rtmas");
        assert!(
            out.status.success(),
            "`{name}`: {}{}",
            out.stdout_text(),
            out.stderr_text()
        );
        assert!(
            out.stdout_text().contains("0 error(s)"),
            "{}",
            out.stdout_text()
        );
        assert_eq!(env["RTMAS_KAFKA_BROKERS"], "kafka:9092");
        assert!(
            env["DATABASE_URL"]
                .as_str()
                .unwrap()
                .contains("@postgres:5432/")
        );
    }
}
