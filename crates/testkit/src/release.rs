//! An earlier release's binaries, built from its commit for the upgrade tests: the previous
//! release's worker beside today's on one Redis, and the tool that captures the keys and jobs
//! it writes (`tests/fixtures/layout-v*/`).
//!
//! The commit's tree is taken with `git archive` from this repository (a clone needs the
//! commit: a shallow CI clone must fetch it) into `<target>/previous-release/<commit>/src`, and
//! built there with `cargo build --locked` into `<target>/previous-release/target`, the same
//! profile as the running test. Both stay: the first run on a machine pays the build (every
//! dependency, as for a fresh clone, since the tree lives elsewhere), later runs only cargo's
//! check that nothing changed (about a second). Releases built there share their dependencies'
//! artifacts, so a second commit costs only its own crates.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::bins::set_by_cargo_for_tests;

/// The packages built from a release: its worker and its CLI (`entraguard-notify`).
const PACKAGES: [&str; 2] = ["entraguard-worker", "entraguard-notify"];

/// The directory holding release `commit`'s binaries (`entraguard-worker`, `entraguard-notify`),
/// built on the first call on this machine. Panics with what failed (git or cargo's output).
pub fn release_bin_dir(commit: &str) -> PathBuf {
    // One build at a time in this process (cargo also locks its target dir across processes).
    static BUILDING: Mutex<()> = Mutex::new(());
    let _guard = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    match build(commit) {
        Ok(dir) => dir,
        Err(report) => panic!("building release {commit}: {report}"),
    }
}

/// The repository's root: the testkit sits at `<root>/crates/testkit`.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `<target>` and the profile (`debug`, `release`, …) of the running test executable.
fn target_and_profile() -> Result<(PathBuf, String), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the running test: {e}"))?;
    let mut dir = exe.parent().ok_or("the test executable has no directory")?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().ok_or("no profile directory")?;
    }
    let profile = dir.file_name().and_then(|n| n.to_str()).ok_or("no profile name")?.to_owned();
    let target = dir.parent().ok_or("no target directory")?.to_path_buf();
    Ok((target, profile))
}

fn build(commit: &str) -> Result<PathBuf, String> {
    let (target, profile) = target_and_profile()?;
    let root = target.join("previous-release");
    let src = root.join(commit).join("src");
    if !src.join("Cargo.toml").is_file() {
        extract(commit, &src)?;
    }
    let build_target = root.join("target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&src).args(["build", "--locked", "--bins", "--quiet"]);
    for p in PACKAGES {
        cmd.args(["-p", p]);
    }
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    cmd.arg("--target-dir").arg(&build_target);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|n| set_by_cargo_for_tests(n) || n == "CARGO_TARGET_DIR") {
            cmd.env_remove(&name);
        }
    }
    let started = std::time::Instant::now();
    let out = cmd.output().map_err(|e| format!("cannot run {}: {e}", cargo.to_string_lossy()))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} exited with {}:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let elapsed = started.elapsed();
    if elapsed.as_secs() >= 5 {
        eprintln!("built release {commit} in {elapsed:.1?} into {}", build_target.display());
    }
    let dir = build_target.join(profile);
    for p in PACKAGES {
        let bin = dir.join(format!("{p}{}", std::env::consts::EXE_SUFFIX));
        if !bin.is_file() {
            return Err(format!("{} missing after the build", bin.display()));
        }
    }
    Ok(dir)
}

/// `git archive <commit>` of this repository, unpacked into `dest` (through a temporary
/// directory beside it, renamed when whole, so an interrupted run leaves no half tree).
fn extract(commit: &str, dest: &Path) -> Result<(), String> {
    let root = repo_root();
    let known = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
        .status()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !known.success() {
        return Err(format!(
            "commit {commit} is not in the repository at {} (a shallow clone? `git fetch --unshallow`)",
            root.display()
        ));
    }
    let parent = dest.parent().ok_or("no parent directory")?;
    std::fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
    let tmp = tempdir_in(parent)?;
    let mut archive = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["archive", "--format=tar", commit])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run git archive: {e}"))?;
    let stdout = archive.stdout.take().ok_or("git archive has no stdout")?;
    let untar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(&tmp)
        .stdin(stdout)
        .status()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    let archived = archive.wait().map_err(|e| format!("git archive: {e}"))?;
    if !archived.success() || !untar.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(format!("git archive {commit} | tar -x failed ({archived}, {untar})"));
    }
    if let Err(e) = std::fs::rename(&tmp, dest) {
        let _ = std::fs::remove_dir_all(&tmp);
        if !dest.join("Cargo.toml").is_file() {
            return Err(format!("rename into {}: {e}", dest.display()));
        }
    }
    Ok(())
}

fn tempdir_in(parent: &Path) -> Result<PathBuf, String> {
    let dir = tempfile::Builder::new()
        .prefix(".src-")
        .tempdir_in(parent)
        .map_err(|e| format!("temp dir in {}: {e}", parent.display()))?;
    Ok(dir.keep())
}
