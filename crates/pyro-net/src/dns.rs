//! The DNS messages the guest's resolver sends to pyro, and the answers.
//! Only what a stub resolver needs: one question, `A` answers from the
//! host's resolver, empty answers for other types (the guest has no IPv6).

use std::net::Ipv4Addr;

use crate::policy::normalize_name;

pub const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
/// Longest query accepted.
pub const QUERY_LIMIT: usize = 512;
/// How long answers may be cached by the guest, in seconds.
const TTL: u32 = 30;

/// One parsed question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    pub recursion_desired: bool,
    pub name: String,
    pub qtype: u16,
    /// The question section as sent, for the answer to repeat.
    question: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError = 0,
    ServFail = 2,
    NxDomain = 3,
}

/// Parses a query; `None` for anything that is not a one-question query.
pub fn parse_query(packet: &[u8]) -> Option<Query> {
    if packet.len() < 12 || packet.len() > QUERY_LIMIT {
        return None;
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    let flags = u16::from_be_bytes([packet[2], packet[3]]);
    let is_response = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    let qdcount = u16::from_be_bytes([packet[4], packet[5]]);
    if is_response || opcode != 0 || qdcount != 1 {
        return None;
    }
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *packet.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // compression has no place in a question
        }
        let label = packet.get(at..at + len)?;
        labels.push(String::from_utf8_lossy(label).into_owned());
        at += len;
    }
    let qtype = u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]);
    let _class = u16::from_be_bytes([*packet.get(at + 2)?, *packet.get(at + 3)?]);
    at += 4;
    Some(Query {
        id,
        recursion_desired: flags & 0x0100 != 0,
        name: normalize_name(&labels.join(".")),
        qtype,
        question: packet[12..at].to_vec(),
    })
}

/// The answer to `query`: `rcode`, with one `A` record per address.
pub fn answer(query: &Query, rcode: Rcode, addresses: &[Ipv4Addr]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + query.question.len() + 16 * addresses.len());
    out.extend(query.id.to_be_bytes());
    let mut flags: u16 = 0x8000 | 0x0080 | rcode as u16; // QR, RA
    if query.recursion_desired {
        flags |= 0x0100;
    }
    out.extend(flags.to_be_bytes());
    let count = if rcode == Rcode::NoError {
        addresses.len() as u16
    } else {
        0
    };
    out.extend(1u16.to_be_bytes());
    out.extend(count.to_be_bytes());
    out.extend([0, 0, 0, 0]);
    out.extend(&query.question);
    if rcode == Rcode::NoError {
        for address in addresses {
            out.extend([0xc0, 0x0c]); // the name at offset 12
            out.extend(TYPE_A.to_be_bytes());
            out.extend(CLASS_IN.to_be_bytes());
            out.extend(TTL.to_be_bytes());
            out.extend(4u16.to_be_bytes());
            out.extend(address.octets());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend(label.as_bytes());
        }
        q.push(0);
        q.extend(qtype.to_be_bytes());
        q.extend(1u16.to_be_bytes());
        q
    }

    #[test]
    fn parses_a_question_and_answers_it() {
        let q = parse_query(&query("PyPI.org", TYPE_A)).unwrap();
        assert_eq!(
            (q.id, q.name.as_str(), q.qtype),
            (0x1234, "pypi.org", TYPE_A)
        );
        let a = answer(&q, Rcode::NoError, &[Ipv4Addr::new(203, 0, 113, 80)]);
        assert_eq!(&a[..2], &[0x12, 0x34]);
        assert_eq!(a[3] & 0xf, 0);
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 1);
        assert_eq!(&a[a.len() - 4..], &[203, 0, 113, 80]);
        let nx = answer(&q, Rcode::NxDomain, &[]);
        assert_eq!(nx[3] & 0xf, 3);
        assert_eq!(u16::from_be_bytes([nx[6], nx[7]]), 0);
    }

    #[test]
    fn malformed_queries_are_dropped() {
        let good = query("pypi.org", TYPE_A);
        assert!(parse_query(&good[..good.len() - 1]).is_none());
        assert!(parse_query(&good[..5]).is_none());
        let mut response = good.clone();
        response[2] |= 0x80;
        assert!(parse_query(&response).is_none());
        let mut pointer = good.clone();
        pointer[12] = 0xc0;
        assert!(parse_query(&pointer).is_none());
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] = 0xff;
            let _ = parse_query(&bad);
        }
    }
}
