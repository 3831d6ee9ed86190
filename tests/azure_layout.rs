//! The deployment as the Functions host and Azure see it: host.json and every function.json
//! against the rules of functions-protocol.md §1-2, the infrastructure script's queues and app
//! settings (dry run), the example settings, the zip made by scripts/package.sh (mode 0755 read
//! back from the archive itself) and the portability check of scripts/build-release.sh.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use coremachine::config::{Settings, TransportMode};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every function folder (name → function.json).
fn functions() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(root()).unwrap() {
        let p = entry.unwrap().path();
        let f = p.join("function.json");
        if p.is_dir() && f.is_file() {
            out.insert(
                p.file_name().unwrap().to_string_lossy().into_owned(),
                read_json(&f),
            );
        }
    }
    out
}

#[test]
fn host_json_follows_the_custom_handler_rules() {
    let h = read_json(&root().join("host.json"));
    assert_eq!(h["version"], "2.0");
    let ch = &h["customHandler"];
    let d = &ch["description"];
    assert_eq!(
        d["defaultExecutablePath"], "coremachine",
        "the Linux binary name, no .exe"
    );
    assert!(
        d["arguments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "serve"),
        "starts `coremachine serve`"
    );
    assert!(
        ch.get("port").is_none(),
        "the host picks the port (FUNCTIONS_CUSTOMHANDLER_PORT)"
    );
    assert!(
        d.get("enableForwardingHttpRequest").is_none(),
        "forwarding is a sibling of description"
    );
    assert_eq!(ch["enableForwardingHttpRequest"], true);
    assert_eq!(
        h["extensionBundle"]["id"],
        "Microsoft.Azure.Functions.ExtensionBundle"
    );
    assert_eq!(
        h["extensionBundle"]["version"], "[4.*, 5.0.0)",
        "bundle v4: Service Bus extension 5.x (identity connections)"
    );
    let sb = &h["extensions"]["serviceBus"];
    for old in [
        "messageHandlerOptions",
        "sessionHandlerOptions",
        "batchOptions",
    ] {
        assert!(
            sb.get(old).is_none(),
            "{old} is the 2.x-4.x schema; 5.x settings are flat"
        );
    }
    assert_eq!(
        sb["autoCompleteMessages"], true,
        "non-C# handlers cannot settle messages themselves"
    );
    assert!(sb["maxConcurrentCalls"].as_u64().is_some_and(|n| n >= 1));
    assert_eq!(h["extensions"]["http"]["routePrefix"], "api");
}

#[test]
fn every_function_json_follows_the_binding_rules() {
    let fns = functions();
    assert!(fns.len() >= 6, "{:?}", fns.keys());
    let queues = coremachine::config::QueueNames::default();
    let mut seen_queues = BTreeSet::new();
    for (name, f) in &fns {
        let bindings = f["bindings"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no bindings"));
        let triggers: Vec<&Value> = bindings
            .iter()
            .filter(|b| b["type"].as_str().is_some_and(|t| t.ends_with("Trigger")))
            .collect();
        assert_eq!(triggers.len(), 1, "{name}: exactly one trigger");
        let t = triggers[0];
        assert_eq!(t["direction"], "in", "{name}");
        match t["type"].as_str().unwrap() {
            "serviceBusTrigger" => {
                assert_eq!(
                    bindings.len(),
                    1,
                    "{name}: no output bindings (messages go through the REST sender)"
                );
                assert_eq!(
                    t["name"], "msg",
                    "{name}: the binding name the handler reads"
                );
                assert_eq!(
                    t["dataType"], "binary",
                    "{name}: otherwise the body arrives double-encoded"
                );
                assert_eq!(
                    t["connection"], "ServiceBusConnection",
                    "{name}: the app-setting prefix"
                );
                assert_eq!(
                    t["isSessionsEnabled"], false,
                    "{name}: the queues have no sessions"
                );
                // [batch]: the tasks trigger takes batches (the engine claims and completes
                // them together); job and poison messages stay one per invocation.
                if name == "tasks-queue-trigger" {
                    assert_eq!(t["cardinality"], "many", "{name}: batched invocations");
                } else {
                    assert!(
                        t.get("cardinality").is_none_or(|c| c == "one"),
                        "{name}: one message per invocation"
                    );
                }
                assert!(
                    t.get("autoComplete").is_none_or(|c| c == true),
                    "{name}: autoComplete must stay true"
                );
                let q = t["queueName"].as_str().unwrap();
                assert!(
                    [&queues.jobs, &queues.tasks, &queues.poison].contains(&&q.to_string()),
                    "{name}: {q}"
                );
                seen_queues.insert(q.to_string());
            }
            "httpTrigger" => {
                // Forwarding applies only to exactly one httpTrigger + one http output; anything
                // else silently falls back to the non-forwarded payload.
                assert_eq!(bindings.len(), 2, "{name}: httpTrigger + http output only");
                let out = bindings.iter().find(|b| b["direction"] == "out").unwrap();
                assert_eq!(out["type"], "http", "{name}");
                assert_eq!(out["name"], "res", "{name}");
                assert!(
                    ["anonymous", "function", "admin"].contains(&t["authLevel"].as_str().unwrap()),
                    "{name}"
                );
                assert!(
                    t["route"]
                        .as_str()
                        .is_some_and(|r| !r.starts_with('/') && !r.starts_with("api/")),
                    "{name}: route without the api prefix"
                );
                assert!(
                    t["methods"].as_array().is_some_and(|m| !m.is_empty()),
                    "{name}"
                );
            }
            "timerTrigger" => {
                assert_eq!(
                    t["schedule"].as_str().unwrap().split_whitespace().count(),
                    6,
                    "{name}: NCRONTAB with seconds"
                );
            }
            other => panic!("{name}: unexpected trigger {other}"),
        }
    }
    assert_eq!(
        seen_queues,
        [
            queues.jobs.clone(),
            queues.tasks.clone(),
            queues.poison.clone()
        ]
        .into_iter()
        .collect(),
        "one trigger per queue"
    );
}

/// The infrastructure script's dry run.
fn infra_dry_run() -> String {
    infra_dry_run_with(&[])
}

/// The dry run with extra arguments, as it ended.
fn infra_run(extra: &[&str]) -> std::process::Output {
    Command::new("bash")
        .arg(root().join("scripts/infra/deploy-infra.sh"))
        .args([
            "--prefix",
            "cmtest",
            "--location",
            "westeurope",
            "--pg-admin",
            "admin@contoso.com",
            "--dry-run",
        ])
        .args(extra)
        .output()
        .expect("bash runs")
}

/// The dry run with extra arguments (what it would run, on stdout).
fn infra_dry_run_with(extra: &[&str]) -> String {
    let out = infra_run(extra);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn flag<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let mut it = line.split_whitespace();
    while let Some(w) = it.next() {
        if w == name {
            return it.next();
        }
    }
    None
}

#[test]
fn dead_letters_of_both_queues_are_forwarded_to_the_queue_the_poison_function_reads() {
    let dry = infra_dry_run();
    let poison_fn = &functions()["poison-queue-trigger"];
    let poison_queue = poison_fn["bindings"][0]["queueName"].as_str().unwrap();
    let creates: BTreeMap<&str, &str> = dry
        .lines()
        .filter(|l| l.starts_with("+ az servicebus queue create"))
        .map(|l| (flag(l, "--name").unwrap(), l))
        .collect();
    assert!(
        creates.contains_key(poison_queue),
        "{poison_queue} is created"
    );
    for f in ["jobs-queue-trigger", "tasks-queue-trigger"] {
        let q = functions()[f]["bindings"][0]["queueName"]
            .as_str()
            .unwrap()
            .to_string();
        let line = creates
            .get(q.as_str())
            .unwrap_or_else(|| panic!("queue {q} of {f} is created"));
        assert_eq!(
            flag(line, "--forward-dead-lettered-messages-to"),
            Some(poison_queue),
            "{line}"
        );
        assert_eq!(
            flag(line, "--enable-duplicate-detection"),
            Some("true"),
            "{line}"
        );
        assert_eq!(
            flag(line, "--duplicate-detection-history-time-window"),
            Some("PT10M"),
            "{line}"
        );
        assert_eq!(flag(line, "--lock-duration"), Some("PT5M"), "{line}");
        assert!(
            flag(line, "--max-delivery-count").is_some_and(|n| n.parse::<u32>().is_ok()),
            "{line}"
        );
    }
    let poison_line = dry
        .lines()
        .position(|l| l.contains(&format!("--name {poison_queue} ")))
        .unwrap();
    let jobs_line = dry
        .lines()
        .position(|l| l.contains("--name geospatial-jobs "))
        .unwrap();
    assert!(
        poison_line < jobs_line,
        "the forwarding target exists before the queues that forward to it"
    );
    for role in [
        "Azure\\ Service\\ Bus\\ Data\\ Receiver",
        "Azure\\ Service\\ Bus\\ Data\\ Sender",
    ] {
        assert!(
            dry.contains(&format!("--role {role}")),
            "role {role} is assigned"
        );
    }
    assert!(
        dry.contains("--assign-identity \\[system\\]"),
        "system-assigned identity"
    );
    assert!(dry.contains("--runtime custom") && dry.contains("--is-linux"));
    assert!(dry.contains("--microsoft-entra-auth Enabled"));
    assert!(dry.contains("microsoft-entra-admin create"));
    assert!(
        dry.contains("app-insights component create")
            && dry.contains("log-analytics workspace create")
    );
}

/// The app settings the infrastructure script sets.
fn infra_settings() -> BTreeMap<String, String> {
    settings_of(&infra_dry_run())
}

/// The app settings of a dry run.
fn settings_of(dry: &str) -> BTreeMap<String, String> {
    let line = dry
        .lines()
        .find(|l| l.contains("appsettings set"))
        .expect("app settings are set");
    let (_, list) = line.split_once("--settings ").unwrap();
    list.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn example_settings() -> BTreeMap<String, String> {
    let v = read_json(&root().join("local.settings.json.example"));
    v["Values"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect()
}

#[test]
fn the_infrastructure_sets_a_coherent_azure_configuration() {
    let settings = infra_settings();
    // It is exactly what `serve` needs: the binary accepts it in Azure mode.
    let s = Settings::from_lookup(TransportMode::ServiceBus, |k| settings.get(k).cloned())
        .expect("serve starts with the infrastructure's settings");
    assert!(
        s.db_identity.is_some(),
        "PostgreSQL with the managed identity"
    );
    assert!(s.migrate_on_start);
    let coremachine::config::TransportSettings::ServiceBus(sb) = s.transport else {
        panic!("Service Bus settings")
    };
    assert_eq!(sb.namespace, "cmtest-sb.servicebus.windows.net");
    assert!(matches!(
        sb.auth,
        coremachine::config::ServiceBusAuth::ManagedIdentity { client_id: None }
    ));
    let (_, tls) = coremachine::config::parse_url(&s.database_url).unwrap();
    assert_eq!(tls.mode, coremachine::config::SslMode::VerifyFull);
    // Every setting it writes is documented in the example file (or is the host's own).
    let documented = example_settings();
    let host_only = [
        "SCM_DO_BUILD_DURING_DEPLOYMENT",
        "ServiceBusConnection__credential",
    ];
    for k in settings.keys() {
        assert!(
            documented.contains_key(k) || host_only.contains(&k.as_str()),
            "{k} is set by the infrastructure but missing from local.settings.json.example"
        );
    }
}

#[test]
fn the_example_settings_are_valid_in_local_and_azure_mode() {
    let ex = example_settings();
    for mode in [TransportMode::LocalQueue, TransportMode::ServiceBus] {
        Settings::from_lookup(mode.clone(), |k| ex.get(k).cloned())
            .unwrap_or_else(|e| panic!("local.settings.json.example in {mode:?}: {e}"));
    }
    for k in [
        "ServiceBusConnection",
        "ServiceBusConnection__fullyQualifiedNamespace",
        "ServiceBusConnection__clientId",
        "SERVICE_BUS_REST_ENDPOINT",
        "SERVICE_BUS_MAX_BATCH_MESSAGES",
        "SERVICE_BUS_MAX_BATCH_BYTES",
        "SERVICE_BUS_MAX_MESSAGE_BYTES",
        "SERVICE_BUS_MESSAGE_TTL_S",
        "SERVICE_BUS_SEND_MAX_RETRIES",
        "SERVICE_BUS_SEND_TIMEOUT_S",
        "SERVICE_BUS_SEND_CONCURRENCY",
        "POSTGIS_HOST",
        "POSTGIS_PORT",
        "POSTGIS_USER",
        "POSTGIS_PASSWORD",
        "POSTGIS_DATABASE",
        "USE_MANAGED_IDENTITY",
        "MANAGED_IDENTITY_CLIENT_ID",
        "MANAGED_IDENTITY_NAME",
        "DATABASE_SSLMODE",
        "DATABASE_SSL_ROOT_CERT",
        "DB_POOL_MAX_LIFETIME_S",
        "MIGRATE_ON_START",
        // Read by the code too (#12 point 8).
        "ServiceBusConnection__credential",
        "JOB_PROCESSING_QUEUE",
        "TASK_PROCESSING_QUEUE",
        "COREMACHINE_URL",
        "COREMACHINE_KEY",
        "COREMACHINE_PORT",
        "FUNCTIONS_APP_ROOT_PATH",
        "TRIGGER_MAX_BODY_BYTES",
    ] {
        assert!(
            ex.contains_key(k),
            "{k} is missing from local.settings.json.example"
        );
    }
}

/// (name, unix mode) of every entry of a zip, read from its central directory.
fn zip_entries(path: &Path) -> Vec<(String, u32)> {
    let b = std::fs::read(path).unwrap();
    let le16 = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]) as usize;
    let le32 = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let eocd = (0..=b.len() - 22)
        .rev()
        .find(|&i| le32(i) == 0x0605_4b50)
        .expect("end of central directory");
    let count = le16(eocd + 10);
    let mut p = le32(eocd + 16) as usize;
    let mut out = Vec::new();
    for _ in 0..count {
        assert_eq!(le32(p), 0x0201_4b50, "central directory entry");
        let made_by_os = b[p + 5];
        let name_len = le16(p + 28);
        let extra_len = le16(p + 30);
        let comment_len = le16(p + 32);
        let external = le32(p + 38);
        let name = String::from_utf8(b[p + 46..p + 46 + name_len].to_vec()).unwrap();
        assert_eq!(made_by_os, 3, "{name}: made on Unix, so the mode is kept");
        out.push((name, external >> 16));
        p += 46 + name_len + extra_len + comment_len;
    }
    out
}

#[test]
fn the_package_holds_the_binary_with_mode_0755_host_json_and_every_function() {
    let dir = std::env::temp_dir().join(format!("cm-package-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let zip = dir.join("app.zip");
    // A small stand-in for the release binary (zipping the 100+ MB debug build takes a minute),
    // deliberately not executable: the package must make it 0755 anyway.
    let standin = dir.join("coremachine");
    std::fs::write(&standin, "#!/bin/sh\necho stand-in\n").unwrap();
    let out = Command::new("bash")
        .arg(root().join("scripts/package.sh"))
        .arg(&standin)
        .arg(&zip)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let entries: BTreeMap<String, u32> = zip_entries(&zip)
        .into_iter()
        .filter(|(n, _)| !n.ends_with('/'))
        .collect();
    assert_eq!(
        entries.get("coremachine").map(|m| m & 0o777),
        Some(0o755),
        "{entries:?}"
    );
    assert_eq!(
        entries.get("coremachine").map(|m| m & 0o170000),
        Some(0o100000),
        "a regular file"
    );
    assert!(entries.contains_key("host.json"));
    for f in functions().keys() {
        assert!(
            entries.contains_key(&format!("{f}/function.json")),
            "{f} is packaged"
        );
    }
    assert_eq!(
        entries.len(),
        2 + functions().len(),
        "nothing else: {entries:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn check(bin: &Path) -> (bool, String) {
    let out = Command::new("bash")
        .arg(root().join("scripts/build-release.sh"))
        .arg("--check")
        .arg(bin)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_portability_check_accepts_a_static_binary_and_refuses_one_needing_a_new_glibc() {
    // A small stand-in linked the way build-release.sh links the real binary.
    let dir = std::env::temp_dir().join(format!("cm-static-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("main.rs"),
        "fn main() { println!(\"stand-in\"); }\n",
    )
    .unwrap();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .args([
            "-C",
            "target-feature=+crt-static",
            "--target",
            "x86_64-unknown-linux-gnu",
            "-o",
        ])
        .arg(dir.join("standin"))
        .arg(dir.join("main.rs"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, text) = check(&dir.join("standin"));
    assert!(ok && text.contains("statically linked"), "{text}");

    // The debug build links the build machine's glibc dynamically: refused, with the reason.
    let (ok, text) = check(Path::new(env!("CARGO_BIN_EXE_coremachine")));
    assert!(!ok, "{text}");
    assert!(
        text.contains("dynamically linked") && text.contains("GLIBC_2."),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn deploy_dry_run_publishes_the_package_with_the_cli_that_is_installed() {
    let dir = std::env::temp_dir().join(format!("cm-deploy-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let zip = dir.join("app.zip");
    std::fs::write(&zip, b"not used in a dry run").unwrap();
    // Neither func nor az on PATH: the az command is printed, nothing runs.
    let out = Command::new("bash")
        .arg(root().join("scripts/deploy.sh"))
        .args(["cm-func", "--resource-group", "cm-rg", "--dry-run", "--zip"])
        .arg(&zip)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("az functionapp deployment source config-zip --resource-group cm-rg --name cm-func --src"),
        "{text}"
    );
    assert!(
        text.contains("https://cm-func.azurewebsites.net/api/health"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_blob_job_types_get_their_storage_account_and_read_role_from_the_infrastructure() {
    let without = infra_dry_run();
    assert!(
        !without.contains("STORAGE_ACCOUNT_NAME"),
        "not set unless asked for"
    );
    assert!(
        without.contains("no --data-storage"),
        "the dry run says the blob jobs stay unconfigured"
    );
    let with = infra_dry_run_with(&["--data-storage", "rasters", "--data-storage-rg", "data-rg"]);
    let settings = with
        .lines()
        .find(|l| l.contains("appsettings set"))
        .expect("app settings are set");
    assert!(
        settings.contains(" STORAGE_ACCOUNT_NAME=rasters"),
        "{settings}"
    );
    let role = with
        .lines()
        .find(|l| {
            l.contains("role assignment create") && l.contains("Storage\\ Blob\\ Data\\ Reader")
        })
        .unwrap_or_else(|| panic!("a Storage Blob Data Reader assignment: {with}"));
    assert_eq!(
        flag(role, "--scope"),
        Some("\\<data-storage-id\\>"),
        "{role}"
    );
    // The settings the binary reads then describe managed-identity Blob access to that account.
    let map = settings_of(&with);
    Settings::from_lookup(TransportMode::ServiceBus, |k| map.get(k).cloned()).unwrap();
    let storage =
        coremachine::config::StorageSettings::from_lookup(|k| map.get(k).cloned()).unwrap();
    assert!(
        matches!(&storage, Some(coremachine::config::StorageSettings::ManagedIdentity { account_name, client_id: None }) if account_name == "rasters"),
        "{:?}",
        storage
    );
    let out = infra_run(&["--data-storage", "Not_Valid"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--data-storage must be a storage account name")
    );
}

/// #12 point 8: `./scripts/test.sh` and `./scripts/dev.sh`, when their PostgreSQL port is taken
/// by another program, say so and name COREMACHINE_PGPORT (instead of pg_ctl's "could not start
/// server"), before creating any cluster.
#[test]
fn the_scripts_name_coremachine_pgport_when_their_port_is_taken() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    for script in ["scripts/test.sh", "scripts/dev.sh"] {
        let dir = std::env::temp_dir().join(format!("cm_pg_{}", uuid::Uuid::new_v4().simple()));
        let out = Command::new("bash")
            .arg(root().join(script))
            .env("COREMACHINE_PGPORT", &port)
            .env("COREMACHINE_PGDIR", &dir)
            .output()
            .expect("bash runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{script}: {stderr}");
        assert!(
            stderr.contains(&format!("127.0.0.1:{port} is already taken"))
                && stderr.contains("COREMACHINE_PGPORT="),
            "{script}: {stderr}"
        );
        assert!(
            !stderr.contains("could not start server"),
            "{script}: {stderr}"
        );
        assert!(!dir.exists(), "{script}: no cluster was created");
    }
    drop(held);
}

/// The words of one dry-run line, as bash would pass them: `printf %q` escapes undone
/// (backslashes and `$'…'` strings).
fn argv(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut it = line.chars().peekable();
    let mut in_word = false;
    while let Some(c) = it.next() {
        match c {
            ' ' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\\' => {
                cur.extend(it.next());
                in_word = true;
            }
            '$' if it.peek() == Some(&'\'') => {
                it.next();
                in_word = true;
                while let Some(c) = it.next() {
                    match c {
                        '\'' => break,
                        '\\' => match it.next() {
                            Some('n') => cur.push('\n'),
                            Some('t') => cur.push('\t'),
                            Some(o) => cur.push(o),
                            None => {}
                        },
                        o => cur.push(o),
                    }
                }
            }
            '\'' => {
                in_word = true;
                for c in it.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            o => {
                cur.push(o);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

fn arg<'a>(words: &'a [String], name: &str) -> Option<&'a str> {
    words
        .iter()
        .position(|w| w == name)
        .and_then(|i| words.get(i + 1))
        .map(String::as_str)
}

fn alerts_run(args: &[&str]) -> std::process::Output {
    Command::new("bash")
        .arg(root().join("scripts/infra/deploy-alerts.sh"))
        .args(["--prefix", "cmtest", "--dry-run"])
        .args(args)
        .output()
        .expect("bash runs")
}

#[test]
fn every_alert_query_is_deployed_verbatim_with_a_condition_on_its_own_columns() {
    let out = alerts_run(&["--alert-email", "oncall@contoso.com"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dry = String::from_utf8(out.stdout).unwrap();
    let commands: Vec<Vec<String>> = dry
        .lines()
        .filter(|l| l.starts_with("+ az "))
        .map(|l| argv(&l[2..]))
        .collect();
    let starts = |c: &Vec<String>, what: &[&str]| c.len() > what.len() && c[..what.len()] == *what;
    let group = commands
        .iter()
        .find(|c| starts(c, &["az", "monitor", "action-group", "create"]))
        .expect("an action group");
    let email = group
        .iter()
        .position(|w| w == "email")
        .expect("an e-mail receiver");
    assert_eq!(group[email + 2], "oncall@contoso.com");
    let logs: Vec<&Vec<String>> = commands
        .iter()
        .filter(|c| starts(c, &["az", "monitor", "scheduled-query", "create"]))
        .collect();
    let docs = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    let dir = root().join("scripts/kql/alerts");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "kql"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 5, "{files:?}");
    assert_eq!(logs.len(), files.len(), "one log alert per query");
    let condition =
        regex::Regex::new(r"^total '(\w+)' from 'q' > (\d+) where (\w+) includes \*$").unwrap();
    for f in &files {
        let stem = f.file_stem().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(f).unwrap();
        let rule = logs
            .iter()
            .find(|c| {
                arg(c, "--condition-query") == Some(format!("q={}", text.trim_end()).as_str())
            })
            .unwrap_or_else(|| panic!("{stem}.kql is not deployed verbatim"));
        assert_eq!(arg(rule, "--scopes"), Some("<app-insights-id>"), "{stem}");
        assert_eq!(
            arg(rule, "--action-groups"),
            Some("<action-group-id>"),
            "{stem}"
        );
        assert_eq!(arg(rule, "--evaluation-frequency"), Some("5m"), "{stem}");
        assert!(
            arg(rule, "--window-size").is_some_and(|w| w.ends_with('m')),
            "{stem}"
        );
        assert!(
            arg(rule, "--description")
                .is_some_and(|d| d.contains(&format!("scripts/kql/alerts/{stem}.kql"))),
            "{stem}: the description names its query"
        );
        let cond = arg(rule, "--condition").unwrap();
        let c = condition
            .captures(cond)
            .unwrap_or_else(|| panic!("{stem}: condition {cond:?}"));
        let columns = crate::common::kql::output_columns(&text);
        assert!(
            columns.contains(&c[1].to_string()),
            "{stem}: measure {} not in {columns:?}",
            &c[1]
        );
        assert!(
            columns.contains(&c[3].to_string()),
            "{stem}: dimension {} not in {columns:?}",
            &c[3]
        );
        // docs/operations.md lists the alert with the columns its query returns.
        let row = docs
            .lines()
            .find(|l| l.starts_with("| `") && l.contains(&format!("`alerts/{stem}.kql`")))
            .unwrap_or_else(|| panic!("docs/operations.md has no row for alerts/{stem}.kql"));
        let name = arg(rule, "--name")
            .unwrap()
            .trim_start_matches("cmtest-")
            .to_string();
        assert!(row.starts_with(&format!("| `{name}`")), "{row}");
        let cells: Vec<&str> = row.split(" | ").collect();
        let documented: BTreeSet<String> = cells[3]
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        assert_eq!(
            documented,
            columns.iter().cloned().collect(),
            "{stem}: docs columns"
        );
    }
    // The metric alerts watch dead letters and active messages of the three queues the
    // functions read.
    let metrics: Vec<&Vec<String>> = commands
        .iter()
        .filter(|c| starts(c, &["az", "monitor", "metrics", "alert", "create"]))
        .collect();
    let conditions: Vec<&str> = metrics
        .iter()
        .map(|c| arg(c, "--condition").unwrap())
        .collect();
    assert!(conditions[0].starts_with("max DeadletteredMessages > 0 where EntityName includes "));
    assert!(conditions[1].starts_with("avg ActiveMessages > 10000 where EntityName includes "));
    for m in &metrics {
        assert_eq!(arg(m, "--scopes"), Some("<service-bus-namespace-id>"));
        assert_eq!(arg(m, "--action"), Some("<action-group-id>"));
        let cond = arg(m, "--condition").unwrap();
        for f in [
            "jobs-queue-trigger",
            "tasks-queue-trigger",
            "poison-queue-trigger",
        ] {
            let q = functions()[f]["bindings"][0]["queueName"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(cond.contains(&q), "{cond} watches {q}");
        }
        let name = arg(m, "--name").unwrap().trim_start_matches("cmtest-");
        assert!(
            docs.contains(&format!("| `{name}` (sev")),
            "docs/operations.md lists {name}"
        );
    }
}

#[test]
fn the_alerts_need_a_receiver_and_valid_thresholds() {
    for (args, says) in [
        (&[][..], "--alert-email or --alert-webhook is required"),
        (
            &["--alert-email", "not-an-address"][..],
            "--alert-email must be an e-mail address",
        ),
        (
            &["--alert-webhook", "http://plain"][..],
            "--alert-webhook must be an https:// URL",
        ),
        (
            &["--alert-email", "a@b.c", "--backlog-threshold", "lots"][..],
            "--backlog-threshold must be a whole number",
        ),
    ] {
        let out = alerts_run(args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // A webhook alone is enough, and its receiver uses the common alert schema.
    let out = alerts_run(&[
        "--alert-webhook",
        "https://hooks.contoso.com/x",
        "--failed-jobs-threshold",
        "3",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dry = String::from_utf8(out.stdout).unwrap();
    assert!(
        dry.contains("webhook oncall-webhook https://hooks.contoso.com/x usecommonalertschema")
    );
    assert!(
        dry.contains("failed_jobs\\'\\ from\\ \\'q\\'\\ \\>\\ 3"),
        "the threshold is used"
    );
}

#[test]
fn the_infrastructure_creates_the_alerts_when_told_whom_to_tell() {
    let with = infra_dry_run_with(&["--alert-email", "oncall@contoso.com"]);
    assert_eq!(
        with.matches("+ az monitor scheduled-query create").count(),
        5
    );
    assert_eq!(with.matches("+ az monitor metrics alert create").count(), 2);
    assert!(with.contains("--resource-group cmtest-rg --name cmtest-alerts"));
    let without = infra_dry_run();
    assert!(!without.contains("scheduled-query create"));
    assert!(without.contains("no alerts"));
}

/// Compiles a small stand-in for the release binary, linked dynamically like it (against the
/// build machine's glibc): it prints the data folders it was given and where its libc came from.
fn dynamic_standin(dir: &Path) -> PathBuf {
    std::fs::write(
        dir.join("main.rs"),
        r#"fn main() {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let libc = maps.split_whitespace().find(|w| w.ends_with("/libc.so.6")).unwrap_or("?");
    println!("GDAL_DATA={}", var("GDAL_DATA"));
    println!("PROJ_DATA={}", var("PROJ_DATA"));
    println!("LIBC={libc}");
    println!("ARGS={:?}", std::env::args().skip(1).collect::<Vec<_>>());
}
"#,
    )
    .unwrap();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .args(["--target", "x86_64-unknown-linux-gnu", "-o"])
        .arg(dir.join("standin"))
        .arg(dir.join("main.rs"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("standin")
}

#[test]
fn a_dynamically_linked_binary_is_packaged_with_its_libraries_loader_and_gdal_data() {
    let dir = std::env::temp_dir().join(format!("cm-bundle-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let standin = dynamic_standin(&dir);
    let zip = dir.join("app.zip");
    let out = Command::new("bash")
        .arg(root().join("scripts/package.sh"))
        .arg(&standin)
        .arg(&zip)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let entries: BTreeMap<String, u32> = zip_entries(&zip)
        .into_iter()
        .filter(|(n, _)| !n.ends_with('/'))
        .collect();
    let mode = |name: &str| entries.get(name).map(|m| m & 0o170777);
    // host.json still names `coremachine`: now the launcher, next to the binary it starts.
    for exe in ["coremachine", "bin/coremachine", "lib/ld-linux-x86-64.so.2"] {
        assert_eq!(mode(exe), Some(0o100755), "{exe} is an executable file");
    }
    assert!(entries.contains_key("lib/libc.so.6"), "glibc is bundled");
    assert!(
        entries.contains_key("share/proj/proj.db"),
        "PROJ's database"
    );
    assert!(
        entries.keys().any(|k| k.starts_with("share/gdal/")),
        "GDAL's data"
    );
    assert!(entries.contains_key("host.json"));
    for f in functions().keys() {
        assert!(
            entries.contains_key(&format!("{f}/function.json")),
            "{f} is packaged"
        );
    }
    let stray: Vec<&String> = entries
        .keys()
        .filter(|k| {
            !(["coremachine", "host.json", "bin/coremachine"].contains(&k.as_str())
                || k.starts_with("lib/")
                || k.starts_with("share/gdal/")
                || k.starts_with("share/proj/")
                || functions().contains_key(k.trim_end_matches("/function.json")))
        })
        .collect();
    assert!(stray.is_empty(), "nothing else: {stray:?}");

    // Unpacked and started through the launcher with an empty environment, as the host would,
    // the binary gets the bundle's data folders and runs on the bundle's glibc.
    let app = dir.join("app");
    let unzip = Command::new("unzip")
        .arg("-q")
        .arg(&zip)
        .arg("-d")
        .arg(&app)
        .output()
        .unwrap();
    assert!(unzip.status.success());
    let launcher = std::fs::read_to_string(app.join("coremachine")).unwrap();
    assert!(launcher.starts_with("#!/bin/sh\n"), "{launcher}");
    let run = Command::new(app.join("coremachine"))
        .args(["serve", "--flag"])
        .env_clear()
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let app = app.canonicalize().unwrap();
    let line = |k: &str| {
        said.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} in {said}"))
            .to_string()
    };
    assert_eq!(
        line("GDAL_DATA"),
        app.join("share/gdal").display().to_string()
    );
    assert_eq!(
        line("PROJ_DATA"),
        app.join("share/proj").display().to_string()
    );
    assert!(Path::new(&line("PROJ_DATA")).join("proj.db").is_file());
    assert_eq!(
        line("LIBC"),
        app.join("lib/libc.so.6").display().to_string()
    );
    assert_eq!(
        line("ARGS"),
        r#"["serve", "--flag"]"#,
        "arguments are passed on"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
