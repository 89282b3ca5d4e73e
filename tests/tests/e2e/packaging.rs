//! The Debian packages: built by `deploy/debian/build.sh`, inspected with
//! `dpkg-deb`, installed, upgraded, removed and purged with the real `dpkg`
//! in a throw-away root, and their systemd units checked with
//! `systemd-analyze verify` and `systemd-analyze security` against that root.
//!
//! The throw-away root is a folder with an empty dpkg database, minimal
//! `/etc/passwd` and `/etc/group`, and the host's status entries of the
//! packages ours depend on (so `dpkg` checks `Depends:` for real, against the
//! host's versions). `dpkg --root=DIR --force-script-chrootless` runs the
//! maintainer scripts on the host with `DPKG_ROOT=DIR`; they are written for
//! that (see `deploy/debian/common.sh`). What this does not do: start the
//! services under a running systemd (the test machine has none as PID 1).
//!
//! The test packages this build's binaries (debug under `cargo test`) and
//! skips compression to save time; the release packages differ only in the
//! binaries and in xz compression.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context as _, bail, ensure};
use soc_e2e::workspace_root;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs a command, failing with its output when it fails.
fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd
        .output()
        .with_context(|| format!("running {cmd:?} (is it installed? tests/run.sh installs it)"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

fn stdout(cmd: &mut Command) -> anyhow::Result<String> {
    Ok(String::from_utf8(run(cmd)?.stdout)?)
}

/// `debug` or `release`: the profile this test was built with.
fn profile() -> String {
    let exe = std::env::current_exe().expect("test binary path");
    let p = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned());
    match p.as_deref() {
        Some("release") => "release".into(),
        _ => "debug".into(),
    }
}

/// The two packages of one build.
struct Debs {
    collector: PathBuf,
    agent: PathBuf,
}

/// Runs the documented build script with `args` and finds its two packages.
fn build(out: &Path, args: &[&str]) -> anyhow::Result<Debs> {
    let script = workspace_root().join("deploy/debian/build.sh");
    let text = stdout(
        Command::new("bash")
            .arg(&script)
            .args(["--profile", &profile(), "--compress", "none", "--out"])
            .arg(out)
            .args(args),
    )?;
    let find = |pkg: &str| {
        text.lines()
            .map(PathBuf::from)
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{pkg}_")))
            })
            .with_context(|| format!("build.sh printed no {pkg} package:\n{text}"))
    };
    Ok(Debs {
        collector: find("soc-collector")?,
        agent: find("soc-agent")?,
    })
}

fn field(deb: &Path, name: &str) -> anyhow::Result<String> {
    Ok(
        stdout(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name))?
            .trim()
            .to_owned(),
    )
}

/// Package names in a `Depends:` value (first of each alternative).
fn depends_names(depends: &str) -> Vec<String> {
    depends
        .split(',')
        .filter_map(|d| d.split('|').next())
        .filter_map(|d| d.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// `dpkg-deb -c`: path (without the leading `.`) -> (mode, owner).
fn listing(deb: &Path) -> anyhow::Result<BTreeMap<String, (String, String)>> {
    let text = stdout(Command::new("dpkg-deb").arg("-c").arg(deb))?;
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            ensure!(f.len() >= 6, "odd dpkg-deb -c line: {l}");
            let path = f[5].trim_start_matches('.').trim_end_matches('/');
            Ok((path.to_owned(), (f[0].to_owned(), f[1].to_owned())))
        })
        .collect()
}

/// The files of a repository folder with one extension, as installed paths.
fn shipped(repo_dir: &str, ext: &str, dest: &str) -> anyhow::Result<Vec<String>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(workspace_root().join(repo_dir))? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if name.ends_with(ext) {
            v.push(format!("{dest}/{name}"));
        }
    }
    ensure!(!v.is_empty(), "no *{ext} in {repo_dir}");
    Ok(v)
}

