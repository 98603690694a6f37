//! The files under deploy/ against the binary: the manifests parse, every
//! flag and `CHORDAL_*` variable they name exists, the settings files pass
//! `chordal config check`, and the container's entry point starts and
//! restarts a ring the way the StatefulSet runs it.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use yaml_rust2::{Yaml, YamlLoader};

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(deploy(file)).unwrap_or_else(|e| panic!("deploy/{file}: {e}"))
}

/// The long flags and environment variables `chordal SUBCOMMAND --help`
/// lists.
fn help_of(sub: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let out = Command::new(BIN).args([sub, "--help"]).output().unwrap();
    assert!(out.status.success(), "chordal {sub} --help");
    let text = String::from_utf8_lossy(&out.stdout);
    let flags = text
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_string()
        })
        .collect();
    let envs = text
        .split("[env: ")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect::<String>()
        })
        .collect();
    (flags, envs)
}

/// The variables the entry point reads beyond chordal's own, from its
/// header ("Variables of this script").
fn entrypoint_vars() -> BTreeSet<String> {
    read("entrypoint.sh")
        .lines()
        .skip_while(|l| !l.contains("Variables of this script"))
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.trim_start_matches('#').split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(str::to_string)
        .collect()
}

/// Checks one command line (`chordal SUB --flag …`) against the binary.
fn check_command(words: &[String], where_: &str) {
    let Some(at) = words.iter().position(|w| w.ends_with("chordal")) else {
        return;
    };
    let sub = words.get(at + 1).expect("a subcommand").clone();
    let (flags, _) = help_of(&sub);
    for w in &words[at + 2..] {
        if let Some(flag) = w.strip_prefix("--") {
            let name = format!("--{}", flag.split('=').next().unwrap());
            assert!(
                flags.contains(&name),
                "{where_}: chordal {sub} has no {name} (it has {flags:?})"
            );
        }
    }
}

/// `chordal config check FILE`, which must accept the file: the
/// effective settings it prints.
fn config_check(file: &Path) -> String {
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Every document of a YAML file.
fn yaml(file: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(file)).unwrap_or_else(|e| panic!("deploy/{file}: {e}"))
}

fn kind<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} in the manifests"))
}

#[test]
fn the_kubernetes_manifests_name_only_what_the_binary_has() {
    let docs = yaml("kubernetes/chordal.yaml");
    let (_, node_envs) = help_of("node");
    let own = entrypoint_vars();
    assert!(own.contains("CHORDAL_SEED_API"), "{own:?}");

    let headless = docs
        .iter()
        .find(|d| {
            d["kind"].as_str() == Some("Service") && d["spec"]["clusterIP"].as_str() == Some("None")
        })
        .expect("a headless Service");
    assert_eq!(
        headless["spec"]["publishNotReadyAddresses"].as_bool(),
        Some(true),
        "seeds must resolve before the pods are ready"
    );
    let set = kind(&docs, "StatefulSet");
    assert_eq!(
        set["spec"]["serviceName"].as_str(),
        headless["metadata"]["name"].as_str()
    );
    assert!(!set["spec"]["volumeClaimTemplates"].is_badvalue());
    let pod = &set["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(
            c[probe]["httpGet"]["path"].as_str(),
            Some("/v1/health"),
            "{probe}"
        );
    }
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));

    // The entry point's arguments are chordal node's.
    let mut args = vec!["chordal".to_string(), "node".to_string()];
    args.extend(strings(&c["args"]));
    check_command(&args, "StatefulSet args");
    let pre_stop = strings(&c["lifecycle"]["preStop"]["exec"]["command"]);
    assert_eq!(pre_stop.get(1).map(String::as_str), Some("leave"));
    check_command(&pre_stop, "preStop");

    // Every CHORDAL_* variable is the node's, the client's or the entry
    // point's.
    let (_, leave_envs) = help_of("leave");
    for e in c["env"].as_vec().unwrap() {
        let name = e["name"].as_str().unwrap();
        if name.starts_with("CHORDAL_") {
            assert!(
                node_envs.contains(name) || leave_envs.contains(name) || own.contains(name),
                "the StatefulSet sets {name}, which nothing reads"
            );
        }
    }

    // The settings file passes `chordal config check`, and the pod waits
    // longer than its graceful leave drains.
    let config = kind(&docs, "ConfigMap")["data"]["chordal.toml"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chordal.toml");
    std::fs::write(&file, &config).unwrap();
    let checked = config_check(&file);
    let drain: u64 = checked
        .lines()
        .find_map(|l| l.strip_prefix("drain_timeout = "))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap() as u64;
    assert!(
        grace > drain,
        "grace {grace} s must exceed the drain {drain} s"
    );
}

