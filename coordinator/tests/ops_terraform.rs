//! The terraform module (`terraform/`), checked where no provider can be
//! downloaded: `terraform fmt -check`, the python-hcl2 assertions of
//! `terraform/tests/check_module.py`, and checkov with no failed check (every
//! skipped one carries a `#checkov:skip=CKV_...:reason` comment). Each test fails
//! with the tool's whole output. The tools are `terraform` on the PATH and the
//! virtualenv `scripts/setup.sh` creates (`SCANFLEET_VENV`, default
//! /opt/scanfleet/venv). Nothing here talks to the network: checkov runs with
//! `--skip-download` and a proxy on 127.0.0.1:9 that refuses every connection.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the coordinator crate sits in the workspace")
        .to_path_buf()
}

fn venv_bin(tool: &str) -> PathBuf {
    let venv = std::env::var_os("SCANFLEET_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/scanfleet/venv"));
    let path = venv.join("bin").join(tool);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup.sh (it creates the virtualenv with python-hcl2 and checkov), \
         or point SCANFLEET_VENV at one",
        path.display()
    );
    path
}

/// A command with no way off this machine: every HTTP(S) client that honours
/// the proxy variables is sent to a closed loopback port.
fn offline(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(repo_root())
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("http_proxy", "http://127.0.0.1:9")
        .env("https_proxy", "http://127.0.0.1:9")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env("BC_SKIP_MAPPING", "TRUE")
        .env("CHECKOV_SKIP_DOWNLOAD", "TRUE");
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn dump(out: &Output) -> String {
    format!(
        "exit status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn terraform_fmt_check() {
    let out =
        run(offline("terraform").args(["fmt", "-check", "-recursive", "-diff", "terraform/"]));
    assert!(
        out.status.success(),
        "terraform fmt -check -recursive terraform/ failed (run `terraform fmt -recursive terraform/`):\n{}",
        dump(&out)
    );
}

#[test]
fn module_assertions_hold() {
    let out = run(offline(venv_bin("python")).arg("terraform/tests/check_module.py"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("checks passed"),
        "terraform/tests/check_module.py failed:\n{}",
        dump(&out)
    );
}

#[test]
fn checkov_has_no_unexplained_failure() {
    let out = run(offline(venv_bin("checkov")).args([
        "-d",
        "terraform",
        "--framework",
        "terraform",
        "cloudformation",
        "--skip-download",
        "--skip-results-upload",
        "--compact",
        "-o",
        "json",
    ]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "checkov's JSON report does not parse ({e}):\n{}",
            dump(&out)
        )
    });
    // One framework gives an object, several a list.
    let reports = match report {
        serde_json::Value::Array(v) => v,
        v => vec![v],
    };
    let mut problems = Vec::new();
    let mut passed = 0;
    let mut frameworks = Vec::new();
    for r in &reports {
        let kind = r["check_type"].as_str().unwrap_or("?").to_string();
        frameworks.push(kind.clone());
        let summary = &r["summary"];
        passed += summary["passed"].as_u64().unwrap_or(0);
        if summary["parsing_errors"].as_u64().unwrap_or(0) > 0 {
            problems.push(format!(
                "{kind}: parsing errors: {}",
                r["results"]["parsing_errors"]
            ));
        }
        for f in r["results"]["failed_checks"]
            .as_array()
            .into_iter()
            .flatten()
        {
            problems.push(format!(
                "{kind}: FAILED {} {} ({}:{})",
                f["check_id"].as_str().unwrap_or("?"),
                f["check_name"].as_str().unwrap_or("?"),
                f["file_path"].as_str().unwrap_or("?"),
                f["resource"].as_str().unwrap_or("?"),
            ));
        }
        for s in r["results"]["skipped_checks"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let reason = s["check_result"]["suppress_comment"]
                .as_str()
                .or_else(|| s["suppress_comment"].as_str())
                .unwrap_or("")
                .trim();
            if reason.len() < 10 {
                problems.push(format!(
                    "{kind}: {} skipped on {} without a reason: write #checkov:skip={}:<why>",
                    s["check_id"].as_str().unwrap_or("?"),
                    s["resource"].as_str().unwrap_or("?"),
                    s["check_id"].as_str().unwrap_or("?"),
                ));
            }
        }
    }
    assert!(
        frameworks.iter().any(|f| f == "terraform")
            && frameworks.iter().any(|f| f == "cloudformation"),
        "checkov did not scan both the terraform and the CloudFormation (StackSet) files: {frameworks:?}\n{}",
        dump(&out)
    );
    assert!(
        passed >= 50,
        "checkov passed only {passed} checks: did it find the module?\n{}",
        dump(&out)
    );
    assert!(
        problems.is_empty(),
        "checkov:\n  {}\n\nfull output:\n{}",
        problems.join("\n  "),
        dump(&out)
    );
}