/// Checks what a package holds: its control fields, files with their modes,
/// conffiles, maintainer scripts, and that `Depends:` names the package of
/// every shared library its binaries load.
fn inspect(deb: &Path, pkg: &str, files: &[(String, &str)], conffiles: &str) -> anyhow::Result<()> {
    let arch = stdout(Command::new("dpkg").arg("--print-architecture"))?;
    assert_eq!(field(deb, "Package")?, pkg);
    assert_eq!(field(deb, "Version")?, format!("{VERSION}-1"));
    assert_eq!(field(deb, "Architecture")?, arch.trim());
    let depends = field(deb, "Depends")?;
    for d in ["libc6", "passwd", "init-system-helpers"] {
        assert!(
            depends_names(&depends).iter().any(|n| n == d),
            "{pkg} Depends: {depends}"
        );
    }
    let info = stdout(Command::new("dpkg-deb").arg("-I").arg(deb))?;
    for s in ["conffiles", "postinst", "prerm", "postrm", "md5sums"] {
        assert!(info.contains(s), "{pkg}: no {s} in dpkg-deb -I:\n{info}");
    }

    let list = listing(deb)?;
    for (path, mode) in files {
        let (m, owner) = list
            .get(path.as_str())
            .with_context(|| format!("{pkg} lacks {path}"))?;
        assert_eq!(m, mode, "{pkg}: mode of {path}");
        assert_eq!(owner, "root/root", "{pkg}: owner of {path}");
    }
    for (path, (mode, owner)) in &list {
        assert_eq!(owner, "root/root", "{pkg}: {path} owned by {owner}");
        let b = mode.as_bytes();
        assert!(
            b[5] != b'w' && b[8] != b'w' && !mode.contains('s'),
            "{pkg}: {path} is {mode} (group/world-writable or setuid)"
        );
    }

    let control = tempfile::tempdir()?;
    run(Command::new("dpkg-deb")
        .arg("-e")
        .arg(deb)
        .arg(control.path()))?;
    assert_eq!(
        std::fs::read_to_string(control.path().join("conffiles"))?,
        conffiles
    );
    for s in ["postinst", "prerm", "postrm"] {
        let p = control.path().join(s);
        assert_eq!(std::fs::metadata(&p)?.mode() & 0o777, 0o755, "{pkg} {s}");
        let text = std::fs::read_to_string(&p)?;
        assert!(
            text.starts_with("#!/bin/sh\n") && !text.lines().any(|l| l == "#COMMON#"),
            "{pkg} {s}"
        );
        run(Command::new("sh").arg("-n").arg(&p))?;
    }

    // Every shared library the binaries load comes from a package in Depends.
    let x = tempfile::tempdir()?;
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(x.path()))?;
    for e in std::fs::read_dir(x.path().join("usr/bin"))? {
        let bin = e?.path();
        let ldd = stdout(Command::new("ldd").arg(&bin))?;
        for lib in ldd.lines().filter_map(|l| l.split("=> ").nth(1)) {
            let lib = lib.split_whitespace().next().unwrap_or_default();
            let owner = stdout(Command::new("dpkg").args(["-S", lib]))?;
            let owner = owner.split(':').next().unwrap_or_default().to_owned();
            assert!(
                depends_names(&depends).contains(&owner),
                "{pkg}: {} loads {lib} from {owner}, missing from Depends: {depends}",
                bin.display()
            );
        }
    }
    Ok(())
}

/// A throw-away root with an empty dpkg database that knows the host's
/// versions of `depends` as installed.
fn make_root(root: &Path, depends: &[String]) -> anyhow::Result<()> {
    for d in [
        "var/lib/dpkg/updates",
        "var/lib/dpkg/info",
        "var/log",
        "etc",
        "lib/systemd/system",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n")?;
    std::fs::write(root.join("etc/group"), "root:x:0:\nadm:x:4:\n")?;
    std::fs::write(root.join("etc/shadow"), "root:*:19000:0:99999:7:::\n")?;
    std::fs::write(root.join("etc/gshadow"), "root:*::\nadm:*::\n")?;
    let mut status = String::new();
    for d in depends {
        let s = stdout(Command::new("dpkg-query").args(["-s", d])).with_context(|| {
            format!("the host has no {d} to stand for it in the throw-away root")
        })?;
        status.push_str(s.trim_end());
        status.push_str("\n\n");
        // An empty file list: the stand-in installs no files here.
        let name = stdout(Command::new("dpkg-query").args(["-W", "-f", "${binary:Package}", d]))?;
        std::fs::write(
            root.join(format!("var/lib/dpkg/info/{}.list", name.trim())),
            "",
        )?;
    }
    std::fs::write(root.join("var/lib/dpkg/status"), status)?;
    Ok(())
}

fn dpkg(root: &Path, args: &[&std::ffi::OsStr]) -> anyhow::Result<Output> {
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .arg(format!("--log={}", root.join("var/log/dpkg.log").display()))
        .args(["--force-script-chrootless", "--force-not-root"])
        .args(args))
}

