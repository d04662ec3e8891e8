use super::*;

/// Feeds `results` ('+' success, '-' failure) and returns what
/// `record` said for each: '^' up, 'v' down, '.' no change.
fn run(rise: u32, fall: u32, initially_up: bool, results: &str) -> String {
    let mut state = RiseFall::new(rise, fall, initially_up);
    assert_eq!(state.is_up(), initially_up);
    results
        .chars()
        .map(|c| {
            let flip = state.record(c == '+');
            if let Some(up) = flip {
                assert_eq!(up, state.is_up());
            }
            match flip {
                Some(true) => '^',
                Some(false) => 'v',
                None => '.',
            }
        })
        .collect()
}

#[test]
fn rise_fall_table() {
    #[rustfmt::skip]
    let table = [
        // rise, fall, initially up, results, flips
        (2, 3, false, "++",          ".^"),
        (2, 3, false, "+-+-+-",      "......"),
        (2, 3, false, "+-++",        "...^"),
        (2, 3, false, "---++",       "....^"),
        (2, 3, true,  "---",         "..v"),
        (2, 3, true,  "--+--+--",    "........"),
        (2, 3, true,  "++--+---",    ".......v"),
        (2, 3, true,  "---++---",    "..v.^..v"),
        (2, 3, true,  "---+-++",     "..v...^"),
        (3, 1, false, "+++-+++",     "..^v..^"),
        (3, 1, true,  "-++-+++",     "v.....^"),
        (1, 1, false, "+-+--++",     "^v^v.^."),
        (1, 1, true,  "++--+",       "..v.^"),
        (5, 5, false, "++++-+++++",  ".........^"),
    ];
    for (rise, fall, initially_up, results, flips) in table {
        assert_eq!(
            run(rise, fall, initially_up, results),
            flips,
            "rise {rise} fall {fall} up {initially_up}: {results}"
        );
    }
}

#[test]
fn rise_fall_exhaustive() {
    // Against a direct definition, for every sequence of 10 results:
    // the state flips when the last `rise` (down) or `fall` (up)
    // results since the last flip all disagree with it.
    for (rise, fall) in [(1, 1), (1, 3), (2, 3), (3, 2), (4, 4)] {
        for initially_up in [false, true] {
            for bits in 0u32..1 << 10 {
                let mut state = RiseFall::new(rise, fall, initially_up);
                let mut up = initially_up;
                let mut since_flip: Vec<bool> = Vec::new();
                for i in 0..10 {
                    let success = bits >> i & 1 == 1;
                    since_flip.push(success);
                    let needed = if up { fall } else { rise } as usize;
                    let flips = since_flip.len() >= needed
                        && since_flip[since_flip.len() - needed..]
                            .iter()
                            .all(|&s| s != up);
                    let got = state.record(success);
                    if flips {
                        up = !up;
                        since_flip.clear();
                        assert_eq!(got, Some(up));
                    } else {
                        assert_eq!(got, None);
                    }
                    assert_eq!(state.is_up(), up);
                }
            }
        }
    }
}

#[test]
fn rise_fall_zero_counts_as_one() {
    assert_eq!(run(0, 0, false, "+-"), "^v");
}
