//! The process runner: exit statuses, the timeout, and that nothing of a
//! killed command's process group survives it.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use super::*;

/// Generous bound for "happens within" on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(20);

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

const NO_ENV: [(&str, &str); 0] = [];

/// The processes of group `pgid` that are alive (not zombies), from /proc.
pub(crate) fn live_group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            // After the `(comm)`: state, ppid, pgrp.
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.len() > 2 && !matches!(fields[0], "Z" | "X") && fields[2].parse() == Ok(pgid)
        })
        .collect()
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| matches!(rest.trim_start().chars().next(), Some('Z' | 'X'))),
    }
}

/// Waits (up to PATIENCE) until what [`hanging_script_with_grandchild`]
/// started is gone: the script, its grandchild and every other process of
/// the script's group; panics naming the survivors.
pub(crate) async fn assert_nothing_left(file: &Path) {
    let started = wait_for_file(file).await;
    let pids: Vec<i32> = started
        .split_whitespace()
        .map(|pid| pid.parse().unwrap())
        .collect();
    let [script, grandchild] = pids[..] else {
        panic!("{} holds {started:?}", file.display());
    };
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut left = live_group_members(script);
        left.extend([script, grandchild].into_iter().filter(|&pid| !dead(pid)));
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes {left:?} of group {script} survived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for a file a script writes (ending in a newline) and returns it.
async fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with('\n') {
                return text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fresh scratch file path for test `name`.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("ha-process-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// A script that starts a grandchild, records its own pid (its process
/// group's, when the runner works) and the grandchild's in `file`, and
/// hangs.
pub(crate) fn hanging_script_with_grandchild(file: &Path) -> String {
    format!("sleep 1000 & echo $$ $! > {}; sleep 1000", file.display())
}

#[tokio::test]
async fn exit_statuses() {
    let status = run(&sh("exit 0"), NO_ENV, PATIENCE).await.unwrap();
    assert!(status.success());
    let status = run(&sh("exit 3"), NO_ENV, PATIENCE).await.unwrap();
    assert_eq!(status.code(), Some(3));
    let status = run(&sh("test \"$HA_X\" = 'a b'"), [("HA_X", "a b")], PATIENCE)
        .await
        .unwrap();
    assert!(status.success(), "the environment is passed");
}

#[tokio::test]
async fn a_missing_program_or_an_empty_command_fails_to_start() {
    let missing = vec!["/nonexistent/program".to_owned()];
    match run(&missing, NO_ENV, PATIENCE).await {
        Err(Failure::Spawn { program, error }) => {
            assert_eq!(program, "/nonexistent/program");
            assert_eq!(error.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        run(&[], NO_ENV, PATIENCE).await,
        Err(Failure::EmptyCommand)
    ));
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let file = scratch("timeout");
    let started = Instant::now();
    let result = run(
        &sh(&hanging_script_with_grandchild(&file)),
        NO_ENV,
        Duration::from_millis(300),
    )
    .await;
    assert!(
        matches!(result, Err(Failure::TimedOut { reaped: true })),
        "{result:?}"
    );
    assert!(started.elapsed() < PATIENCE, "{:?}", started.elapsed());
    assert_nothing_left(&file).await;
    let _ = std::fs::remove_file(&file);
}

#[tokio::test]
async fn dropping_the_run_kills_the_whole_process_group() {
    let file = scratch("drop");
    let command = sh(&hanging_script_with_grandchild(&file));
    let running = run(&command, NO_ENV, PATIENCE);
    // The caller goes away (a reload drops the checks, a queue is
    // dropped) long before the command's own timeout.
    tokio::select! {
        result = running => panic!("the command ended: {result:?}"),
        _ = wait_for_file(&file) => {}
    };
    assert_nothing_left(&file).await;
    let _ = std::fs::remove_file(&file);
}