fn installed_version(root: &Path, pkg: &str) -> anyhow::Result<String> {
    stdout(
        Command::new("dpkg-query")
            .arg(format!(
                "--admindir={}",
                root.join("var/lib/dpkg").display()
            ))
            .args(["-W", "-f", "${Status} ${Version}", pkg]),
    )
}

/// uid or gid of `name` in the root's passwd or group file.
fn id_of(root: &Path, file: &str, name: &str) -> anyhow::Result<u32> {
    let text = std::fs::read_to_string(root.join(file))?;
    let line = text
        .lines()
        .find(|l| l.split(':').next() == Some(name))
        .with_context(|| format!("no {name} in {file}:\n{text}"))?;
    Ok(line.split(':').nth(2).context("id")?.parse()?)
}

/// Asserts owner, group and mode of a path in the root.
fn assert_owned(root: &Path, path: &str, uid: u32, gid: u32, mode: u32) -> anyhow::Result<()> {
    let m = std::fs::metadata(root.join(path.trim_start_matches('/')))
        .with_context(|| format!("{path} is missing"))?;
    assert_eq!(
        (m.uid(), m.gid(), m.mode() & 0o7777),
        (uid, gid, mode),
        "{path}: (uid, gid, mode) = ({}, {}, {:o})",
        m.uid(),
        m.gid(),
        m.mode() & 0o7777
    );
    Ok(())
}

fn exists(root: &Path, path: &str) -> bool {
    root.join(path.trim_start_matches('/'))
        .symlink_metadata()
        .is_ok()
}

/// `systemd-analyze verify` of both units against the root: the unit files
/// parse without a warning and their ExecStart binaries exist there.
fn verify_units(root: &Path) -> anyhow::Result<()> {
    // The standard targets the units hang off (systemd's own files, not ours).
    for e in std::fs::read_dir("/lib/systemd/system")? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "target") {
            std::fs::copy(
                &p,
                root.join("lib/systemd/system")
                    .join(p.file_name().context("name")?),
            )?;
        }
    }
    let verify = || {
        Command::new("systemd-analyze")
            .arg(format!("--root={}", root.display()))
            .args(["verify", "soc-collector.service", "soc-agent.service"])
            .output()
    };
    let out = verify()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "systemd-analyze verify: {err}"
    );
    // The check has teeth: without the binary, verify fails.
    let bin = root.join("usr/bin/soc-agent");
    std::fs::rename(&bin, bin.with_extension("away"))?;
    let out = verify()?;
    std::fs::rename(bin.with_extension("away"), &bin)?;
    assert!(
        !out.status.success(),
        "verify passed without /usr/bin/soc-agent"
    );
    Ok(())
}

/// `systemd-analyze security --offline=yes`: each unit rates OK or better
/// (exposure below 5.0 of 10). Returns the figures for the report.
fn security(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut figures = Vec::new();
    for unit in ["soc-collector.service", "soc-agent.service"] {
        let text = stdout(
            Command::new("systemd-analyze")
                .arg(format!("--root={}", root.display()))
                .args(["security", "--offline=yes", "--no-pager", unit]),
        )?;
        let line = text
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .with_context(|| format!("no overall exposure for {unit}:\n{text}"))?;
        let tail = line.rsplit(": ").next().unwrap_or_default();
        let mut parts = tail.split_whitespace();
        let exposure: f64 = parts.next().context("exposure")?.parse()?;
        let rating = parts.next().context("rating")?.to_owned();
        assert!(
            exposure < 5.0 && ["OK", "SAFE", "PERFECT"].contains(&rating.as_str()),
            "{unit}: {line}"
        );
        figures.push(format!("{unit}: {exposure} {rating}"));
    }
    Ok(figures)
}

