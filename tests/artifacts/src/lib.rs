//! Paths of the plugin components built from `plugins/` by this crate's build script, one
//! constant per component (`NOOP`, `PROBE`, `HOSTILE`, `VALIDATE_USER`, ...).

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));

pub mod guest;

/// `wasm` with a custom section holding `payload` appended: the same code under another
/// digest, as a rebuilt or relabelled plugin is. (The hot-swap tests and bench push such
/// variants as new versions.)
pub fn with_custom_section(wasm: &[u8], payload: &[u8]) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"flowhost-variant";
    let mut section = Vec::new();
    leb128(name.len(), &mut section);
    section.extend_from_slice(name);
    section.extend_from_slice(payload);
    let mut out = wasm.to_vec();
    out.push(0);
    leb128(section.len(), &mut out);
    out.extend(section);
    out
}
