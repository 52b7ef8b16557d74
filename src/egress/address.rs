//! Pure: which addresses the egress proxy never connects to unless the operator listed them by
//! address. Loopback, private, link-local (the cloud metadata address 169.254.169.254 among
//! them), shared (CGNAT), unique-local, multicast, reserved and unspecified ranges, and the
//! addresses of the machine Backspace and the Docker engine run on: from any of those a sandbox
//! would reach the bot's own port, its database, other containers or the cloud's credentials.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What kind of address was refused, said the way an operator reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    Loopback,
    Private,
    LinkLocal,
    Metadata,
    Shared,
    UniqueLocal,
    Multicast,
    Reserved,
    Unspecified,
    /// An address of this machine or of the Docker engine's.
    ThisHost,
}

impl Special {
    pub fn describe(self) -> &'static str {
        match self {
            Special::Loopback => "a loopback address",
            Special::Private => "a private address",
            Special::LinkLocal => "a link-local address",
            Special::Metadata => "the cloud metadata address",
            Special::Shared => "a shared (carrier-grade NAT) address",
            Special::UniqueLocal => "a unique-local address",
            Special::Multicast => "a multicast address",
            Special::Reserved => "a reserved address",
            Special::Unspecified => "the unspecified address",
            Special::ThisHost => "an address of the Backspace or Docker host",
        }
    }
}

/// Why `ip` may not be opened, or `None` when it may. `listed` says whether the operator listed
/// this exact address; `this_host` whether it is one of this machine's or the engine's.
pub fn refusal(ip: IpAddr, listed: bool, this_host: bool) -> Option<Special> {
    if listed {
        return None;
    }
    special(ip).or(this_host.then_some(Special::ThisHost))
}

/// The special range `ip` falls in, if any. IPv4 addresses inside IPv6 (mapped, compatible,
/// NAT64) are judged as IPv4.
pub fn special(ip: IpAddr) -> Option<Special> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => special_v4(v4),
            None => special_v6(v6),
        },
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<Special> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => Special::Metadata,
        (0, ..) => Special::Unspecified,
        (127, ..) => Special::Loopback,
        (10, ..) | (192, 168, _) => Special::Private,
        (172, 16..=31, _) => Special::Private,
        (169, 254, _) => Special::LinkLocal,
        (100, 64..=127, _) => Special::Shared,
        (224..=239, ..) => Special::Multicast,
        // IETF protocol assignments, benchmarking, the documentation nets, 240/4 and broadcast.
        (192, 0, 0) | (192, 0, 2) | (198, 18..=19, _) | (198, 51, 100) | (203, 0, 113) => {
            Special::Reserved
        }
        (240..=255, ..) => Special::Reserved,
        _ => return None,
    })
}

/// The cloud metadata service's IPv6 address (AWS).
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

fn special_v6(ip: Ipv6Addr) -> Option<Special> {
    let s = ip.segments();
    Some(match s[0] {
        _ if ip.is_unspecified() => Special::Unspecified,
        _ if ip.is_loopback() => Special::Loopback,
        0xfe80..=0xfebf => Special::LinkLocal,
        0xfc00..=0xfdff if ip == METADATA_V6 => Special::Metadata,
        0xfc00..=0xfdff => Special::UniqueLocal,
        0xfec0..=0xfeff => Special::Reserved, // site-local, deprecated
        0xff00..=0xffff => Special::Multicast,
        0x2001 if s[1] == 0x0db8 => Special::Reserved, // documentation
        0x0000..=0x00ff => Special::Reserved,
        _ => return None,
    })
}

/// The IPv4 address inside a mapped (`::ffff:a.b.c.d`), compatible (`::a.b.c.d`) or NAT64
/// (`64:ff9b::a.b.c.d`) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|&x| x == 0);
    let compatible = s[..6].iter().all(|&x| x == 0) && !ip.is_loopback() && !ip.is_unspecified();
    (nat64 || compatible).then_some(tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn why(text: &str) -> Option<Special> {
        special(text.parse().expect("an address"))
    }

    #[test]
    fn the_ranges_a_sandbox_must_not_reach_are_refused() {
        let cases = [
            ("127.0.0.1", Special::Loopback),
            ("127.255.0.9", Special::Loopback),
            ("10.1.2.3", Special::Private),
            ("172.17.0.1", Special::Private),
            ("172.31.255.255", Special::Private),
            ("192.168.1.1", Special::Private),
            ("169.254.169.254", Special::Metadata),
            ("169.254.1.1", Special::LinkLocal),
            ("100.64.0.1", Special::Shared),
            ("0.0.0.0", Special::Unspecified),
            ("224.0.0.1", Special::Multicast),
            ("255.255.255.255", Special::Reserved),
            ("::1", Special::Loopback),
            ("::", Special::Unspecified),
            ("fe80::1", Special::LinkLocal),
            ("fd12:3456::1", Special::UniqueLocal),
            ("fd00:ec2::254", Special::Metadata),
            ("ff02::1", Special::Multicast),
            ("::ffff:127.0.0.1", Special::Loopback),
            ("::ffff:169.254.169.254", Special::Metadata),
            ("64:ff9b::10.0.0.1", Special::Private),
            ("::10.0.0.1", Special::Private),
        ];
        for (ip, want) in cases {
            assert_eq!(why(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "151.101.0.223",
            "172.32.0.1",
            "100.128.0.1",
            "2a04:4e42::223",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(why(ip), None, "{ip}");
        }
    }

    #[test]
    fn a_listed_address_passes_and_this_host_does_not() {
        let lo: IpAddr = "127.0.0.1".parse().expect("ip");
        assert_eq!(refusal(lo, true, true), None);
        assert_eq!(refusal(lo, false, false), Some(Special::Loopback));
        let public: IpAddr = "203.0.114.9".parse().expect("ip");
        assert_eq!(refusal(public, false, false), None);
        assert_eq!(refusal(public, false, true), Some(Special::ThisHost));
        assert_eq!(refusal(public, true, true), None);
    }
}
