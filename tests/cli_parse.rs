//! The command line parses: clap's own consistency checks over the whole
//! command tree, every leaf subcommand with all of its flags given at once,
//! and every `sagaflow …` invocation shown in the README, the docs and the
//! example scripts.
#![allow(clippy::unwrap_used)]

use clap::{CommandFactory, Parser};
use sagaflow::cli::Cli;

#[test]
fn the_command_tree_is_consistent() {
    Cli::command().debug_assert();
}

/// An argument vector naming `cmd` (reached by `path`) with every one of its
/// positional arguments and flags, global ones included.
fn every_flag(path: &[String], cmd: &clap::Command) -> Vec<String> {
    let mut argv = vec!["sagaflow".to_owned()];
    argv.extend(path.iter().cloned());
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        let value = match arg.get_possible_values().first() {
            Some(v) => v.get_name().to_owned(),
            None if id.contains("json") || id.contains("patch") || id.contains("output") => {
                "{}".to_owned()
            }
            None => "1".to_owned(),
        };
        let takes_value = arg.get_action().takes_values();
        match arg.get_long() {
            Some(long) => {
                argv.push(format!("--{long}"));
                if takes_value {
                    argv.push(value);
                }
            }
            None if arg.is_positional() => argv.push(value),
            None => {}
        }
    }
    argv
}

fn leaves(path: Vec<String>, cmd: &clap::Command, out: &mut Vec<Vec<String>>) {
    let subs: Vec<_> = cmd
        .get_subcommands()
        .filter(|s| s.get_name() != "help")
        .collect();
    if subs.is_empty() {
        out.push(every_flag(&path, cmd));
    }
    for s in subs {
        let mut p = path.clone();
        p.push(s.get_name().to_owned());
        leaves(p, s, out);
    }
}

#[test]
fn every_subcommand_parses_with_all_its_flags() {
    let mut root = Cli::command();
    root.build();
    let mut all = Vec::new();
    leaves(Vec::new(), &root, &mut all);
    assert!(all.len() > 20, "{} subcommands", all.len());
    let skip = all
        .iter()
        .find(|a| a[1..3] == ["workflow".to_owned(), "skip".to_owned()])
        .unwrap();
    assert!(skip.contains(&"--step-output".to_owned()), "{skip:?}");
    assert!(skip.contains(&"--output".to_owned()), "{skip:?}");
    for argv in &all {
        if let Err(e) = Cli::try_parse_from(argv) {
            panic!("{argv:?}: {e}");
        }
    }
}

/// The `sagaflow …` command lines of the shell blocks of `text`, a command
/// whose quotes span several lines joined into one, `VAR=value` prefixes
/// dropped.
fn invocations(text: &str, markdown: bool) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut in_block = !markdown;
    let mut pending = String::new();
    for line in text.lines() {
        if markdown && line.trim_start().starts_with("```") {
            in_block = !in_block && line.trim_start().trim_start_matches('`').starts_with("sh");
            pending.clear();
            continue;
        }
        if !in_block {
            continue;
        }
        if pending.is_empty() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let first = words.iter().position(|w| !w.contains('='));
            let Some(first) = first else { continue };
            if words[first] != "sagaflow" && words[first] != "\"$sagaflow\"" {
                continue;
            }
        } else {
            pending.push('\n');
        }
        pending.push_str(line);
        let Some(words) = shlex::split(&pending) else {
            continue;
        };
        pending.clear();
        let words: Vec<String> = words
            .into_iter()
            .skip_while(|w| w.contains('=') && !w.starts_with('-'))
            .map(|w| {
                if w == "$sagaflow" {
                    "sagaflow".to_owned()
                } else {
                    w
                }
            })
            .collect();
        let end = words
            .iter()
            .position(|w| w == "|" || w == ">")
            .unwrap_or(words.len());
        out.push(words[..end].to_vec());
    }
    out
}