#[test]
fn the_dockerfile_compose_file_and_systemd_unit_name_only_what_the_binary_has() {
    let docker = read("Dockerfile");
    assert!(
        docker.lines().filter(|l| l.starts_with("FROM ")).count() >= 2,
        "multi-stage"
    );
    let user = docker
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "{user}"
    );
    let health = docker
        .lines()
        .skip_while(|l| !l.starts_with("HEALTHCHECK"))
        .find_map(|l| l.trim().strip_prefix("CMD "))
        .expect("a health check");
    let words: Vec<String> = serde_json::from_str(health).unwrap();
    assert_eq!(words[1], "health");
    check_command(&words, "HEALTHCHECK");
    for copied in docker
        .lines()
        .filter_map(|l| l.strip_prefix("COPY deploy/"))
    {
        let file = copied.split_whitespace().next().unwrap();
        assert!(deploy(file).exists(), "the Dockerfile copies deploy/{file}");
    }

    let (_, node_envs) = help_of("node");
    let own = entrypoint_vars();
    let compose = yaml("docker-compose.yml");
    let services = compose[0]["services"].as_hash().unwrap();
    assert_eq!(services.len(), 3);
    for (_, service) in services {
        for (name, _) in service["environment"].as_hash().unwrap() {
            let name = name.as_str().unwrap();
            assert!(
                !name.starts_with("CHORDAL_") || node_envs.contains(name) || own.contains(name),
                "compose sets {name}, which nothing reads"
            );
        }
    }

    let unit = read("systemd/chordal.service");
    let exec: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    check_command(&exec, "ExecStart");
    for line in unit.lines().filter_map(|l| l.strip_prefix("Environment=")) {
        let name = line.split('=').next().unwrap();
        assert!(
            node_envs.contains(name),
            "the unit sets {name}, which chordal does not read"
        );
    }
    config_check(&deploy("systemd/chordal.toml"));
}

/// The entry point as the StatefulSet runs it: `sh entrypoint.sh ARGS`
/// with the pod's variables and `chordal` on the PATH.
fn pod(name: &str, ports: (u16, u16), data: &Path, seeds: &str, seed_api: &str) -> NodeProc {
    pod_with(name, ports, data, seeds, seed_api, &[])
}

/// [`pod`] with more variables.
fn pod_with(
    name: &str,
    ports: (u16, u16),
    data: &Path,
    seeds: &str,
    seed_api: &str,
    env: &[(&str, &Path)],
) -> NodeProc {
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("sh");
    cmd.arg(deploy("entrypoint.sh"))
        .args(["--stabilize-ms", "100"])
        .env("PATH", path)
        .env("POD_NAME", name)
        .env("POD_IP", "127.0.0.1")
        .env("CHORDAL_PEER_PORT", ports.0.to_string())
        .env("CHORDAL_API_PORT", ports.1.to_string())
        .env("CHORDAL_DATA_DIR", data)
        .env("CHORDAL_JOIN", seeds)
        .env("CHORDAL_SEED_API", seed_api)
        .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    NodeProc::spawn(cmd)
}