/// The service directives the design asks for, read from the unit files.
fn check_unit_directives(root: &Path) -> anyhow::Result<()> {
    for (unit, bin) in [
        ("soc-collector", "soc-collector"),
        ("soc-agent", "soc-agent"),
    ] {
        let text =
            std::fs::read_to_string(root.join(format!("lib/systemd/system/{unit}.service")))?;
        let has = |l: &str| text.lines().any(|x| x.trim() == l);
        let cfg = if unit == "soc-agent" {
            "agent"
        } else {
            "collector"
        };
        let check = format!("/usr/bin/{bin} --config /etc/soc/{cfg}.toml --check-config");
        assert!(
            has(&format!("ExecStartPre={check}")),
            "{unit}: check before start"
        );
        for l in [
            "User=soc",
            "Restart=on-failure",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "CapabilityBoundingSet=",
            "MemoryDenyWriteExecute=yes",
            "SystemCallFilter=@system-service",
        ] {
            assert!(has(l), "{unit}: {l}");
        }
        assert!(has(&format!(
            "StateDirectory={}",
            if unit == "soc-agent" {
                "soc-agent"
            } else {
                "soc"
            }
        )));
        assert!(
            !text.contains("ReadWritePaths=/"),
            "{unit}: writable only through StateDirectory"
        );
    }
    let c = std::fs::read_to_string(root.join("lib/systemd/system/soc-collector.service"))?;
    let reload: Vec<&str> = c.lines().filter(|l| l.starts_with("ExecReload=")).collect();
    assert_eq!(
        reload,
        [
            "ExecReload=/usr/bin/soc-collector --config /etc/soc/collector.toml --check-config",
            "ExecReload=/bin/kill -HUP $MAINPID"
        ],
        "the check runs before the reload signal"
    );
    let a = std::fs::read_to_string(root.join("lib/systemd/system/soc-agent.service"))?;
    assert!(a.lines().any(|l| l == "SupplementaryGroups=adm"));
    Ok(())
}

