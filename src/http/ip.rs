//! IP address text forms, as the two parsers Gunicorn relies on read them.
//!
//! Gunicorn validates addresses with Python's `ipaddress` module (allow
//! lists, bracketed hosts in `urlsplit`) and with glibc's `inet_pton` /
//! `inet_ntop` (PROXY protocol). The two disagree on details (scope ids,
//! where an embedded IPv4 may sit, how `::a.b.c.d` prints), and `std`'s
//! parser agrees with neither: `ipaddress`'s rules are reproduced here, and
//! glibc's functions are called.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `ipaddress.IPv4Address(s)`: four decimal octets, no leading zeros.
pub fn py_ipv4(s: &str) -> Option<Ipv4Addr> {
    if s.is_empty() || s.contains('/') {
        return None;
    }
    let mut octets = [0u8; 4];
    let mut n = 0;
    for part in s.split('.') {
        let slot = octets.get_mut(n)?;
        *slot = py_octet(part)?;
        n += 1;
    }
    (n == 4).then(|| Ipv4Addr::from(octets))
}

fn py_octet(s: &str) -> Option<u8> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 3 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if b.len() > 1 && b[0] == b'0' {
        return None;
    }
    s.parse::<u16>().ok().and_then(|v| u8::try_from(v).ok())
}

/// `ipaddress.IPv6Address(s)`, including a `%scope` suffix (dropped here).
pub fn py_ipv6(s: &str) -> Option<Ipv6Addr> {
    if s.contains('/') {
        return None;
    }
    let addr = match s.split_once('%') {
        None => s,
        Some((addr, scope)) => {
            if scope.is_empty() || scope.contains('%') {
                return None;
            }
            addr
        }
    };
    if addr.is_empty() {
        return None;
    }
    let mut parts: Vec<&str> = addr.split(':').collect();
    if parts.len() < 3 {
        return None;
    }
    let mut v4_tail: Option<[u16; 2]> = None;
    if parts.last().is_some_and(|p| p.contains('.')) {
        let v4 = py_ipv4(parts.pop()?)?.octets();
        v4_tail = Some([u16::from_be_bytes([v4[0], v4[1]]), u16::from_be_bytes([v4[2], v4[3]])]);
    }
    // Python appends the two IPv4 hextets as text; count them as parts.
    let total = parts.len() + if v4_tail.is_some() { 2 } else { 0 };
    if total > 9 {
        return None;
    }
    let part_at = |i: usize| -> Option<PartRef<'_>> {
        if i < parts.len() {
            parts.get(i).map(|p| PartRef::Text(p))
        } else {
            v4_tail.and_then(|t| t.get(i - parts.len()).copied().map(PartRef::Value))
        }
    };
    let empty = |i: usize| matches!(part_at(i), Some(PartRef::Text("")));

    let mut skip_index = None;
    for i in 1..total.saturating_sub(1) {
        if empty(i) {
            if skip_index.is_some() {
                return None;
            }
            skip_index = Some(i);
        }
    }
    let (parts_hi, parts_lo, skipped) = match skip_index {
        Some(skip) => {
            let mut hi = skip;
            let mut lo = total - skip - 1;
            if empty(0) {
                hi -= 1;
                if hi != 0 {
                    return None;
                }
            }
            if empty(total - 1) {
                lo -= 1;
                if lo != 0 {
                    return None;
                }
            }
            let skipped = 8usize.checked_sub(hi + lo)?;
            if skipped < 1 {
                return None;
            }
            (hi, lo, skipped)
        }
        None => {
            if total != 8 || empty(0) || empty(total - 1) {
                return None;
            }
            (total, 0, 0)
        }
    };
    let mut words = [0u16; 8];
    let mut w = 0;
    for i in 0..parts_hi {
        *words.get_mut(w)? = part_at(i)?.value()?;
        w += 1;
    }
    w += skipped;
    for i in (total - parts_lo)..total {
        *words.get_mut(w)? = part_at(i)?.value()?;
        w += 1;
    }
    Some(Ipv6Addr::from(words))
}

#[derive(Clone, Copy)]
enum PartRef<'a> {
    Text(&'a str),
    Value(u16),
}

impl PartRef<'_> {
    fn value(self) -> Option<u16> {
        match self {
            PartRef::Value(v) => Some(v),
            PartRef::Text(t) => {
                if t.is_empty() || t.len() > 4 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                    None
                } else {
                    u16::from_str_radix(t, 16).ok()
                }
            }
        }
    }
}

/// `ipaddress.ip_address(s)`: IPv4 first, then IPv6.
pub fn py_ip_address(s: &str) -> Option<IpAddr> {
    py_ipv4(s).map(IpAddr::V4).or_else(|| py_ipv6(s).map(IpAddr::V6))
}

