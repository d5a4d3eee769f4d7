//! IP address text forms, as the two parsers Gunicorn relies on read them.
//!
//! Gunicorn validates addresses with Python's `ipaddress` module (allow
//! lists, bracketed hosts in `urlsplit`) and with glibc's `inet_pton` /
//! `inet_ntop` (PROXY protocol). The two disagree on details (scope ids,
//! where an embedded IPv4 may sit, how `::a.b.c.d` prints), so both are
//! reproduced here instead of leaning on `std`'s own parser.

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

/// glibc `inet_pton(AF_INET, ...)`: dotted quad, no leading zeros.
pub fn inet_pton4(s: &[u8]) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut octets = 0usize;
    let mut saw_digit = false;
    let mut cur: u32 = 0;
    for &ch in s {
        match ch {
            b'0'..=b'9' => {
                if saw_digit && cur == 0 {
                    return None;
                }
                cur = cur * 10 + u32::from(ch - b'0');
                if cur > 255 {
                    return None;
                }
                if !saw_digit {
                    octets += 1;
                    if octets > 4 {
                        return None;
                    }
                    saw_digit = true;
                }
                *out.get_mut(octets - 1)? = u8::try_from(cur).ok()?;
            }
            b'.' if saw_digit => {
                if octets == 4 {
                    return None;
                }
                saw_digit = false;
                cur = 0;
            }
            _ => return None,
        }
    }
    (octets == 4).then_some(out)
}

/// glibc `inet_pton(AF_INET6, ...)`, a port of its `inet_pton6`.
pub fn inet_pton6(s: &[u8]) -> Option<[u8; 16]> {
    let mut tmp = [0u8; 16];
    let mut tp = 0usize;
    let mut colonp: Option<usize> = None;
    let mut src = 0usize;
    if s.is_empty() {
        return None;
    }
    if s[0] == b':' {
        src = 1;
        if s.get(1) != Some(&b':') {
            return None;
        }
    }
    let mut curtok = src;
    let mut xdigits_seen = 0;
    let mut val: u32 = 0;
    while let Some(&ch) = s.get(src) {
        src += 1;
        if let Some(d) = (ch as char).to_digit(16) {
            if xdigits_seen == 4 {
                return None;
            }
            val = (val << 4) | d;
            xdigits_seen += 1;
            continue;
        }
        if ch == b':' {
            curtok = src;
            if xdigits_seen == 0 {
                if colonp.is_some() {
                    return None;
                }
                colonp = Some(tp);
                continue;
            } else if src == s.len() {
                return None;
            }
            if tp + 2 > 16 {
                return None;
            }
            tmp[tp] = (val >> 8) as u8;
            tmp[tp + 1] = val as u8;
            tp += 2;
            xdigits_seen = 0;
            val = 0;
            continue;
        }
        if ch == b'.' && tp + 4 <= 16 {
            if let Some(v4) = s.get(curtok..).and_then(inet_pton4) {
                tmp[tp..tp + 4].copy_from_slice(&v4);
                tp += 4;
                xdigits_seen = 0;
                break;
            }
        }
        return None;
    }
    if xdigits_seen > 0 {
        if tp + 2 > 16 {
            return None;
        }
        tmp[tp] = (val >> 8) as u8;
        tmp[tp + 1] = val as u8;
        tp += 2;
    }
    if let Some(cp) = colonp {
        if tp == 16 {
            return None;
        }
        let n = tp - cp;
        tmp.copy_within(cp..tp, 16 - n);
        for b in &mut tmp[cp..16 - n] {
            *b = 0;
        }
        tp = 16;
    }
    (tp == 16).then_some(tmp)
}

/// glibc `inet_ntop(AF_INET6, ...)`: longest zero run of two or more words
/// becomes `::`, and `::a.b.c.d` / `::ffff:a.b.c.d` keep their IPv4 tail.
pub fn inet_ntop6(addr: &[u8; 16]) -> String {
    let mut words = [0u16; 8];
    for (i, w) in words.iter_mut().enumerate() {
        *w = u16::from_be_bytes([addr[2 * i], addr[2 * i + 1]]);
    }
    let (mut best_base, mut best_len) = (None::<usize>, 0usize);
    let (mut cur_base, mut cur_len) = (None::<usize>, 0usize);
    for (i, &w) in words.iter().enumerate() {
        if w == 0 {
            if cur_base.is_none() {
                cur_base = Some(i);
                cur_len = 1;
            } else {
                cur_len += 1;
            }
        } else if let Some(cb) = cur_base.take() {
            if best_base.is_none() || cur_len > best_len {
                best_base = Some(cb);
                best_len = cur_len;
            }
        }
    }
    if let Some(cb) = cur_base {
        if best_base.is_none() || cur_len > best_len {
            best_base = Some(cb);
            best_len = cur_len;
        }
    }
    if best_len < 2 {
        best_base = None;
    }
    let mut out = String::with_capacity(41);
    let mut i = 0;
    while i < 8 {
        if let Some(bb) = best_base {
            if i >= bb && i < bb + best_len {
                if i == bb {
                    out.push(':');
                }
                i += 1;
                continue;
            }
        }
        if i != 0 {
            out.push(':');
        }
        if i == 6 && best_base == Some(0) && (best_len == 6 || (best_len == 5 && words[5] == 0xffff)) {
            out.push_str(&format!("{}.{}.{}.{}", addr[12], addr[13], addr[14], addr[15]));
            return out;
        }
        out.push_str(&format!("{:x}", words[i]));
        i += 1;
    }
    if best_base.is_some_and(|bb| bb + best_len == 8) {
        out.push(':');
    }
    out
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
        for bad in [&b"192.168.0"[..], b"192.168.0.01", b"1.2.3.4.", b"256.0.0.0", b"a.b.c.d", b"", b"1.2.3.4 "] {
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
