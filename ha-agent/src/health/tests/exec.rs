use super::*;

fn sh(script: &str) -> CheckKind {
    CheckKind::Exec {
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
    }
}

#[tokio::test]
async fn exec_exit_status() {
    let t = target(LOCAL4, 8080);
    assert_eq!(check_once(&sh("exit 0"), &t, PATIENCE).await, Ok(()));
    assert_eq!(
        check_once(&sh("exit 1"), &t, PATIENCE).await,
        Err("exit status 1".into())
    );
    assert_eq!(
        check_once(&sh("exit 2"), &t, PATIENCE).await,
        Err("exit status 2".into())
    );
    assert_eq!(
        check_once(&sh("kill -9 $$"), &t, PATIENCE).await,
        Err("killed by signal 9".into())
    );
    let missing = CheckKind::Exec {
        command: vec!["/nonexistent/check".into()],
    };
    assert_eq!(
        check_once(&missing, &t, PATIENCE).await,
        Err("spawn /nonexistent/check: no such file or directory".into())
    );
}

#[tokio::test]
async fn exec_sees_the_backend_in_its_environment() {
    let t = target(LOCAL4, 8080);
    let script = r#"test "$HA_BACKEND_ADDRESS" = 127.0.0.1 && test "$HA_BACKEND_PORT" = 8080 && test "$HA_VIP_ADDRESS" = 198.18.0.100 && test "$HA_VIP_PORT" = 80"#;
    assert_eq!(check_once(&sh(script), &t, PATIENCE).await, Ok(()));
    let script = r#"test "$HA_BACKEND_ADDRESS" = 127.0.0.2"#;
    assert_eq!(
        check_once(&sh(script), &t, PATIENCE).await,
        Err("exit status 1".into())
    );
    // Arguments are passed as they are, without a shell.
    let kind = CheckKind::Exec {
        command: vec![
            "/bin/sh".into(),
            "-c".into(),
            "test \"$0\" = 'a b'".into(),
            "a b".into(),
        ],
    };
    assert_eq!(check_once(&kind, &t, PATIENCE).await, Ok(()));
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| matches!(rest.trim_start().chars().next(), Some('Z' | 'X'))),
    }
}

#[tokio::test]
async fn exec_is_killed_at_the_timeout_with_its_children() {
    let dir = std::env::temp_dir().join(format!("ha-health-exec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pid_file = dir.join("pid");
    // The shell waits for a background child: both must die.
    let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
    let started = Instant::now();
    let result = check_once(
        &sh(&script),
        &target(LOCAL4, 80),
        Duration::from_millis(300),
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(result, Err("timeout after 300ms".to_owned()));
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    // The grandchild is dead too (within a generous bound).
    let pid: u32 = wait_for_file(&pid_file).await.trim().parse().unwrap();
    let deadline = Instant::now() + PATIENCE;
    while !dead(pid) {
        assert!(
            Instant::now() < deadline,
            "sleep {pid} survived the timeout"
        );
        sleep(Duration::from_millis(20)).await;
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

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
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn exec_sleep_is_killed_quickly() {
    let started = Instant::now();
    let kind = CheckKind::Exec {
        command: vec!["/bin/sleep".into(), "5".into()],
    };
    let kind = if Path::new("/bin/sleep").exists() {
        kind
    } else {
        sh("sleep 5")
    };
    let result = check_once(&kind, &target(LOCAL4, 80), Duration::from_millis(100)).await;
    assert_eq!(result, Err("timeout after 100ms".to_owned()));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}