/// A network as `ipaddress.ip_network(s)` (strict) accepts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = prefix_mask32(self.prefix);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = prefix_mask128(self.prefix);
                u128::from(ip) & mask == u128::from(net)
            }
            // Python: an IPv4Address is never `in` an IPv6Network, nor the
            // reverse (no IPv4-mapped equivalence).
            _ => false,
        }
    }
}

fn prefix_mask32(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p if p >= 32 => u32::MAX,
        p => u32::MAX << (32 - u32::from(p)),
    }
}

fn prefix_mask128(prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p if p >= 128 => u128::MAX,
        p => u128::MAX << (128 - u32::from(p)),
    }
}

/// `ipaddress.ip_network(s)` with `strict=True`: an address, optionally
/// `/prefixlen`, or for IPv4 `/netmask` or `/hostmask`; host bits must be 0.
pub fn py_ip_network(s: &str) -> Result<Network, String> {
    let bad = || format!("{s:?} does not appear to be an IPv4 or IPv6 network");
    let (addr_s, mask_s) = match s.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (s, None),
    };
    if let Some(v4) = py_ipv4(addr_s) {
        let prefix = match mask_s {
            None => 32,
            Some(m) => v4_prefix(m).ok_or_else(bad)?,
        };
        let net = Network { addr: IpAddr::V4(v4), prefix };
        if u32::from(v4) & !prefix_mask32(prefix) != 0 {
            return Err(format!("{s} has host bits set"));
        }
        return Ok(net);
    }
    if let Some(v6) = py_ipv6(addr_s) {
        let prefix = match mask_s {
            None => 128,
            Some(m) => decimal_prefix(m, 128).ok_or_else(bad)?,
        };
        if u128::from(v6) & !prefix_mask128(prefix) != 0 {
            return Err(format!("{s} has host bits set"));
        }
        return Ok(Network { addr: IpAddr::V6(v6), prefix });
    }
    Err(bad())
}

fn decimal_prefix(m: &str, max: u8) -> Option<u8> {
    let b = m.as_bytes();
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v: u32 = m.parse().ok()?;
    u8::try_from(v).ok().filter(|&p| p <= max)
}

fn v4_prefix(m: &str) -> Option<u8> {
    if let Some(p) = decimal_prefix(m, 32) {
        return Some(p);
    }
    if m.bytes().all(|b| b.is_ascii_digit()) {
        // Digits only but out of range: Python does not retry as a mask.
        return None;
    }
    let mask = u32::from(py_ipv4(m)?);
    let contiguous = |v: u32| v.leading_ones() + v.trailing_zeros() == 32;
    if contiguous(mask) {
        return u8::try_from(mask.leading_ones()).ok();
    }
    let inverted = !mask;
    if contiguous(inverted) {
        return u8::try_from(inverted.leading_ones()).ok();
    }
    None
}

// glibc's own parser and printer. The `libc` crate does not declare these
// two (they live in glibc's libc.so, which every Rust program on Linux
// links), so they are declared here with their POSIX signatures.
extern "C" {
    fn inet_pton(af: libc::c_int, src: *const libc::c_char, dst: *mut libc::c_void) -> libc::c_int;
    fn inet_ntop(
        af: libc::c_int,
        src: *const libc::c_void,
        dst: *mut libc::c_char,
        size: libc::socklen_t,
    ) -> *const libc::c_char;
}

/// glibc `inet_pton(AF_INET, ...)`: dotted quad, no leading zeros.
pub fn inet_pton4(s: &[u8]) -> Option<[u8; 4]> {
    pton(libc::AF_INET, s)
}

/// glibc `inet_pton(AF_INET6, ...)`: no scope id, an IPv4 tail only last.
pub fn inet_pton6(s: &[u8]) -> Option<[u8; 16]> {
    pton(libc::AF_INET6, s)
}

/// `inet_pton(family, s)` into an address of `N` bytes, the size the
/// family writes (4 for AF_INET, 16 for AF_INET6).
fn pton<const N: usize>(family: libc::c_int, s: &[u8]) -> Option<[u8; N]> {
    let size_of_family = match family {
        libc::AF_INET => 4,
        libc::AF_INET6 => 16,
        _ => return None,
    };
    if N != size_of_family {
        return None;
    }
    // A C string ends at its first NUL, so text holding one would be read
    // short; Python refuses such text before calling inet_pton, and so
    // does this.
    let text = std::ffi::CString::new(s).ok()?;
    let mut out = [0u8; N];
    // SAFETY: `text` is NUL-terminated and lives across the call; `out`
    // is writable and exactly as large as the address inet_pton writes for
    // `family` (checked above), and it writes nothing else.
    let parsed = unsafe { inet_pton(family, text.as_ptr(), out.as_mut_ptr().cast()) };
    (parsed == 1).then_some(out)
}

/// glibc's `INET6_ADDRSTRLEN`: the longest IPv6 text and its NUL.
const INET6_ADDRSTRLEN: usize = 46;

