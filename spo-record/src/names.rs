//! Names for the numbers the kernel reports: address families, socket types and capabilities
//! (stable Linux ABI values, from `linux/socket.h` and `linux/net.h`; capabilities by
//! `spo_model::apparmor::CAPABILITIES`, in kernel numbering). Unknown numbers keep a numeric
//! name, so nothing is dropped.

/// `AF_*` by number.
const ADDRESS_FAMILIES: &[&str] = &[
    "AF_UNSPEC",
    "AF_UNIX",
    "AF_INET",
    "AF_AX25",
    "AF_IPX",
    "AF_APPLETALK",
    "AF_NETROM",
    "AF_BRIDGE",
    "AF_ATMPVC",
    "AF_X25",
    "AF_INET6",
    "AF_ROSE",
    "AF_DECnet",
    "AF_NETBEUI",
    "AF_SECURITY",
    "AF_KEY",
    "AF_NETLINK",
    "AF_PACKET",
    "AF_ASH",
    "AF_ECONET",
    "AF_ATMSVC",
    "AF_RDS",
    "AF_SNA",
    "AF_IRDA",
    "AF_PPPOX",
    "AF_WANPIPE",
    "AF_LLC",
    "AF_IB",
    "AF_MPLS",
    "AF_CAN",
    "AF_TIPC",
    "AF_BLUETOOTH",
    "AF_IUCV",
    "AF_RXRPC",
    "AF_ISDN",
    "AF_PHONET",
    "AF_IEEE802154",
    "AF_CAIF",
    "AF_ALG",
    "AF_NFC",
    "AF_VSOCK",
    "AF_KCM",
    "AF_QIPCRTR",
    "AF_SMC",
    "AF_XDP",
    "AF_MCTP",
];

/// `SOCK_*` by number (the low 4 bits of socket(2)'s type).
const SOCKET_TYPES: &[(u32, &str)] = &[
    (1, "SOCK_STREAM"),
    (2, "SOCK_DGRAM"),
    (3, "SOCK_RAW"),
    (4, "SOCK_RDM"),
    (5, "SOCK_SEQPACKET"),
    (6, "SOCK_DCCP"),
    (10, "SOCK_PACKET"),
];

/// `AF_INET` for 2; `AF_<n>` for numbers without a name.
pub(crate) fn address_family(domain: u32) -> String {
    ADDRESS_FAMILIES
        .get(domain as usize)
        .map_or_else(|| format!("AF_{domain}"), |n| (*n).to_owned())
}

/// `SOCK_STREAM` for 1; `SOCK_<n>` for numbers without a name.
pub(crate) fn socket_type(type_: u32) -> String {
    SOCKET_TYPES
        .iter()
        .find(|(n, _)| *n == type_)
        .map_or_else(|| format!("SOCK_{type_}"), |(_, name)| (*name).to_owned())
}

/// `net_bind_service` for 10; `cap_<n>` for numbers without a name.
pub(crate) fn capability(cap: u32) -> String {
    spo_model::apparmor::CAPABILITIES
        .get(cap as usize)
        .map_or_else(|| format!("cap_{cap}"), |n| (*n).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_abi_numbers() {
        assert_eq!(address_family(2), "AF_INET");
        assert_eq!(address_family(10), "AF_INET6");
        assert_eq!(address_family(16), "AF_NETLINK");
        assert_eq!(address_family(45), "AF_MCTP");
        assert_eq!(address_family(63), "AF_63");
        assert_eq!(socket_type(1), "SOCK_STREAM");
        assert_eq!(socket_type(3), "SOCK_RAW");
        assert_eq!(socket_type(9), "SOCK_9");
        assert_eq!(capability(0), "chown");
        assert_eq!(capability(10), "net_bind_service");
        assert_eq!(capability(21), "sys_admin");
        assert_eq!(capability(40), "checkpoint_restore");
        assert_eq!(capability(41), "cap_41");
    }
}
