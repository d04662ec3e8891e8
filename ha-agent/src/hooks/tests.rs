use super::*;
use crate::config::tests::{BASE, ok};

fn hook(script: &str, timeout_ms: u64) -> Hook {
    Hook {
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: vec![("HA_EVENT".into(), "owner".into())],
        timeout: Duration::from_millis(timeout_ms),
    }
}

#[tokio::test]
async fn exit_status_and_environment_decide() {
    assert_eq!(
        run(&hook("test \"$HA_EVENT\" = owner", 5000)).await,
        Outcome::Succeeded
    );
    assert!(matches!(run(&hook("exit 3", 5000)).await, Outcome::Failed(why) if why.contains("3")));
    let missing = Hook {
        command: vec!["/nonexistent/hook".into()],
        env: vec![],
        timeout: Duration::from_secs(1),
    };
    assert!(matches!(run(&missing).await, Outcome::Failed(why) if why.contains("cannot start")));
}

#[tokio::test]
async fn a_hook_past_its_timeout_is_killed() {
    let started = std::time::Instant::now();
    let outcome = run(&hook("sleep 10", 100)).await;
    assert!(matches!(outcome, Outcome::Failed(why) if why.contains("killed")));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "did not wait for the sleep"
    );
}

#[tokio::test]
async fn the_queue_runs_hooks_one_at_a_time_in_order() {
    let file = std::env::temp_dir().join(format!("ha-hooks-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let queue = HookQueue::start();
    let path = file.display().to_string();
    // The first hook is slow; if hooks overlapped, "2" would come first.
    queue.push(hook(&format!("sleep 0.2; echo 1 >> {path}"), 5000));
    queue.push(hook(&format!("echo 2 >> {path}"), 5000));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if text.lines().count() == 2 {
            assert_eq!(text, "1\n2\n");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "hooks did not run: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = std::fs::remove_file(&file);
}

/// A cluster config whose fence command is `script` (run by /bin/sh),
/// with `fence_timeout`.
fn fencing_config(script: &str, fence_timeout: &str) -> Config {
    let text = format!(
        r#"{BASE}
[cluster]
id = 42
key_file = "/etc/ha/cluster.key"
quorum = "two_node"
fencing = "required"
fence_command = ["/bin/sh", "-c", {script:?}]
fence_timeout = "{fence_timeout}"
[[cluster.node]]
name = "lb1"
address = "198.18.0.2"
[[cluster.node]]
name = "lb2"
address = "198.18.0.3"
"#
    );
    ok(&text)
}

#[tokio::test]
async fn the_fence_command_learns_whom_to_fence() {
    let config = fencing_config(
        r#"test "$HA_EVENT $HA_NODE $HA_FENCE_NODE" = "fence lb1 lb2""#,
        "20s",
    );
    let hook = fence_hook(&config, "lb2").expect("a fence hook");
    assert_eq!(hook.timeout, Duration::from_secs(20));
    assert_eq!(run(&hook).await, Outcome::Succeeded);
}

/// The fence-hang case: a fence command that starts a grandchild and hangs
/// fails at its timeout, and nothing of it is left running.
#[tokio::test]
async fn a_hanging_fence_command_leaves_no_process_behind() {
    use crate::process::tests::{assert_nothing_left, hanging_script_with_grandchild, scratch};

    let file = scratch("fence-hang");
    let config = fencing_config(&hanging_script_with_grandchild(&file), "300ms");
    let hook = fence_hook(&config, "lb2").expect("a fence hook");
    let outcome = run(&hook).await;
    assert!(
        matches!(&outcome, Outcome::Failed(why) if why.contains("no exit within 300ms, killed")),
        "{outcome:?}"
    );
    assert_nothing_left(&file).await;
    let _ = std::fs::remove_file(&file);
}

#[test]
fn no_fence_hook_without_a_fence_command() {
    let config = ok(BASE);
    assert_eq!(fence_hook(&config, "lb2"), None);
}
