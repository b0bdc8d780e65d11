//! `tandemctl --help` lists every command the daemon accepts: checked against
//! the daemon's command table ([`COMMANDS`]) and `failover exec`, so the help
//! and the parser cannot drift apart.

use std::process::Command as Process;

use tandem_ctrl::api::{Command, ExecTarget, COMMANDS, EXEC_HELP};

fn help() -> String {
    let out = Process::new(env!("CARGO_BIN_EXE_tandemctl"))
        .arg("--help")
        .output()
        .expect("run tandemctl --help");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn help_lists_every_command_of_the_daemons_table_and_failover_exec() {
    let text = help();
    for (words, cmd, what) in COMMANDS {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(words) && l.contains(what))
            .unwrap_or_else(|| panic!("`{words}` missing from tandemctl --help:\n{text}"));
        // Each listed command parses back to itself.
        assert_eq!(Command::parse(words), Ok(*cmd), "{line}");
    }
    assert!(
        text.contains(EXEC_HELP.0) && text.contains(EXEC_HELP.1),
        "{text}"
    );
    for needle in ["config reload", "write standby", "--force"] {
        assert!(text.contains(needle), "`{needle}` missing:\n{text}");
    }
    // The exec form listed in the help is accepted for every target and
    // every table command.
    for t in ["mate", "active", "standby"] {
        for (words, cmd, _) in COMMANDS {
            let line = format!("failover exec {t} {words}");
            let Ok(Command::Exec(e)) = Command::parse(&line) else {
                panic!("`{line}` does not parse as failover exec");
            };
            assert_eq!(e.command(), *cmd);
            assert_eq!(e.target.word(), t);
        }
    }
    let _ = ExecTarget::Mate;
}

#[test]
fn every_command_variant_is_in_the_table() {
    // An exhaustive match: a new variant fails to compile here until it is
    // listed, and then must be in COMMANDS (hence in the help).
    fn listed(c: Command) -> bool {
        match c {
            Command::Exec(_) => true,
            Command::ShowInterface
            | Command::ShowRoute
            | Command::ShowArp
            | Command::ShowCounters
            | Command::ShowVersion
            | Command::ShowConn
            | Command::ShowConnCount
            | Command::ShowXlate
            | Command::ShowFailover
            | Command::ShowFailoverState
            | Command::ShowFailoverHistory
            | Command::ShowMonitorInterface
            | Command::FailoverActive
            | Command::NoFailoverActive
            | Command::FailoverReset
            | Command::NoFailover
            | Command::Failover
            | Command::WriteStandby
            | Command::ConfigReload
            | Command::ConfigReloadForce => COMMANDS.iter().any(|(_, x, _)| *x == c),
        }
    }
    for c in [
        Command::ShowInterface,
        Command::ShowRoute,
        Command::ShowArp,
        Command::ShowCounters,
        Command::ShowVersion,
        Command::ShowConn,
        Command::ShowConnCount,
        Command::ShowXlate,
        Command::ShowFailover,
        Command::ShowFailoverState,
        Command::ShowFailoverHistory,
        Command::ShowMonitorInterface,
        Command::FailoverActive,
        Command::NoFailoverActive,
        Command::FailoverReset,
        Command::NoFailover,
        Command::Failover,
        Command::WriteStandby,
        Command::ConfigReload,
        Command::ConfigReloadForce,
    ] {
        assert!(listed(c), "{c:?} is not in COMMANDS");
    }
}

#[test]
fn force_is_refused_for_other_commands() {
    let out = Process::new(env!("CARGO_BIN_EXE_tandemctl"))
        .args(["-s", "/nonexistent.sock", "--force", "show", "route"])
        .output()
        .expect("run tandemctl");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force applies to `config reload`"));
}
