use super::*;

#[test]
fn requests_round_trip_with_their_version() {
    let request = Request::Drain {
        vip: "web".into(),
        backend: "198.18.0.11".parse().unwrap(),
    };
    let line = encode(&request);
    assert_eq!(
        line,
        "{\"version\":1,\"command\":\"drain\",\"vip\":\"web\",\"backend\":\"198.18.0.11\"}\n"
    );
    assert_eq!(decode::<Request>(&line).unwrap(), request);
}

#[test]
fn other_versions_and_garbage_are_refused() {
    let err = decode::<Request>("{\"version\":2,\"command\":\"status\"}").unwrap_err();
    assert!(err.to_string().contains("version 2 not supported"), "{err}");
    assert!(decode::<Request>("{\"version\":1,\"command\":\"reboot\"}").is_err());
    assert!(decode::<Request>("not json").is_err());
}
