//! `deploy/`: the Kubernetes manifests parsed into the API's own types (k8s-openapi; nothing
//! downloaded, no cluster), strictly (a field the API does not read fails, naming its path),
//! and checked against loadgen's command line; the Dockerfile's stages.

use std::path::{Path, PathBuf};

use clap::CommandFactory as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, PersistentVolumeClaim, Pod, PodSpec};
use serde::de::DeserializeOwned;
use serde::{Deserialize as _, Serialize};
use serde_json::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every YAML document of `deploy/kubernetes/<name>`, as JSON.
fn documents(name: &str) -> Vec<Value> {
    let path = deploy_dir().join("kubernetes").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{name}: not YAML: {e}")))
        .collect()
}

/// The first path where `a` has something `b` lacks or differs.
fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => a.iter().find_map(|(k, v)| match b.get(k) {
            None => Some(format!("{at}.{k}")),
            Some(w) => first_difference(v, w, &format!("{at}.{k}")),
        }),
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (v, w))| first_difference(v, w, &format!("{at}[{i}]"))),
        _ => (a != b).then(|| at.to_owned()),
    }
}

/// `doc` read as the API type `T`; written back it must say the same, so a misspelt or
/// misplaced field (which the typed read drops) fails here.
fn strict<T: DeserializeOwned + Serialize>(doc: &Value, what: &str) -> T {
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{what}: not a valid {}: {e}", std::any::type_name::<T>()));
    let back = serde_json::to_value(&typed).expect("serialises");
    if let Some(path) = first_difference(doc, &back, "") {
        panic!(
            "{what}: `{path}` is not a field the Kubernetes API reads there (or has another type)"
        );
    }
    typed
}

fn env_from<'a>(container: &'a Container, name: &str) -> &'a k8s_openapi::api::core::v1::EnvVar {
    container
        .env
        .as_ref()
        .and_then(|env| env.iter().find(|e| e.name == name))
        .unwrap_or_else(|| panic!("no env {name}"))
}

/// The environment variable loadgen's `run` reads for the flag `--<long>`.
fn run_flag_env(long: &str) -> String {
    let cli = loadgen::cli::Cli::command();
    let run = cli.find_subcommand("run").expect("run subcommand");
    let arg = run
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .unwrap_or_else(|| panic!("run has no --{long}"));
    arg.get_env()
        .and_then(|e| e.to_str())
        .unwrap_or_else(|| panic!("--{long} reads no environment variable"))
        .to_owned()
}

