use super::*;

#[test]
fn integers_are_big_endian_and_round_trip() {
    let mut buf = Vec::new();
    0xab_u8.encode(&mut buf);
    0x0102_0304_u32.encode(&mut buf);
    0x0102_0304_0506_0708_u64.encode(&mut buf);
    [0xee_u8, 0xff].encode(&mut buf);
    assert_eq!(buf, [0xab, 1, 2, 3, 4, 1, 2, 3, 4, 5, 6, 7, 8, 0xee, 0xff]);
    let mut rest = &buf[..];
    assert_eq!(u8::decode(&mut rest), Ok(0xab));
    assert_eq!(u32::decode(&mut rest), Ok(0x0102_0304));
    assert_eq!(u64::decode(&mut rest), Ok(0x0102_0304_0506_0708));
    assert_eq!(<[u8; 2]>::decode(&mut rest), Ok([0xee, 0xff]));
    assert!(!rest.has_remaining());
}

#[test]
fn a_short_buffer_is_an_error_not_a_panic() {
    let bytes = [1_u8, 2, 3, 4, 5, 6, 7, 8];
    for len in 0..bytes.len() {
        assert_eq!(u64::decode(&mut &bytes[..len]), Err(DecodeError), "{len}");
        assert_eq!(<[u8; 8]>::decode(&mut &bytes[..len]), Err(DecodeError));
    }
    assert_eq!(u32::decode(&mut &bytes[..3]), Err(DecodeError));
    assert_eq!(u8::decode(&mut &bytes[..0]), Err(DecodeError));
}
