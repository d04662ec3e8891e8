//! Reading and writing the cluster's binary frames, the way quinn-proto's
//! `coding` module does: every type on the wire decodes itself from a
//! [`Buf`] and encodes itself into a [`BufMut`] ([`Codec`]), so a frame's
//! codec reads like its layout table.
//!
//! Decoding never panics: a buffer that runs short is a [`DecodeError`],
//! as is a field out of its range (checked by the type's own `decode`).

use bytes::{Buf, BufMut, TryGetError};

/// The bytes do not hold a value of the type read: cut short, or a field
/// out of its range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DecodeError;

impl From<TryGetError> for DecodeError {
    fn from(_: TryGetError) -> DecodeError {
        DecodeError
    }
}

/// A type with one encoding on the wire.
pub(crate) trait Codec: Sized {
    /// Reads one value off the front of `buf`.
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, DecodeError>;
    /// Appends the value to `buf`.
    fn encode<B: BufMut>(&self, buf: &mut B);
}

/// `buf.get::<T>()`: reads a `T` ([`Codec::decode`]).
pub(crate) trait BufExt {
    fn get<T: Codec>(&mut self) -> Result<T, DecodeError>;
}

impl<B: Buf> BufExt for B {
    fn get<T: Codec>(&mut self) -> Result<T, DecodeError> {
        T::decode(self)
    }
}

impl Codec for u8 {
    fn decode<B: Buf>(buf: &mut B) -> Result<u8, DecodeError> {
        Ok(buf.try_get_u8()?)
    }

    fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u8(*self);
    }
}

/// Big-endian, as every integer on the cluster's wire.
impl Codec for u32 {
    fn decode<B: Buf>(buf: &mut B) -> Result<u32, DecodeError> {
        Ok(buf.try_get_u32()?)
    }

    fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u32(*self);
    }
}

/// Big-endian, as every integer on the cluster's wire.
impl Codec for u64 {
    fn decode<B: Buf>(buf: &mut B) -> Result<u64, DecodeError> {
        Ok(buf.try_get_u64()?)
    }

    fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u64(*self);
    }
}

/// Fixed-size byte strings: magics, digests.
impl<const N: usize> Codec for [u8; N] {
    fn decode<B: Buf>(buf: &mut B) -> Result<[u8; N], DecodeError> {
        let mut bytes = [0; N];
        buf.try_copy_to_slice(&mut bytes)?;
        Ok(bytes)
    }

    fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_slice(self);
    }
}

#[cfg(test)]
mod tests;
