use super::*;
use crate::process::tests::{assert_nothing_left, hanging_script_with_grandchild, scratch};

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

#[tokio::test]
async fn exec_is_killed_at_the_timeout_with_its_children() {
    let file = scratch("health-exec");
    let started = Instant::now();
    let result = check_once(
        &sh(&hanging_script_with_grandchild(&file)),
        &target(LOCAL4, 80),
        Duration::from_millis(300),
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(result, Err("timeout after 300ms".to_owned()));
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    // The script, its grandchild and its whole group are gone too (within
    // a generous bound).
    assert_nothing_left(&file).await;
    let _ = std::fs::remove_file(&file);
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