#[test]
fn every_documented_invocation_parses() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files: Vec<std::path::PathBuf> = vec![format!("{root}/README.md").into()];
    for dir in ["docs", "examples"] {
        for e in std::fs::read_dir(format!("{root}/{dir}")).unwrap() {
            let p = e.unwrap().path();
            if matches!(p.extension().and_then(|x| x.to_str()), Some("md" | "sh")) {
                files.push(p);
            }
        }
    }
    let mut seen = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let markdown = f.extension().is_some_and(|x| x == "md");
        for argv in invocations(&text, markdown) {
            if let Err(e) = Cli::try_parse_from(&argv) {
                panic!("{}: {argv:?}: {e}", f.display());
            }
            seen.push(argv.join(" "));
        }
    }
    for documented in [
        "workflow skip",
        "workflow cancel",
        "workflow resolve",
        "workflow retry",
        "workflow start",
    ] {
        assert!(
            seen.iter().any(|s| s.contains(documented)),
            "no documented `sagaflow {documented}` among {seen:#?}"
        );
    }
    assert!(
        seen.iter().any(|s| s.contains("--step-output")),
        "{seen:#?}"
    );
}

#[test]
fn the_operator_flags_parse_with_their_values() {
    for argv in [
        &[
            "workflow",
            "list",
            "--search",
            "subscriber_id=alice",
            "--search",
            "customer.id=C-1",
            "--failed-step",
            "activate_onu",
            "--idempotency-key",
            "order-1",
            "--state",
            "FAILED",
            "--state",
            "compensation_failed",
            "--created-after",
            "2026-03-01T08:00:00Z",
            "--created-before",
            "2026-03-02T08:00:00Z",
            "--ca-cert",
            "ca.pem",
            "--client-cert",
            "c.pem",
            "--client-key",
            "k.pem",
        ][..],
        &[
            "workflow",
            "bulk",
            "retry",
            "--failed-step",
            "activate_onu",
            "--state",
            "FAILED",
            "--dry-run",
            "--max-runs",
            "500",
            "--reason",
            "OLT outage",
            "--yes",
        ],
        &[
            "workflow",
            "bulk",
            "compensate",
            "--search",
            "onu_serial=ALCL0001",
            "--dry-run",
        ],
        &[
            "workflow",
            "bulk",
            "cancel",
            "--workflow",
            "provision_subscriber",
            "-y",
        ],
        &[
            "workflow",
            "rewind",
            "0190a5d2-ac96-7d4b-bcce-b302099a8057",
            "--to-step",
            "reserve",
            "--reason",
            "wrong plan",
            "--patch",
            "{}",
        ],
        &["workflow", "start", "demo_saga", "--wait"],
    ] {
        let mut v = vec!["sagaflow"];
        v.extend_from_slice(argv);
        if let Err(e) = Cli::try_parse_from(&v) {
            panic!("{v:?}: {e}");
        }
    }
    for bad in [
        &["workflow", "list", "--state", "SLEEPING"][..],
        &["workflow", "bulk", "frobnicate", "--dry-run"],
        &["workflow", "rewind", "x", "--to-step", "s"],
        &["workflow", "list", "--client-cert", "c.pem"],
    ] {
        let mut v = vec!["sagaflow"];
        v.extend_from_slice(bad);
        assert!(Cli::try_parse_from(&v).is_err(), "{v:?} must be refused");
    }
}