#[test]
fn packages_build_inspect_install_upgrade_and_purge_in_a_throwaway_root() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let v1 = build(&tmp.path().join("r1"), &[])?;

    // What the packages hold.
    let mut collector_files: Vec<(String, &str)> = vec![
        ("/usr/bin/soc-collector".into(), "-rwxr-xr-x"),
        ("/usr/bin/socctl".into(), "-rwxr-xr-x"),
        ("/etc/soc/collector.toml".into(), "-rw-r--r--"),
        (
            "/lib/systemd/system/soc-collector.service".into(),
            "-rw-r--r--",
        ),
        ("/var/lib/soc".into(), "drwxr-x---"),
        (
            "/usr/share/doc/soc-collector/copyright".into(),
            "-rw-r--r--",
        ),
        (
            "/usr/share/doc/soc-collector/operator-guide.md".into(),
            "-rw-r--r--",
        ),
        (
            "/usr/share/soc/grafana-provisioning/dashboards/soc.yml".into(),
            "-rw-r--r--",
        ),
        (
            "/usr/share/soc/prometheus/soc-alerts.yml".into(),
            "-rw-r--r--",
        ),
    ];
    for (dir, ext, dest) in [
        ("rules/rules", ".yml", "/usr/share/soc/rules"),
        ("rules/decoders", ".yml", "/usr/share/soc/decoders"),
        ("dashboards", ".json", "/usr/share/soc/dashboards"),
    ] {
        for p in shipped(dir, ext, dest)? {
            collector_files.push((p, "-rw-r--r--"));
        }
    }
    let agent_files: Vec<(String, &str)> = vec![
        ("/usr/bin/soc-agent".into(), "-rwxr-xr-x"),
        ("/etc/soc/agent.toml".into(), "-rw-r--r--"),
        ("/lib/systemd/system/soc-agent.service".into(), "-rw-r--r--"),
        ("/var/lib/soc-agent".into(), "drwxr-x---"),
        ("/usr/share/doc/soc-agent/copyright".into(), "-rw-r--r--"),
    ];
    inspect(
        &v1.collector,
        "soc-collector",
        &collector_files,
        "/etc/soc/collector.toml\n",
    )?;
    inspect(
        &v1.agent,
        "soc-agent",
        &agent_files,
        "/etc/soc/agent.toml\n",
    )?;
    assert!(
        !listing(&v1.agent)?
            .keys()
            .any(|p| p.starts_with("/usr/share/soc")),
        "the agent package carries no rules or dashboards"
    );

    // Install both into a throw-away root; dpkg checks Depends against the
    // host's versions of those packages.
    let root = tmp.path().join("root");
    let mut deps = depends_names(&field(&v1.collector, "Depends")?);
    deps.extend(depends_names(&field(&v1.agent, "Depends")?));
    deps.sort();
    deps.dedup();
    make_root(&root, &deps)?;
    dpkg(
        &root,
        &[
            "-i".as_ref(),
            v1.collector.as_os_str(),
            v1.agent.as_os_str(),
        ],
    )?;
    for pkg in ["soc-collector", "soc-agent"] {
        assert_eq!(
            installed_version(&root, pkg)?,
            format!("install ok installed {VERSION}-1")
        );
    }

    // The user, and who may read and write what.
    let passwd = std::fs::read_to_string(root.join("etc/passwd"))?;
    let soc = passwd
        .lines()
        .find(|l| l.starts_with("soc:"))
        .context("user soc")?;
    let f: Vec<&str> = soc.split(':').collect();
    assert_eq!((f[5], f[6]), ("/nonexistent", "/usr/sbin/nologin"), "{soc}");
    let (uid, gid) = (
        id_of(&root, "etc/passwd", "soc")?,
        id_of(&root, "etc/group", "soc")?,
    );
    assert!(uid < 1000 && uid > 0, "soc is a system user: {soc}");
    assert_owned(&root, "/etc/soc/collector.toml", 0, gid, 0o640)?;
    assert_owned(&root, "/etc/soc/agent.toml", 0, gid, 0o640)?;
    assert_owned(&root, "/var/lib/soc", uid, gid, 0o750)?;
    assert_owned(&root, "/var/lib/soc-agent", uid, gid, 0o750)?;
    for unit in ["soc-collector", "soc-agent"] {
        let link = root.join(format!(
            "etc/systemd/system/multi-user.target.wants/{unit}.service"
        ));
        assert_eq!(
            std::fs::read_link(&link).with_context(|| format!("{unit} is not enabled"))?,
            PathBuf::from(format!("/lib/systemd/system/{unit}.service"))
        );
    }
    for (dir, dest) in [
        ("rules/rules", "usr/share/soc/rules"),
        ("rules/decoders", "usr/share/soc/decoders"),
    ] {
        for e in std::fs::read_dir(workspace_root().join(dir))? {
            let e = e?;
            if !e.file_type()?.is_file() {
                continue;
            }
            assert_eq!(
                std::fs::read(e.path())?,
                std::fs::read(root.join(dest).join(e.file_name()))?,
                "{dest} holds the shipped {}",
                e.file_name().to_string_lossy()
            );
        }
    }

    // The installed binaries run, and the installed configurations are
    // what --check-config (ExecStartPre) says: the collector's defaults are
    // valid; the agent's needs the operator (CA file, secret) first.
    let bin = |b: &str| root.join("usr/bin").join(b);
    let v = stdout(Command::new(bin("socctl")).arg("--version"))?;
    assert!(v.contains(VERSION), "{v}");
    let ok = stdout(
        Command::new(bin("soc-collector"))
            .arg("--config")
            .arg(root.join("etc/soc/collector.toml"))
            .arg("--check-config"),
    )?;
    assert!(ok.starts_with("configuration is valid"), "{ok}");
    let bad = Command::new(bin("soc-agent"))
        .arg("--config")
        .arg(root.join("etc/soc/agent.toml"))
        .arg("--check-config")
        .output()?;
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("/etc/soc/ca.pem"),
        "the agent names what is missing: {}",
        String::from_utf8_lossy(&bad.stderr)
    );

    check_unit_directives(&root)?;
    verify_units(&root)?;
    for f in security(&root)? {
        eprintln!("systemd-analyze security --offline=yes {f}");
    }

    // Upgrade to the next package revision: the operator's configuration,
    // the state and a disabled service stay as they are.
    let agent_toml = root.join("etc/soc/agent.toml");
    let mut edited = std::fs::read_to_string(&agent_toml)?;
    edited.push_str("# edited by the operator\n");
    std::fs::write(&agent_toml, &edited)?;
    std::fs::write(
        root.join("var/lib/soc-agent/checkpoints.json"),
        "{\"version\": 1}",
    )?;
    std::fs::write(root.join("var/lib/soc/state-marker"), "kept")?;
    std::fs::remove_file(
        root.join("etc/systemd/system/multi-user.target.wants/soc-agent.service"),
    )?;
    let v2 = build(&tmp.path().join("r2"), &["--no-build", "--revision", "2"])?;
    dpkg(
        &root,
        &[
            "-i".as_ref(),
            v2.collector.as_os_str(),
            v2.agent.as_os_str(),
        ],
    )?;
    for pkg in ["soc-collector", "soc-agent"] {
        assert_eq!(
            installed_version(&root, pkg)?,
            format!("install ok installed {VERSION}-2")
        );
    }
    assert_eq!(
        std::fs::read_to_string(&agent_toml)?,
        edited,
        "conffile kept"
    );
    for leftover in [
        "agent.toml.dpkg-new",
        "agent.toml.dpkg-dist",
        "agent.toml.dpkg-old",
    ] {
        assert!(!exists(&root, &format!("etc/soc/{leftover}")), "{leftover}");
    }
    assert!(exists(&root, "var/lib/soc-agent/checkpoints.json"));
    assert!(exists(&root, "var/lib/soc/state-marker"));
    assert_owned(&root, "/etc/soc/agent.toml", 0, gid, 0o640)?;
    assert_eq!(
        std::fs::read_to_string(root.join("etc/passwd"))?
            .matches("\nsoc:")
            .count(),
        1
    );
    assert!(
        !exists(
            &root,
            "etc/systemd/system/multi-user.target.wants/soc-agent.service"
        ),
        "an upgrade does not enable a service the operator disabled"
    );
    assert!(exists(
        &root,
        "etc/systemd/system/multi-user.target.wants/soc-collector.service"
    ));

    // Remove keeps configuration and state; purge deletes them.
    dpkg(&root, &["-r".as_ref(), "soc-agent".as_ref()])?;
    assert!(!exists(&root, "usr/bin/soc-agent"));
    assert!(exists(&root, "etc/soc/agent.toml"));
    assert!(exists(&root, "var/lib/soc-agent/checkpoints.json"));
    dpkg(&root, &["-P".as_ref(), "soc-agent".as_ref()])?;
    assert!(!exists(&root, "etc/soc/agent.toml"));
    assert!(!exists(&root, "var/lib/soc-agent"));
    assert!(
        exists(&root, "var/lib/soc/state-marker"),
        "purging the agent leaves the collector alone"
    );
    dpkg(&root, &["-P".as_ref(), "soc-collector".as_ref()])?;
    for gone in [
        "var/lib/soc",
        "etc/soc",
        "usr/bin/soc-collector",
        "usr/share/soc",
        "etc/systemd/system/multi-user.target.wants/soc-collector.service",
    ] {
        assert!(!exists(&root, gone), "{gone} is left after purge");
    }
    assert!(
        std::fs::read_to_string(root.join("etc/passwd"))?.contains("\nsoc:"),
        "the user stays (Debian practice: files it owned may remain)"
    );
    Ok(())
}
