//! The programs the macro benchmark runs: tandem's own binaries (tandemd,
//! tandemctl, pktgen), found next to the bench executable and built with
//! cargo when missing, and the Debian tools the lab needs.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::BenchError;

/// The workspace this bench was built from (for `cargo build` and the
/// hardware profiles).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// tandem's shipped hardware profiles (`tandemd --profile-dir`).
pub fn profile_dir() -> PathBuf {
    workspace_dir().join("hw-profiles")
}

/// Paths of tandem's binaries.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub tandemd: PathBuf,
    pub tandemctl: PathBuf,
    pub pktgen: PathBuf,
    /// The cargo profile they come from (`release`, `dev`, ...).
    pub profile: String,
    /// Whether this run had to build them.
    pub built: bool,
}

const NAMES: [&str; 3] = ["tandemd", "tandemctl", "pktgen"];

/// Where cargo put the running executable: `<target>/<profile dir>` (a test
/// or bench binary sits one level deeper, in `deps/`).
fn exe_profile_dir() -> Result<PathBuf, BenchError> {
    let exe = std::env::current_exe().map_err(|e| {
        BenchError::Tools(format!("cannot find the bench executable's directory: {e}"))
    })?;
    let mut dir = exe
        .parent()
        .ok_or_else(|| BenchError::Tools(format!("{} has no parent", exe.display())))?
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    Ok(dir)
}

fn in_dir(dir: &Path) -> [PathBuf; 3] {
    NAMES.map(|n| dir.join(n))
}

impl Binaries {
    /// The binaries next to the running executable; when any is missing (or
    /// `rebuild` is set), `cargo build -p tandem-ctrl -p pktgen --bins` in
    /// the same target directory and profile first. `say` gets a line for
    /// the user before a build starts (it can take minutes).
    pub fn locate(rebuild: bool, say: &mut dyn FnMut(&str)) -> Result<Binaries, BenchError> {
        let dir = exe_profile_dir()?;
        // `target/debug` is the `dev` profile; every other directory is
        // named after its profile (`release`, custom ones).
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_string(),
            Some(p) => p.to_string(),
        };
        let paths = in_dir(&dir);
        let missing: Vec<_> = paths
            .iter()
            .filter(|p| !p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        let built = rebuild || !missing.is_empty();
        if built {
            let target = dir.parent().ok_or_else(|| {
                BenchError::Tools(format!("{} has no parent directory", dir.display()))
            })?;
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let manifest = workspace_dir().join("Cargo.toml");
            let mut cmd = Command::new(&cargo);
            cmd.args([
                "build",
                "--profile",
                &profile,
                "-p",
                "tandem-ctrl",
                "-p",
                "pktgen",
                "--bins",
            ])
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target-dir")
            .arg(target);
            let why = if missing.is_empty() {
                "--rebuild".to_string()
            } else {
                format!("missing {}", missing.join(", "))
            };
            say(&format!(
                "building tandemd, tandemctl and pktgen ({why}): {cmd:?} (this can take minutes)"
            ));
            let status = cmd.status().map_err(|e| {
                BenchError::Tools(format!("cannot run {}: {e}", Path::new(&cargo).display()))
            })?;
            if !status.success() {
                return Err(BenchError::Tools(format!(
                    "`cargo build -p tandem-ctrl -p pktgen --bins` failed ({status})"
                )));
            }
        }
        let [tandemd, tandemctl, pktgen] = paths;
        for p in [&tandemd, &tandemctl, &pktgen] {
            if !p.is_file() {
                return Err(BenchError::Tools(format!(
                    "{} is still missing after the build",
                    p.display()
                )));
            }
        }
        Ok(Binaries {
            tandemd,
            tandemctl,
            pktgen,
            profile,
            built,
        })
    }
}

/// Installs `perf` (Debian's linux-perf) for `--perf`.
pub fn ensure_perf() -> Result<(), BenchError> {
    tandem_netns::ensure_tool("perf", "linux-perf")?;
    Ok(())
}

/// Installs what the lab needs and the base image may lack.
pub fn ensure_lab_tools() -> Result<(), BenchError> {
    for (tool, package) in [
        ("ethtool", "ethtool"),
        ("nft", "nftables"),
        ("taskset", "util-linux"),
        ("chrt", "util-linux"),
    ] {
        tandem_netns::ensure_tool(tool, package)?;
    }
    Ok(())
}
