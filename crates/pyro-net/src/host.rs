//! The host's own interface addresses, which the guest must not reach
//! unless an entry names them (a service bound to `0.0.0.0` listens on
//! each of them, not only on loopback).

use std::net::Ipv4Addr;

/// Every IPv4 address on the host's interfaces.
pub(crate) fn own_addresses() -> Vec<Ipv4Addr> {
    let mut found = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list it allocated, or
    // fails and leaves it alone; freeifaddrs releases it below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return found;
    }
    let mut at = list;
    while !at.is_null() {
        // SAFETY: `at` is a node of the list getifaddrs returned, alive
        // until freeifaddrs; `ifa_addr` may be null and is checked.
        let entry = unsafe { &*at };
        if !entry.ifa_addr.is_null() {
            // SAFETY: a non-null ifa_addr points to a sockaddr whose family
            // says its real type; only AF_INET is read as sockaddr_in.
            let family = unsafe { (*entry.ifa_addr).sa_family };
            if i32::from(family) == libc::AF_INET {
                // SAFETY: the family is AF_INET, so this is a sockaddr_in.
                let address = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in) };
                let address = Ipv4Addr::from(u32::from_be(address.sin_addr.s_addr));
                if !found.contains(&address) {
                    found.push(address);
                }
            }
        }
        at = entry.ifa_next;
    }
    // SAFETY: `list` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    found
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_has_its_loopback() {
        assert!(super::own_addresses().contains(&std::net::Ipv4Addr::LOCALHOST));
    }
}
