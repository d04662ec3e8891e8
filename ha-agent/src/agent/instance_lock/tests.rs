use super::acquire;

#[test]
fn a_second_agent_for_the_same_node_is_refused_until_the_first_ends() {
    let dir = std::env::temp_dir().join(format!("ha-lock-test-{}", std::process::id()));
    let socket = dir.join("n1.sock");
    let first = acquire(&socket, "n1").expect("the first agent locks");
    let refused = acquire(&socket, "n1")
        .err()
        .expect("a second agent is refused");
    let message = format!("{refused:#}");
    assert!(
        message.contains("another ha-agent is running for node n1")
            && message.contains(&std::process::id().to_string()),
        "{message}"
    );
    // Another node in the same directory is not affected.
    let other = acquire(&dir.join("n2.sock"), "n2").expect("another node locks");
    drop(first);
    let _again = acquire(&socket, "n1").expect("free once the first ended");
    drop(other);
    let _ = std::fs::remove_dir_all(&dir);
}
