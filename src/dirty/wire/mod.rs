//! The dirty protocol on the wire, as Gunicorn 27 speaks it: frames
//! (`frame.rs`) carrying TLV payloads (`tlv.rs`), and those payloads as
//! Python objects (`py.rs`). Sans-I/O: bytes in, values out.

pub mod frame;
pub mod py;
pub mod tlv;
