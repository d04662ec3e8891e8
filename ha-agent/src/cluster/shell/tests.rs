use super::*;

#[test]
fn an_incarnation_never_goes_back() {
    assert_eq!(next_incarnation(1_000, None), 1_000);
    assert_eq!(next_incarnation(1_000, Some(900)), 1_000);
    // The clock stepped back across the restart.
    assert_eq!(next_incarnation(1_000, Some(5_000)), 5_001);
}

#[test]
fn the_last_incarnation_is_remembered_in_its_file() {
    let file = std::env::temp_dir().join(format!("ha-incarnation-{}", std::process::id()));
    std::fs::write(&file, format!("{}\n", u64::MAX / 2)).unwrap();
    assert_eq!(remember_incarnation(&file), u64::MAX / 2 + 1);
    assert_eq!(remember_incarnation(&file), u64::MAX / 2 + 2);
    std::fs::remove_file(&file).unwrap();
}
