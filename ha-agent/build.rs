//! Embeds the XDP object built by `cargo xtask build-ebpf`, so the agent is
//! one self-contained binary whose maps always match its program.

use std::{env, fs, path::PathBuf};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let object = env::var_os("HA_EBPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../ha-ebpf/target/bpfel-unknown-none/release/ha-xdp"));
    println!("cargo:rerun-if-env-changed=HA_EBPF_OBJECT");
    println!("cargo:rerun-if-changed={}", object.display());
    if !object.exists() {
        panic!(
            "\n\nthe XDP object {} is missing: run `cargo xtask build-ebpf` first \
             (or `cargo xtask setup` on a fresh machine)\n\n",
            object.display()
        );
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo")).join("ha-xdp.o");
    fs::copy(&object, &out).expect("copy the XDP object into OUT_DIR");
}