#[test]
fn the_pool_and_reservation_flags_parse_with_their_values() {
    use sagaflow::cli::Command;
    use sagaflow::cli::reservations::{FamilyArg, ReservationsCommand};
    let parse = |argv: &[&str]| {
        let mut v = vec!["sagaflow"];
        v.extend_from_slice(argv);
        Cli::try_parse_from(&v).unwrap_or_else(|e| panic!("{v:?}: {e}"))
    };
    let cli = parse(&[
        "reservations",
        "reserve",
        "sub-1",
        "--family",
        "ipv6",
        "--pool",
        "dev-v6",
        "--address",
        "2001:db8:1000:100::/56",
        "--expires-in-days",
        "14",
        "--reason",
        "static customer",
    ]);
    let Command::Reservations {
        command: Some(cmd @ ReservationsCommand::Reserve { .. }),
        ..
    } = cli.command
    else {
        panic!("{:?}", cli.command);
    };
    assert_eq!(
        format!("{cmd:?}"),
        "Reserve { subscriber: \"sub-1\", family: Ipv6, pool: \"dev-v6\", \
         address: \"2001:db8:1000:100::/56\", expires_in_days: 14, reason: \"static customer\" }"
    );
    // The defaults: IPv4, any pool, any address, 0 days (the server's 30).
    match parse(&["reservations", "reserve", "sub-2"]).command {
        Command::Reservations {
            command:
                Some(ReservationsCommand::Reserve {
                    family,
                    pool,
                    address,
                    expires_in_days,
                    ..
                }),
            ..
        } => assert_eq!(
            (family, pool.as_str(), address.as_str(), expires_in_days),
            (FamilyArg::Ipv4, "", "", 0)
        ),
        other => panic!("{other:?}"),
    }
    for argv in [
        &["reservations"][..],
        &[
            "reservations",
            "list",
            "--subscriber",
            "sub-1",
            "-o",
            "json",
        ],
        &["reservations", "release", "42", "--token", "dev-operator"],
        &[
            "pools",
            "create",
            "p",
            "--cidr",
            "10.0.0.0/24",
            "--warning",
            "70",
        ],
        &[
            "pools",
            "update",
            "p",
            "--cidr",
            "10.0.0.0/23",
            "--critical",
            "95",
        ],
        &["pools", "retire", "p"],
    ] {
        parse(argv);
    }
    for bad in [
        &["reservations", "reserve", "s", "--family", "ipv5"][..],
        &["reservations", "reserve", "s", "--expires-in-days", "-1"],
        &["reservations", "reserve"],
        &["reservations", "release"],
        &["pools", "update"],
    ] {
        let mut v = vec!["sagaflow"];
        v.extend_from_slice(bad);
        assert!(Cli::try_parse_from(&v).is_err(), "{v:?} must be refused");
    }
}

#[test]
fn every_pool_and_reservation_flag_has_help() {
    let cli = Cli::command();
    for top in ["pools", "reservations"] {
        let cmd = cli.find_subcommand(top).unwrap();
        for sub in cmd.get_subcommands() {
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" {
                    continue;
                }
                assert!(
                    arg.get_help().is_some(),
                    "sagaflow {top} {} --{id} has no help",
                    sub.get_name()
                );
            }
        }
    }
}

#[test]
fn completions_and_man_parse() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        match Cli::try_parse_from(["sagaflow", "completions", shell]) {
            Ok(Cli {
                command: sagaflow::cli::Command::Completions { .. },
                ..
            }) => {}
            other => panic!("completions {shell}: {other:?}"),
        }
    }
    assert!(Cli::try_parse_from(["sagaflow", "completions", "tcsh"]).is_err());
    assert!(Cli::try_parse_from(["sagaflow", "completions"]).is_err());
    assert!(matches!(
        Cli::try_parse_from(["sagaflow", "man"]).map(|c| c.command),
        Ok(sagaflow::cli::Command::Man)
    ));
}

/// The visible top-level subcommands (what completions and the man page
/// list).
fn subcommands() -> Vec<String> {
    Cli::command()
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name().to_owned())
        .collect()
}

fn run_binary(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sagaflow"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn bash_completions_offer_every_subcommand() {
    let script = run_binary(&["completions", "bash"]);
    let names = subcommands();
    assert!(names.len() > 10, "{names:?}");
    for name in &names {
        // The case arm that completes `sagaflow <name> …`.
        assert!(
            script.contains(&format!("sagaflow,{name})")),
            "completions bash: no {name}"
        );
    }
    // The nested ones and the flags too.
    assert!(script.contains("workflow,bulk)"), "no `workflow bulk`");
    assert!(script.contains("--database-url"), "no flags");
}

#[test]
fn the_man_page_lists_every_subcommand() {
    let page = run_binary(&["man"]);
    assert!(page.contains(".TH sagaflow 1"), "no title: {page}");
    for name in subcommands() {
        assert!(
            page.contains(&format!("sagaflow\\-{name}(1)")),
            "man page: no {name}"
        );
    }
    assert!(
        !page.contains("sagaflow\\-man"),
        "the hidden `man` is listed"
    );
}