#[test]
fn the_indexed_job_runs_one_shard_per_pod_with_loadgen_s_own_flags() {
    let docs = documents("job.yaml");
    assert_eq!(docs.len(), 1);
    let job: Job = strict(&docs[0], "job.yaml");
    let spec = job.spec.expect("job spec");
    assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
    let shards = spec.completions.expect("completions");
    assert!(shards >= 2);
    assert_eq!(spec.parallelism, Some(shards), "every shard runs at once");
    assert_eq!(
        spec.backoff_limit,
        Some(0),
        "a retried shard would start after --start-at"
    );
    let template = spec.template;
    let labels = template
        .metadata
        .and_then(|m| m.labels)
        .expect("pod labels");
    let pod: PodSpec = template.spec.expect("pod spec");
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));

    // Spread over nodes: a topology spread on the host name selecting these very pods.
    let spread = pod
        .topology_spread_constraints
        .as_ref()
        .expect("topology spread");
    assert!(spread.iter().any(|c| {
        c.topology_key == "kubernetes.io/hostname"
            && c.when_unsatisfiable == "DoNotSchedule"
            && c.label_selector
                .as_ref()
                .and_then(|s| s.match_labels.as_ref())
                .is_some_and(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)))
    }));

    let container = &pod.containers[0];
    // The arguments are loadgen's: clap parses them, with --shards equal to the completions.
    let args: Vec<String> = container
        .args
        .clone()
        .expect("args")
        .into_iter()
        .map(|a| a.replace("$(SHARD_INDEX)", "0"))
        .collect();
    let matches = loadgen::cli::Cli::command()
        .try_get_matches_from(std::iter::once("loadgen".to_owned()).chain(args.iter().cloned()))
        .unwrap_or_else(|e| panic!("the Job's args are not loadgen's: {e}"));
    let run = matches.subcommand_matches("run").expect("loadgen run");
    assert_eq!(
        run.get_one::<u32>("shards").copied(),
        u32::try_from(shards).ok(),
        "--shards must equal completions and parallelism"
    );
    // The index for --out comes from the Job controller's completion-index annotation.
    let index = env_from(container, "SHARD_INDEX");
    let field = index
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref())
        .expect("SHARD_INDEX from a field");
    assert_eq!(
        field.field_path,
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    );
    assert!(
        container
            .args
            .as_ref()
            .expect("args")
            .iter()
            .any(|a| a.contains("$(SHARD_INDEX)"))
    );
    // Target and start time reach the flags through the variables loadgen reads.
    for (flag, key) in [("target", "target"), ("start-at", "start-at")] {
        let var = env_from(container, &run_flag_env(flag));
        let from = var
            .value_from
            .as_ref()
            .and_then(|v| v.config_map_key_ref.as_ref())
            .unwrap_or_else(|| panic!("--{flag} from a ConfigMap"));
        assert_eq!(
            (from.name.as_str(), from.key.as_str()),
            ("loadgen-run", key)
        );
    }

    // The scenario file is the ConfigMap's key; results go to the claim.
    let mounts = container.volume_mounts.as_ref().expect("mounts");
    let volumes = pod.volumes.as_ref().expect("volumes");
    let mount_of = |volume: &str| {
        mounts
            .iter()
            .find(|m| m.name == volume)
            .map(|m| m.mount_path.clone())
            .unwrap_or_else(|| panic!("no mount of {volume}"))
    };
    let file = run.get_one::<PathBuf>("file").expect("scenario file");
    let scenario_volume = volumes
        .iter()
        .find(|v| {
            v.config_map
                .as_ref()
                .is_some_and(|c| c.name == "loadgen-scenario")
        })
        .expect("the scenario ConfigMap as a volume");
    assert_eq!(
        file.parent(),
        Some(Path::new(&mount_of(&scenario_volume.name)))
    );
    let results_volume = volumes
        .iter()
        .find(|v| v.persistent_volume_claim.is_some())
        .expect("a results volume");
    let claim = &results_volume
        .persistent_volume_claim
        .as_ref()
        .expect("claim")
        .claim_name;
    let out = run.get_one::<PathBuf>("out").expect("--out");
    assert!(
        out.starts_with(mount_of(&results_volume.name)),
        "{}",
        out.display()
    );

    // Memory requested as the comment computes it: 15,000 connections x 6 KiB + 40 MiB,
    // plus half again (the measured figures are in results/README.md).
    let resources = container.resources.as_ref().expect("resources");
    let request = &resources.requests.as_ref().expect("requests")["memory"].0;
    let mib: u64 = request
        .strip_suffix("Mi")
        .expect("Mi")
        .parse()
        .expect("number");
    assert!(mib * 1024 >= (15_000 * 6 + 40 * 1024) * 3 / 2, "{request}");
    assert!(
        resources
            .limits
            .as_ref()
            .is_some_and(|l| l.contains_key("memory"))
    );

    // The claim exists, shared by every node's pod; the results pod mounts it.
    let pvc: PersistentVolumeClaim = strict(&documents("results-pvc.yaml")[0], "results-pvc.yaml");
    assert_eq!(pvc.metadata.name.as_deref(), Some(claim.as_str()));
    let modes = pvc.spec.and_then(|s| s.access_modes).expect("access modes");
    assert!(modes.iter().any(|m| m == "ReadWriteMany"));
    let reader: Pod = strict(&documents("results-pod.yaml")[0], "results-pod.yaml");
    let reader = reader.spec.expect("pod spec");
    assert!(reader.volumes.expect("volumes").iter().any(|v| {
        v.persistent_volume_claim
            .as_ref()
            .is_some_and(|c| &c.claim_name == claim)
    }));
    assert_eq!(reader.containers[0].image, container.image);
}

#[test]
fn a_misspelt_field_is_caught_by_the_strict_read() {
    let mut doc = documents("job.yaml").remove(0);
    doc["spec"]["completionMod"] = doc["spec"]["completionMode"].take();
    let caught = std::panic::catch_unwind(|| strict::<Job>(&doc, "edited job"));
    let message = caught
        .expect_err("an unknown field fails")
        .downcast::<String>()
        .expect("message");
    assert!(message.contains(".spec.completionMod"), "{message}");
}

#[test]
fn the_image_is_built_in_stages_and_runs_loadgen() {
    let path = deploy_dir().join("Dockerfile");
    let text = std::fs::read_to_string(&path).expect("Dockerfile");
    let stages = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert_eq!(stages, 2, "a build stage and a slim runtime stage");
    assert!(text.contains("cargo build --release --locked -p loadgen"));
    assert!(text.contains("ENTRYPOINT [\"loadgen\"]"));
    // The manifests run the image the README's build command tags.
    let job = documents("job.yaml").remove(0);
    let image = job["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .expect("image")
        .to_owned();
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README");
    assert!(readme.contains(&format!("docker build -f deploy/Dockerfile -t {image} .")));
    for manifest in ["results-pvc.yaml", "job.yaml", "results-pod.yaml"] {
        assert!(
            readme.contains(&format!("deploy/kubernetes/{manifest}")),
            "{manifest}"
        );
    }
}