/// glibc `inet_ntop(AF_INET6, ...)`: longest zero run of two or more words
/// becomes `::`, and `::a.b.c.d` / `::ffff:a.b.c.d` keep their IPv4 tail.
pub fn inet_ntop6(addr: &[u8; 16]) -> String {
    let mut buf = [0 as libc::c_char; INET6_ADDRSTRLEN];
    // SAFETY: `addr` is the 16 bytes of an in6_addr; `buf` is writable for
    // the length passed, INET6_ADDRSTRLEN, which is enough for any IPv6
    // address, so inet_ntop writes a NUL-terminated string inside it.
    let printed = unsafe {
        inet_ntop(libc::AF_INET6, addr.as_ptr().cast(), buf.as_mut_ptr(), INET6_ADDRSTRLEN as libc::socklen_t)
    };
    if printed.is_null() {
        // Only a buffer that is too small fails, and this one is not.
        return Ipv6Addr::from(*addr).to_string();
    }
    // SAFETY: inet_ntop succeeded, so `buf` holds a NUL-terminated string.
    let text = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    text.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_ipv4() {
        assert!(py_ipv4("127.0.0.1").is_some());
        assert!(py_ipv4("0.0.0.0").is_some());
        for bad in ["01.2.3.4", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.4/32", "", "1..2.3", "a.b.c.d", "1234.1.1.1"]
        {
            assert!(py_ipv4(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn python_ipv6() {
        let ok = [
            ("::1", "::1"),
            ("::", "::"),
            ("1::", "1::"),
            ("fe80::1%eth0", "fe80::1"),
            ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
            ("1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"),
            ("1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"),
            ("::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"),
            ("2001:DB8::1", "2001:db8::1"),
        ];
        for (s, want) in ok {
            let got = py_ipv6(s).unwrap_or_else(|| panic!("{s}"));
            assert_eq!(got, want.parse::<Ipv6Addr>().unwrap(), "{s}");
        }
        for bad in [
            ":1",
            "1:",
            "1::2::3",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4::5:6:7:8",
            "12345::",
            "::g",
            "fe80::1%",
            "fe80::1%a%b",
            "1.2.3.4",
            "::1.2.3",
            "",
            "::1/128",
            ":::",
        ] {
            assert!(py_ipv6(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn python_networks() {
        let n = py_ip_network("10.0.0.0/8").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.1.2.3".parse().unwrap()));
        assert!(!n.contains("::1".parse().unwrap()));
        assert_eq!(py_ip_network("10.0.0.0/255.0.0.0").unwrap().prefix, 8);
        assert_eq!(py_ip_network("10.0.0.0/0.255.255.255").unwrap().prefix, 8);
        assert!(py_ip_network("10.0.0.1/8").is_err());
        assert!(py_ip_network("10.0.0.0/33").is_err());
        assert!(py_ip_network("2001:db8::/32").unwrap().contains("2001:db8::5".parse().unwrap()));
        assert!(py_ip_network("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(!py_ip_network("127.0.0.1").unwrap().contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(py_ip_network("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(py_ip_network("nonsense").is_err());
    }

    #[test]
    fn glibc_pton() {
        assert_eq!(inet_pton4(b"192.168.0.1"), Some([192, 168, 0, 1]));
        for bad in
            [&b"192.168.0"[..], b"192.168.0.01", b"1.2.3.4.", b"256.0.0.0", b"a.b.c.d", b"", b"1.2.3.4 ", b"1.2.3.4\0"]
        {
            assert_eq!(inet_pton4(bad), None, "{bad:?}");
        }
        assert_eq!(inet_pton6(b"::1").map(Ipv6Addr::from), Some(Ipv6Addr::LOCALHOST));
        assert_eq!(inet_pton6(b"::ffff:1.2.3.4").map(Ipv6Addr::from), Some("::ffff:1.2.3.4".parse().unwrap()));
        for bad in [&b":1"[..], b"1:", b"1::2::3", b"fe80::1%eth0", b"12345::", b"1:2:3:4:5:6:7:8:9", b""] {
            assert_eq!(inet_pton6(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn glibc_ntop() {
        let f = |s: &str| inet_ntop6(&s.parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(f("2001:db8::1"), "2001:db8::1");
        assert_eq!(f("::"), "::");
        assert_eq!(f("::1"), "::1");
        assert_eq!(f("::ffff:1.2.3.4"), "::ffff:1.2.3.4");
        assert_eq!(f("::2.3.4.5"), "::2.3.4.5");
        assert_eq!(f("1:0:2:3:4:5:6:7"), "1:0:2:3:4:5:6:7");
        assert_eq!(f("1:0:0:2:0:0:0:3"), "1:0:0:2::3");
        assert_eq!(f("1::"), "1::");
    }
}