#[test]
fn the_entrypoint_starts_and_restarts_a_ring_as_the_statefulset_does() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    // The headless Service's name resolves to every pod: here, every
    // pod's address in a list.
    let seeds: Vec<String> = ports.iter().map(|p| format!("localhost:{}", p.0)).collect();
    let seeds = seeds.join(",");
    let seed_api = format!("127.0.0.1:{}", ports[1].1);
    let data = |i: usize| dir.path().join(format!("chordal-{i}"));
    let start = |i: usize| {
        pod(
            &format!("chordal-{i}"),
            ports[i],
            &data(i),
            &seeds,
            &seed_api,
        )
    };
    // Up in order, as OrderedReady starts them.
    let start_all = || (0..ports.len()).map(start).collect::<Vec<NodeProc>>();
    let mut pods = start_all();
    for (i, p) in ports.iter().enumerate() {
        // It listens on every address and advertises the pod's.
        assert_eq!(pods[i].addr.to_string(), format!("127.0.0.1:{}", p.0));
        assert_eq!(pods[i].api.to_string(), format!("127.0.0.1:{}", p.1));
    }
    let all: Vec<&NodeProc> = pods.iter().collect();
    eventually(Duration::from_secs(30), || successor_lists_correct(&all, 2))
        .expect("the three pods did not form one ring");
    for k in 0..50 {
        put(pods[k % 3].api, &format!("pod-key-{k}"), b"kept");
    }

    // chordal-0 restarts on its volume while the others run: it joins
    // them (a member answers at the seeds) instead of creating a ring.
    assert!(pods[0].terminate().success());
    pods[0] = start(0);
    let all: Vec<&NodeProc> = pods.iter().collect();
    eventually(Duration::from_secs(30), || successor_lists_correct(&all, 2))
        .expect("chordal-0 did not rejoin the ring");

    // Every pod down, then up again in order: chordal-0 finds no member,
    // creates the ring with its data; the others join it.
    for p in pods.iter_mut().rev() {
        assert!(p.terminate().success());
    }
    pods.clear();
    let pods = start_all();
    let all: Vec<&NodeProc> = pods.iter().collect();
    eventually(Duration::from_secs(30), || successor_lists_correct(&all, 2))
        .expect("the ring did not come back after a full stop");
    for k in 0..50 {
        assert_eq!(
            get(pods[(k + 1) % 3].api, &format!("pod-key-{k}")).as_deref(),
            Some(&b"kept"[..]),
            "pod-key-{k}"
        );
    }
}

/// One Secret with every pod's certificate: each pod runs with its own
/// (its node id is its certificate's), and the two form a TLS ring.
#[test]
fn the_entrypoint_gives_each_pod_its_own_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let secret = dir.path().join("tls-all");
    std::fs::create_dir_all(&secret).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["ca", "init", "--dir", ca.to_str().unwrap()]);
    std::fs::copy(ca.join("ca.crt"), secret.join("ca.crt")).unwrap();
    let mut ids = Vec::new();
    for i in 0..2 {
        let out = dir.path().join(format!("issued-{i}"));
        let line = run(&[
            "ca",
            "issue",
            "--dir",
            ca.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        ids.push(v["id"].as_str().unwrap().to_string());
        std::fs::copy(
            out.join("node.crt"),
            secret.join(format!("chordal-{i}.crt")),
        )
        .unwrap();
        std::fs::copy(
            out.join("node.key"),
            secret.join(format!("chordal-{i}.key")),
        )
        .unwrap();
    }
    let ports: Vec<(u16, u16)> = (0..2).map(|_| (free_port(), free_port())).collect();
    let seeds = format!("127.0.0.1:{},127.0.0.1:{}", ports[0].0, ports[1].0);
    let seed_api = format!("127.0.0.1:{}", ports[1].1);
    let mut pods = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let tls_run = dir.path().join(format!("run-{i}"));
        let env = [
            ("CHORDAL_TLS_SOURCE", secret.as_path()),
            ("CHORDAL_TLS_RUN_DIR", tls_run.as_path()),
        ];
        let data = dir.path().join(format!("data-{i}"));
        pods.push(pod_with(
            &format!("chordal-{i}"),
            *p,
            &data,
            &seeds,
            &seed_api,
            &env,
        ));
        assert_eq!(
            pods[i].id.to_hex(),
            ids[i],
            "chordal-{i} runs with its own certificate"
        );
    }
    let all: Vec<&NodeProc> = pods.iter().collect();
    eventually(Duration::from_secs(30), || successor_lists_correct(&all, 1))
        .expect("the two TLS pods did not form a ring");
}

/// Every metric the alert rules use is one a node exports (or
/// Prometheus's own `up`).
#[test]
fn the_alert_rules_use_metrics_a_node_exports() {
    let docs = yaml("prometheus/chordal-alerts.yml");
    let node = NodeProc::start(None, &[]);
    let (_, text) = http(node.api, "GET", "/metrics");
    let exported: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let rules = docs[0]["groups"][0]["rules"].as_vec().unwrap();
    assert!(rules.len() >= 5);
    for rule in rules {
        let expr = rule["expr"].as_str().unwrap();
        let names: Vec<&str> = expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("chordal_"))
            .collect();
        assert!(!names.is_empty() || expr.contains("up{"), "{expr}");
        for name in names {
            assert!(
                exported.contains(name),
                "alert {} uses {name}, which a node does not export",
                rule["alert"].as_str().unwrap()
            );
        }
    }
}
