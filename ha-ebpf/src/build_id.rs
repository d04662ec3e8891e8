//! Which build of the program this is, compiled into its instructions.

/// `cargo xtask build-ebpf --build-id N` compiles N in (the environment
/// variable HA_BUILD_ID), 0 otherwise. [`mark`] puts it into the
/// instructions of `ha_xdp`, so builds with different ids are different
/// programs to the kernel (another tag), as an upgrade to a fixed program
/// would be.
const BUILD_ID: u32 = match option_env!("HA_BUILD_ID") {
    None => 0,
    Some(id) => match u32::from_str_radix(id, 10) {
        Ok(id) => id,
        Err(_) => panic!("HA_BUILD_ID must be a number (u32)"),
    },
};

/// Stores the build id into a stack slot. Called only on a path that no
/// packet takes and the verifier removes (see `lb::place`): the id is part
/// of the program's instructions, and so of its tag, at no cost per packet.
#[inline(always)]
pub(crate) fn mark() {
    let mut slot = 0u32;
    // SAFETY: a write to a local; volatile so that it stays in the code.
    unsafe { core::ptr::write_volatile(&mut slot, BUILD_ID) };
}
